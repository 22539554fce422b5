package buildinfo

import (
	"maps"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	const rev = "0212d7ffa88db9d3894859624815f466b98c0b10"
	stamped := func(version string, settings ...debug.BuildSetting) *debug.BuildInfo {
		return &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "github.com/hangwatch/hangwatch", Version: version}, Settings: settings}
	}
	vcs := []debug.BuildSetting{{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: "true"}}
	tests := []struct {
		name   string
		give   *debug.BuildInfo
		linked Info
		want   Info
	}{
		{
			name: "no build info, nothing linked",
			want: Info{Version: "dev", GoVersion: runtime.Version()},
		},
		{
			name:   "go build in a clone, -ldflags version",
			give:   stamped("v0.0.0-20261205203812-0212d7ffa88d+dirty", vcs...),
			linked: Info{Version: "v2.0.0-3-g0212d7f-dirty"},
			want:   Info{Version: "v2.0.0-3-g0212d7f-dirty", Revision: rev, Dirty: true, GoVersion: "go1.26.8"},
		},
		{
			name:   "go build in a clone, the default ldflags version",
			give:   stamped("v0.0.0-20261205203812-0212d7ffa88d", debug.BuildSetting{Key: "vcs.revision", Value: rev}, debug.BuildSetting{Key: "vcs.modified", Value: "false"}),
			linked: Info{Version: "dev"},
			want:   Info{Version: "v0.0.0-20261205203812-0212d7ffa88d", Revision: rev, GoVersion: "go1.26.8"},
		},
		{
			name: "go install module@version",
			give: stamped("v2.1.0"),
			want: Info{Version: "v2.1.0", GoVersion: "go1.26.8"},
		},
		{
			name: "go run: no version, no VCS",
			give: stamped("(devel)"),
			want: Info{Version: "dev", GoVersion: "go1.26.8"},
		},
		{
			name:   "no VCS stamp: the linked revision and dirty flag fill in",
			give:   stamped("(devel)"),
			linked: Info{Version: "v2.1.0", Revision: rev, Dirty: true},
			want:   Info{Version: "v2.1.0", Revision: rev, Dirty: true, GoVersion: "go1.26.8"},
		},
		{
			name:   "a VCS stamp beats the linked revision",
			give:   stamped("(devel)", debug.BuildSetting{Key: "vcs.revision", Value: rev}, debug.BuildSetting{Key: "vcs.modified", Value: "false"}),
			linked: Info{Revision: "feedface", Dirty: true},
			want:   Info{Version: "dev", Revision: rev, GoVersion: "go1.26.8"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromBuildInfo(tt.give, tt.linked); got != tt.want {
				t.Errorf("fromBuildInfo() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRead(t *testing.T) {
	got := Read(Info{Version: "v9.9.9"})
	if got.Version != "v9.9.9" || got.GoVersion != runtime.Version() {
		t.Errorf("Read() = %+v, want version v9.9.9 and Go %s", got, runtime.Version())
	}
}

func TestString(t *testing.T) {
	tests := []struct {
		give Info
		want string
	}{
		{Info{Version: "dev", GoVersion: "go1.26.8"}, "hangwatch dev (go1.26.8)"},
		{Info{Version: "v2.0.0", Revision: "0212d7ffa88db9d3894859624815f466b98c0b10", GoVersion: "go1.26.8"}, "hangwatch v2.0.0 (go1.26.8, commit 0212d7ffa88d)"},
		{Info{Version: "v2.0.0", Revision: "0212d7f", Dirty: true, GoVersion: "go1.26.8"}, "hangwatch v2.0.0 (go1.26.8, commit 0212d7f, dirty)"},
	}
	for _, tt := range tests {
		if got := tt.give.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestLabels(t *testing.T) {
	tests := []struct {
		give Info
		want map[string]string
	}{
		{
			give: Info{Version: "dev", GoVersion: "go1.26.8"},
			want: map[string]string{"version": "dev", "revision": "unknown", "dirty": "false", "goversion": "go1.26.8"},
		},
		{
			give: Info{Version: "v2.0.0", Revision: "0212d7f", Dirty: true, GoVersion: "go1.26.8"},
			want: map[string]string{"version": "v2.0.0", "revision": "0212d7f", "dirty": "true", "goversion": "go1.26.8"},
		},
	}
	for _, tt := range tests {
		if got := tt.give.Labels(); !maps.Equal(got, tt.want) {
			t.Errorf("%+v.Labels() = %v, want %v", tt.give, got, tt.want)
		}
	}
}
