package wire

import (
	"testing"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/fixtures"
)

// FuzzDecode checks Decode against the reference decoder of reference_test.go: both
// must accept and refuse the same inputs, for the same reason, and agree on every
// field and span of what they accept.
func FuzzDecode(f *testing.F) {
	for _, name := range fixtures.WebhookNames() {
		f.Add(fixtures.Webhook(name))
	}
	for _, name := range fixtures.VapiNames() {
		f.Add(fixtures.Vapi(name))
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
