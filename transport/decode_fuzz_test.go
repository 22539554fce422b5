package transport

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/hangwatch/hangwatch/detector"
)

// FuzzDecode checks Decode against the reference decoder of reference_test.go: both
// must accept and refuse the same inputs, for the same reason, and agree on every
// field and span of what they accept.
func FuzzDecode(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(fixturesDir, "*.json"))
	if len(files) == 0 {
		f.Fatal("no fixtures in " + fixturesDir)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, tt := range decodeTests {
		f.Add([]byte(tt.give))
	}
	for _, tt := range badInputTests {
		if len(tt.give) < 1<<16 {
			f.Add([]byte(tt.give))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev detector.Event
		checkDecode(t, &ev, data, DefaultLimits())
		// Again into the same event, with limits small enough to be reached.
		checkDecode(t, &ev, data, Limits{MaxBytes: 4096, MaxDepth: 5})
	})
}
