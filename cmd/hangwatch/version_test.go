package main

import (
	"strings"
	"testing"
)

// TestVersion: version and --version print the build info, with what -ldflags set.
func TestVersion(t *testing.T) {
	defer func(v, r, d string) { version, revision, dirty = v, r, d }(version, revision, dirty)
	version, revision, dirty = "v2.0.0", "0212d7ffa88db9d3894859624815f466b98c0b10", "true"
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		code, stdout, stderr := runArgs(t, nil, args...)
		if code != exitOK || !strings.HasPrefix(stdout, "hangwatch v2.0.0 (go") || !strings.HasSuffix(stdout, ", commit 0212d7ffa88d, dirty)\n") {
			t.Errorf("hangwatch %s: exit %d, stdout %q, stderr %q", args[0], code, stdout, stderr)
		}
	}
	if got := buildInfo().Labels(); got["revision"] != revision || got["dirty"] != "true" || got["version"] != "v2.0.0" {
		t.Errorf("build info labels = %v", got)
	}
}
