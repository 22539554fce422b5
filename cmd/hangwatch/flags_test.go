package main

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// durationCommand is a command with one duration flag, --timeout, and no environment.
func durationCommand() (*command, *time.Duration) {
	c := newCommand("t", "test")
	return c, c.fs.Duration("timeout", 5*time.Second, "turn timeout")
}

func TestDurationHint(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    time.Duration
		wantErr string
	}{
		{name: "a unit", args: []string{"--timeout", "4s"}, want: 4 * time.Second},
		{name: "zero needs none", args: []string{"--timeout", "0"}, want: 0},
		{name: "a bare number", args: []string{"--timeout", "5"}, wantErr: `invalid value "5" for flag -timeout: a duration needs a unit: did you mean 5s?`},
		{name: "a bare decimal", args: []string{"--timeout=2.5"}, wantErr: "did you mean 2.5s?"},
		{name: "words", args: []string{"--timeout", "5 seconds"}, wantErr: "want a duration such as 5s, 1m30s or 250ms"},
		{name: "a bare number from the environment", env: map[string]string{"HANGWATCH_TIMEOUT": "5"}, wantErr: `invalid value "5" for HANGWATCH_TIMEOUT: a duration needs a unit: did you mean 5s?`},
		{name: "a unit from the environment", env: map[string]string{"HANGWATCH_TIMEOUT": "250ms"}, want: 250 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, timeout := durationCommand()
			err := c.parse(tt.args, lookupIn(tt.env))
			switch {
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("parse() = %v, want an error holding %q", err, tt.wantErr)
			case tt.wantErr == "" && err != nil:
				t.Fatalf("parse() = %v", err)
			case tt.wantErr == "" && *timeout != tt.want:
				t.Errorf("--timeout = %v, want %v", *timeout, tt.want)
			}
		})
	}
}

// TestDurationHintOneLine: the error of hangwatch run given a bare number is one line on
// stderr that says what was meant.
func TestDurationHintOneLine(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		give []string
		want string
	}{
		{name: "flag", give: []string{"run", "--timeout", "5"}, want: "did you mean 5s?"},
		{name: "environment", env: map[string]string{"HANGWATCH_MAX_WAIT": "12"}, give: []string{"run"}, want: "HANGWATCH_MAX_WAIT: a duration needs a unit: did you mean 12s?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runArgs(t, tt.env, tt.give...)
			if code != exitUsage || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Errorf("exit code %d, stderr %q; want %d and one line holding %q", code, stderr, exitUsage, tt.want)
			}
		})
	}
}

func TestEnvWarnings(t *testing.T) {
	c := newCommand("run", "test")
	c.fs.Duration("timeout", 5*time.Second, "")
	c.fs.Duration("max-wait", 10*time.Second, "")
	c.fs.String("nats-url", "", "")
	c.fs.String("nats-password", "", "")
	c.fs.String("metrics-listen", "", "")
	tests := []struct {
		name string
		give []string
		want []string
	}{
		{name: "none", give: []string{"PATH=/usr/bin", "HANGWATCH_TIMEOUT=3s", "HANGWATCH_NATS_URL=nats://n:4222"}},
		{
			name: "a misspelling names the flag",
			give: []string{"HANGWATCH_TIMOUT=3s"},
			want: []string{"environment variable HANGWATCH_TIMOUT is no setting of hangwatch run and is ignored; did you mean HANGWATCH_TIMEOUT (--timeout)?"},
		},
		{
			name: "sorted, each with its closest flag",
			give: []string{"HANGWATCH_NATS_URLS=nats://n:4222", "HANGWATCH_MAXWAIT=12s", "hangwatch_timeout=3s"},
			want: []string{
				"environment variable HANGWATCH_MAXWAIT is no setting of hangwatch run and is ignored; did you mean HANGWATCH_MAX_WAIT (--max-wait)?",
				"environment variable HANGWATCH_NATS_URLS is no setting of hangwatch run and is ignored; did you mean HANGWATCH_NATS_URL (--nats-url)?",
			},
		},
		{
			name: "nothing close",
			give: []string{"HANGWATCH_COLOUR_SCHEME=dark"},
			want: []string{`environment variable HANGWATCH_COLOUR_SCHEME is no setting of hangwatch run and is ignored; "hangwatch run --help" lists them`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := c.envWarnings(tt.give); !slices.Equal(got, tt.want) {
				t.Errorf("envWarnings() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}

// TestEnvWarningsHideValues: a warning names a variable, never its value, which may be
// a secret.
func TestEnvWarningsHideValues(t *testing.T) {
	c := newCommand("run", "test")
	c.fs.String("nats-password", "", "")
	got := c.envWarnings([]string{"HANGWATCH_NATS_PASSWROD=s3cr3t"})
	if len(got) != 1 || strings.Contains(got[0], "s3cr3t") || !strings.Contains(got[0], "HANGWATCH_NATS_PASSWORD") {
		t.Errorf("envWarnings() = %q, want one warning naming HANGWATCH_NATS_PASSWORD without the value", got)
	}
}

// TestRunEnvWarnings: the variables hangwatch run reads are the ones its flags name, so
// none of them is warned about.
func TestRunEnvWarnings(t *testing.T) {
	c := newCommand("run", runSummary)
	sidecarFlags(c)
	var environ []string
	for _, name := range []string{"nats-url", "timeout", "max-wait", "metrics-listen", "jetstream", "embedded-store-dir"} {
		environ = append(environ, envName(name)+"=x")
	}
	if got := c.envWarnings(environ); len(got) != 0 {
		t.Errorf("envWarnings() = %q, want none", got)
	}
	if got := c.envWarnings([]string{"HANGWATCH_TIMOUT=3s"}); len(got) != 1 || !strings.Contains(got[0], "(--timeout)") {
		t.Errorf("envWarnings(HANGWATCH_TIMOUT) = %q, want it to name --timeout", got)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"TIMEOUT", "TIMEOUT", 0}, {"TIMOUT", "TIMEOUT", 1}, {"MAXWAIT", "MAX_WAIT", 1},
		{"", "ABC", 3}, {"KITTEN", "SITTING", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := editDistance(tt.b, tt.a); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.b, tt.a, got, tt.want)
		}
	}
}

func TestByteSize(t *testing.T) {
	tests := []struct {
		give    string
		want    int64
		wantErr string
	}{
		{give: "67108864", want: 67108864},
		{give: "0", want: 0},
		{give: "64MiB", want: 64 << 20},
		{give: "1GiB", want: 1 << 30},
		{give: "500MB", want: 500_000_000},
		{give: "1.5GiB", want: 3 << 29},
		{give: "2TiB", want: 2 << 40},
		{give: "1TB", want: 1e12},
		{give: "4KiB", want: 4096},
		{give: "4kB", want: 4000},
		{give: "4KB", want: 4000},
		{give: "64 mib", want: 64 << 20},
		{give: " 512B ", want: 512},
		{give: "0.5kB", want: 500},
		{give: "8EiB", wantErr: `unknown unit "EiB"`},
		{give: "64M", wantErr: "did you mean 64MiB or 64MB?"},
		{give: "4k", wantErr: "did you mean 4KiB or 4kB?"},
		{give: "1.5B", wantErr: "not a whole number of bytes"},
		{give: "1.5", wantErr: "not a whole number of bytes"},
		{give: "0.1KiB", wantErr: "not a whole number of bytes"},
		{give: "-1MiB", wantErr: "cannot be negative"},
		{give: "", wantErr: "want a size such as"},
		{give: "MiB", wantErr: "want a size such as"},
		{give: "1.2.3MiB", wantErr: "bad number"},
		{give: "1e6", wantErr: `unknown unit "e6"`},
		{give: "9223372036854775807", want: math.MaxInt64},
		{give: "9223372036854775808", wantErr: "too large"},
		{give: "8388608TiB", wantErr: "too large"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			b := newByteSize(7)
			err := b.Set(tt.give)
			switch {
			case tt.wantErr != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Set(%q) = %v, want an error holding %q", tt.give, err, tt.wantErr)
				}
				if *b != 7 {
					t.Errorf("a refused Set(%q) changed the size to %d", tt.give, *b)
				}
			case err != nil:
				t.Fatalf("Set(%q) = %v", tt.give, err)
			case int64(*b) != tt.want:
				t.Errorf("Set(%q) = %d bytes, want %d", tt.give, int64(*b), tt.want)
			}
		})
	}
}

func TestByteSizeString(t *testing.T) {
	tests := []struct {
		give int64
		want string
	}{
		{0, "0"}, {1, "1"}, {1023, "1023"}, {1024, "1KiB"}, {1000, "1kB"}, {1 << 30, "1GiB"},
		{500_000_000, "500MB"}, {64 << 20, "64MiB"}, {3 << 29, "1536MiB"}, {67108865, "67108865"},
	}
	for _, tt := range tests {
		b := newByteSize(tt.give)
		if got := b.String(); got != tt.want {
			t.Errorf("byteSize(%d).String() = %q, want %q", tt.give, got, tt.want)
		}
		// What String writes, Set reads back.
		var back byteSize
		if err := back.Set(b.String()); err != nil || int64(back) != tt.give {
			t.Errorf("Set(%q) = %d, %v; want %d", b.String(), int64(back), err, tt.give)
		}
	}
}

// TestByteSizeFlag: a byteSize is a flag that reads the environment too, and whose
// default --help shows in units.
func TestByteSizeFlag(t *testing.T) {
	c := newCommand("run", "test")
	size := newByteSize(1 << 30)
	c.fs.Var(size, "max-retained-bytes", "budget")
	if got := c.fs.Lookup("max-retained-bytes").DefValue; got != "1GiB" {
		t.Errorf("default shown as %q, want 1GiB", got)
	}
	if err := c.parse(nil, lookupIn(map[string]string{"HANGWATCH_MAX_RETAINED_BYTES": "64MiB"})); err != nil {
		t.Fatal(err)
	}
	if *size != 64<<20 {
		t.Errorf("size = %d, want 64MiB from the environment", *size)
	}
	c2 := newCommand("run", "test")
	c2.fs.Var(newByteSize(1<<30), "max-retained-bytes", "budget")
	if err := c2.parse([]string{"--max-retained-bytes", "64M"}, noEnv); err == nil || !strings.Contains(err.Error(), "did you mean 64MiB or 64MB?") {
		t.Errorf("parse(--max-retained-bytes 64M) = %v, want it to ask which was meant", err)
	}
}
