// Command hangwatch detects, within milliseconds, when a voice assistant has left a
// caller in silence. See `hangwatch help`.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const overview = `hangwatch watches live voice-AI conversations on NATS and publishes a "hang" event
when the assistant leaves a caller in silence, "hang-resolved" when it answers, and
"hang-unresolved" when the caller gives up in silence.

Usage: hangwatch <command> [flags]

Commands:
  run      run the sidecar: consume the pipeline's events, publish hangs
  tail     print the hangs, resolutions and unresolved hangs published on NATS, one per line
  demo     watch it work: an embedded NATS server, the engine and a simulated pipeline
  version  print the version (also: hangwatch --version)

Run "hangwatch <command> --help" for the flags of a command. Every flag is also read from
the environment: --max-wait from HANGWATCH_MAX_WAIT.
`

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // the command failed
	exitUsage = 2 // the command line was wrong
)

// usageError is a mistake on the command line: it is reported with a pointer to the
// command's help and exit code 2.
type usageError struct {
	c   *command
	err error
}

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run runs the command of args and returns the process's exit code. Errors are one
// line on stderr.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, overview)
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = runCmd(rest, stdout, stderr)
	case "tail":
		err = tailCmd(rest, stdout, stderr)
	case "demo":
		err = demoCmd(rest, stdout, stderr)
	case "version", "--version", "-version":
		err = versionCmd(rest, stdout)
	case "docs": // hidden: writes docs/configuration.md
		err = docsCmd(rest, stdout)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, overview)
		return exitOK
	default:
		fmt.Fprintf(stderr, "hangwatch: unknown command %q\n\n%s", cmd, overview)
		return exitUsage
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue) && errors.Is(err, flag.ErrHelp):
		ue.c.usage(stdout)
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "hangwatch %s: %v (see hangwatch %s --help)\n", ue.c.name, err, ue.c.name)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "hangwatch: %v\n", err)
		return exitError
	}
}

// signalContext returns a context that is cancelled by the first SIGINT or SIGTERM.
// A second signal exits the process at once, for an operator who will not wait for a
// drain. stop releases the signals and waits for the goroutine it started.
func signalContext(onFirst func(os.Signal)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case s := <-sigs:
			onFirst(s)
			cancel()
		case <-done:
			return
		}
		select {
		case <-sigs:
			os.Exit(exitError)
		case <-done:
		}
	})
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		wg.Wait()
		cancel()
	}
}
