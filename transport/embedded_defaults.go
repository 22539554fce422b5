package transport

import (
	"net"
	"os"
	"path/filepath"
	"strings"
)

// DefaultStoreDir returns where the embedded server keeps its JetStream data unless
// told otherwise: a place that survives a reboot, which $TMPDIR often does not. It is
// $STATE_DIRECTORY, which systemd sets for a unit with StateDirectory= (the first, when
// it lists several); else $XDG_STATE_HOME/hangwatch; else ~/.local/state/hangwatch; and,
// for a user without a home, $TMPDIR/hangwatch. nats-server keeps its streams in a
// folder jetstream inside it: ~/.local/state/hangwatch/jetstream.
func DefaultStoreDir() string { return defaultStoreDir(os.Getenv, os.UserHomeDir) }

// defaultStoreDir is DefaultStoreDir for a given environment and home.
func defaultStoreDir(getenv func(string) string, home func() (string, error)) string {
	if dirs := getenv("STATE_DIRECTORY"); dirs != "" {
		dir, _, _ := strings.Cut(dirs, ":")
		return dir
	}
	// The XDG base directory specification: a relative path is invalid and ignored.
	if dir := getenv("XDG_STATE_HOME"); filepath.IsAbs(dir) {
		return filepath.Join(dir, "hangwatch")
	}
	if dir, err := home(); err == nil && filepath.IsAbs(dir) {
		return filepath.Join(dir, ".local", "state", "hangwatch")
	}
	return filepath.Join(os.TempDir(), "hangwatch")
}

// Unprotected reports whether the embedded server of o would accept anyone who can
// reach it from another machine: it listens beyond loopback (all interfaces, an address
// that is not a loopback one, or a host name other than localhost, which may resolve to
// anything) and requires no user. A listen address that does not parse is no answer
// here: StartEmbedded refuses it.
func (o EmbeddedOptions) Unprotected() bool {
	if o.User != "" {
		return false
	}
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}
