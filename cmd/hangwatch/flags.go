package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// envPrefix starts the environment variable of every flag: --max-wait is read from
// HANGWATCH_MAX_WAIT when it is not on the command line.
const envPrefix = "HANGWATCH_"

// envName returns the environment variable of a flag.
func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// command is a subcommand with its flags.
type command struct {
	name, summary string
	fs            *flag.FlagSet
}

func newCommand(name, summary string) *command {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, by main
	return &command{name: name, summary: summary, fs: fs}
}

// parse parses args, then fills every flag that is not on the command line from its
// environment variable. A bad value, from either, is an error that names its origin and
// shows the value; a secret is a string flag, which takes any value, so it never shows.
// An empty variable sets a string flag to empty (HANGWATCH_METRICS_LISTEN= disables the
// metrics) and leaves any other flag at its default.
func (c *command) parse(args []string, lookup func(string) (string, bool)) error {
	if err := c.fs.Parse(args); err != nil {
		return err
	}
	if c.fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", c.fs.Arg(0))
	}
	set := map[string]bool{}
	c.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var err error
	c.fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] || err != nil {
			return
		}
		v, ok := lookup(envName(f.Name))
		if !ok || (v == "" && !isString(f)) {
			return
		}
		if e := setFromEnv(f, v); e != nil {
			err = fmt.Errorf("invalid value %q for %s: %w", v, envName(f.Name), e)
		}
	})
	return err
}

// setFromEnv sets a flag from its environment variable; a list takes comma-separated
// values there.
func setFromEnv(f *flag.Flag, v string) error {
	if l, ok := f.Value.(*stringList); ok {
		l.reset()
		for s := range strings.SplitSeq(v, ",") {
			if s = strings.TrimSpace(s); s != "" {
				if err := l.Set(s); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return f.Value.Set(v)
}

// usage writes the help of the command: its summary, then every flag with its default
// and its environment variable. It shows defaults only, never a value given: secrets
// have none.
func (c *command) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: hangwatch %s [flags]\n\n%s\n\nFlags (each also read from the environment variable shown):\n", c.name, c.summary)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	var flags []*flag.Flag
	c.fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	sort.Slice(flags, func(i, j int) bool { return flags[i].Name < flags[j].Name })
	for _, f := range flags {
		def := ""
		if f.DefValue != "" && f.DefValue != "[]" {
			def = " (default " + f.DefValue + ")"
		}
		fmt.Fprintf(tw, "  --%s\t%s\t%s%s\n", f.Name, envName(f.Name), f.Usage, def)
	}
	tw.Flush()
}

// stringList is a repeatable flag. Its default is replaced, not appended to, by the
// first value given.
type stringList struct {
	values  []string
	changed bool
}

func newStringList(defaults ...string) *stringList { return &stringList{values: defaults} }

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(l.values, ",")
}

func (l *stringList) Set(v string) error {
	if v == "" {
		return errors.New("empty value")
	}
	if !l.changed {
		l.values, l.changed = nil, true
	}
	l.values = append(l.values, v)
	return nil
}

func (l *stringList) reset() { l.values, l.changed = nil, false }

// isString reports whether a flag takes any string, for which empty is a value.
func isString(f *flag.Flag) bool {
	g, ok := f.Value.(flag.Getter)
	if !ok {
		return false
	}
	_, ok = g.Get().(string)
	return ok
}

// noEnv is an empty environment, for a command parsed from arguments alone.
func noEnv(string) (string, bool) { return "", false }

// env is the process environment, replaceable in tests.
var env = os.LookupEnv
