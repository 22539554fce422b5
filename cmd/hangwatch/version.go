package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at build time: go build -ldflags "-X main.version=v1.2.3".
var version = "dev"

// versionString returns the version, the Go version and, when the binary knows it, the
// commit it was built from.
func versionString() string {
	s := fmt.Sprintf("hangwatch %s (%s", version, runtime.Version())
	if rev := buildRevision(); len(rev) >= 12 {
		s += ", commit " + rev[:12]
	}
	return s + ")"
}

// buildRevision returns the commit the binary was built from, or "" when it does not
// know it.
func buildRevision() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, kv := range info.Settings {
			if kv.Key == "vcs.revision" {
				return kv.Value
			}
		}
	}
	return ""
}

func versionCmd(args []string, stdout io.Writer) error {
	c := newCommand("version", "Print the version of hangwatch.")
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	fmt.Fprintln(stdout, versionString())
	return nil
}
