package main

import (
	"fmt"
	"io"

	"github.com/hangwatch/hangwatch/internal/buildinfo"
)

// Set at build time, for builds the Go toolchain cannot stamp (no .git in a container
// build, GOFLAGS=-buildvcs=false): go build -ldflags "-X main.version=v1.2.3
// -X main.revision=<commit> -X main.dirty=true". The Makefile and the Dockerfile do.
var (
	version  = "dev"
	revision string
	dirty    string
)

// buildInfo returns what the binary knows of its build, for `version` and the
// hangwatch_build_info metric (buildInfo().Labels()).
func buildInfo() buildinfo.Info {
	return buildinfo.Read(buildinfo.Info{Version: version, Revision: revision, Dirty: dirty == "true"})
}

// buildRevision returns the commit the binary was built from, or "" when it does not
// know it.
//
// Deprecated: use buildInfo().Labels(), which also carries the dirty flag.
func buildRevision() string { return buildInfo().Revision }

func versionCmd(args []string, stdout io.Writer) error {
	c := newCommand("version", "Print the version of hangwatch, the commit it was built from and the Go that built it.")
	if err := c.parse(args, env); err != nil {
		return usageError{c, err}
	}
	fmt.Fprintln(stdout, buildInfo())
	return nil
}
