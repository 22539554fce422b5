// Package buildinfo says which hangwatch is running: its version, the commit it was
// built from, whether that tree had uncommitted changes, and the Go that built it. The
// version command prints it and the hangwatch_build_info metric carries it.
package buildinfo

import (
	"runtime"
	"runtime/debug"
	"strconv"
)

// Info is what a binary knows of its build.
type Info struct {
	// Version is the release: the one given with -ldflags "-X main.version=…", else the
	// module version that `go install …@v1.2.3` stamps, else "dev".
	Version string
	// Revision is the commit, "" when unknown.
	Revision string
	// Dirty is true when the tree built had uncommitted changes.
	Dirty bool
	// GoVersion is the Go release that built the binary.
	GoVersion string
}

// Read returns the build info of the running binary. linked holds what -ldflags "-X"
// set in package main (fields may be empty): its version wins, since a release names
// itself; its revision and dirty flag fill in when the Go toolchain stamped none, as in
// a container build without .git or with GOFLAGS=-buildvcs=false.
func Read(linked Info) Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		bi = nil
	}
	return fromBuildInfo(bi, linked)
}

// fromBuildInfo is Read for a given build info (nil: none).
func fromBuildInfo(bi *debug.BuildInfo, linked Info) Info {
	info := Info{Version: linked.Version, Revision: linked.Revision, Dirty: linked.Dirty, GoVersion: runtime.Version()}
	if bi == nil {
		if info.Version == "" {
			info.Version = "dev"
		}
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	if info.Version == "" || info.Version == "dev" {
		switch v := bi.Main.Version; v {
		case "", "(devel)":
			info.Version = "dev"
		default:
			info.Version = v
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.modified":
			info.Dirty = s.Value == "true"
		}
	}
	return info
}

// String is the line `hangwatch version` prints:
// "hangwatch v1.2.3 (go1.26.8, commit 0212d7ffa88d, dirty)".
func (i Info) String() string {
	s := "hangwatch " + i.Version + " (" + i.GoVersion
	if i.Revision != "" {
		s += ", commit " + short(i.Revision)
	}
	if i.Dirty {
		s += ", dirty"
	}
	return s + ")"
}

// Labels are the constant labels of hangwatch_build_info: version, revision ("unknown"
// when unknown), dirty ("true" or "false") and goversion.
//
//	prometheus.NewGauge(prometheus.GaugeOpts{Name: "hangwatch_build_info", ConstLabels: info.Labels()})
func (i Info) Labels() map[string]string {
	rev := i.Revision
	if rev == "" {
		rev = "unknown"
	}
	return map[string]string{
		"version":   i.Version,
		"revision":  rev,
		"dirty":     strconv.FormatBool(i.Dirty),
		"goversion": i.GoVersion,
	}
}

// short cuts a commit hash to the 12 characters that name it in practice.
func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
