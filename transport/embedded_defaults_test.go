package transport

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestDefaultStoreDir(t *testing.T) {
	home := func() (string, error) { return "/home/ops", nil }
	tests := []struct {
		name string
		env  map[string]string
		home func() (string, error)
		want string
	}{
		{name: "systemd StateDirectory", env: map[string]string{"STATE_DIRECTORY": "/var/lib/hangwatch", "XDG_STATE_HOME": "/x"}, home: home, want: "/var/lib/hangwatch"},
		{name: "systemd, several state directories", env: map[string]string{"STATE_DIRECTORY": "/var/lib/hangwatch:/var/lib/other"}, home: home, want: "/var/lib/hangwatch"},
		{name: "XDG_STATE_HOME", env: map[string]string{"XDG_STATE_HOME": "/srv/state"}, home: home, want: "/srv/state/hangwatch"},
		{name: "a relative XDG_STATE_HOME is ignored", env: map[string]string{"XDG_STATE_HOME": "state"}, home: home, want: "/home/ops/.local/state/hangwatch"},
		{name: "home", home: home, want: "/home/ops/.local/state/hangwatch"},
		{name: "no home", home: func() (string, error) { return "", errors.New("$HOME is not defined") }, want: filepath.Join(os.TempDir(), "hangwatch")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := defaultStoreDir(func(k string) string { return tt.env[k] }, tt.home)
			if got != tt.want {
				t.Errorf("defaultStoreDir() = %q, want %q", got, tt.want)
			}
		})
	}
}

// TestDefaultStoreDirEnvironment: DefaultStoreDir reads the process's environment.
func TestDefaultStoreDirEnvironment(t *testing.T) {
	t.Setenv("STATE_DIRECTORY", "/var/lib/hangwatch")
	if got := DefaultStoreDir(); got != "/var/lib/hangwatch" {
		t.Errorf("DefaultStoreDir() = %q, want $STATE_DIRECTORY", got)
	}
}

func TestUnprotected(t *testing.T) {
	tests := []struct {
		give EmbeddedOptions
		want bool
	}{
		{EmbeddedOptions{Listen: "127.0.0.1:4222"}, false},
		{EmbeddedOptions{Listen: "127.0.0.2:4222"}, false},
		{EmbeddedOptions{Listen: "[::1]:4222"}, false},
		{EmbeddedOptions{Listen: "localhost:4222"}, false},
		{EmbeddedOptions{Listen: "0.0.0.0:4222"}, true},
		{EmbeddedOptions{Listen: ":4222"}, true},
		{EmbeddedOptions{Listen: "[::]:4222"}, true},
		{EmbeddedOptions{Listen: "10.0.0.5:4222"}, true},
		{EmbeddedOptions{Listen: "nats.internal:4222"}, true},
		{EmbeddedOptions{Listen: "0.0.0.0:4222", User: "hw", Password: "s3cr3t"}, false},
		{EmbeddedOptions{Listen: "nowhere"}, false},
	}
	for _, tt := range tests {
		if got := tt.give.Unprotected(); got != tt.want {
			t.Errorf("Unprotected() with listen %q, user %q = %v, want %v", tt.give.Listen, tt.give.User, got, tt.want)
		}
	}
}
