package transport

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/detector"
)

// runThresholds makes the thresholds of a bucket on srv, created if missing, runs them
// until the test ends, and returns once they are synced.
func runThresholds(t *testing.T, srv *testServer, bucket string, base detector.Config) *Thresholds {
	t.Helper()
	th, err := NewThresholds(testCtx(t), connect(t, srv, ConnOptions{}), bucket, 1, base, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- th.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Thresholds.Run() = %v", err)
		}
	})
	eventually(t, "thresholds synced", th.Synced)
	return th
}

// TestThresholds: the keys of the bucket apply live, an assistant's over its team's
// over the flags, field by field; a value that is not valid is ignored and counted, and
// the previous one stays; a deleted key falls back; the bucket is created if missing,
// and the keys it holds at the start apply.
func TestThresholds(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	ctx := testCtx(t)
	base := detector.DefaultConfig() // timeout 5 s, max wait 10 s

	// The bucket is created by a first start; a key is put while no engine runs.
	if _, err := NewThresholds(ctx, connect(t, srv, ConnOptions{}), "limits", 1, base, nil, nil); err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "limits")
	if err != nil {
		t.Fatalf("the bucket was not created: %v", err)
	}
	if _, err := kv.Put(ctx, "team.quiet", []byte(`{"enabled":false}`)); err != nil {
		t.Fatal(err)
	}
	th := runThresholds(t, srv, "limits", base)

	type want struct {
		timeout, maxWait, toolTimeout time.Duration
		disabled                      bool
	}
	check := func(t *testing.T, team, assistant string, w want) {
		t.Helper()
		cfg := th.For(team, assistant)
		got := want{cfg.Timeout, cfg.MaxWait, cfg.ToolTimeout, cfg.Disabled}
		if got != w {
			t.Errorf("For(%q, %q) = %+v, want %+v", team, assistant, got, w)
		}
		if cfg.MaxLag != base.MaxLag || cfg.CallTTL != base.CallTTL {
			t.Errorf("For(%q, %q) changed the bounds: %+v", team, assistant, cfg)
		}
	}
	check(t, "quiet", "", want{5 * time.Second, 10 * time.Second, 0, true})
	check(t, "other", "", want{5 * time.Second, 10 * time.Second, 0, false})

	// Each step puts (or deletes) one key, then waits until the thresholds count it.
	var stats ThresholdsStats
	stats.Applied = 1 // team.quiet
	step := func(t *testing.T, key, value string, counter *int64) {
		t.Helper()
		var err error
		if value == "" {
			err = kv.Delete(testCtx(t), key)
		} else {
			_, err = kv.Put(testCtx(t), key, []byte(value))
		}
		if err != nil {
			t.Fatal(err)
		}
		*counter++
		eventually(t, "the change of "+key+" counted", func() bool {
			st := th.Stats()
			return st.Applied == stats.Applied && st.Invalid == stats.Invalid && st.Deleted == stats.Deleted
		})
	}

	tests := []struct {
		name      string
		key, give string // give "" deletes the key
		counter   *int64
		team, ast string
		want      want
	}{
		{"team key", "team.t1", `{"timeoutMs":7000}`, &stats.Applied, "t1", "", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"another team unchanged", "team.t2", `{"toolTimeoutMs":30000}`, &stats.Applied, "t1", "a1", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"assistant key over team, field by field", "assistant.a1", `{"maxWaitMs":20000}`, &stats.Applied, "t1", "a1", want{7 * time.Second, 20 * time.Second, 0, false}},
		{"assistant key over the flags", "assistant.a1", `{"maxWaitMs":20000}`, &stats.Applied, "t2", "a1", want{5 * time.Second, 20 * time.Second, 30 * time.Second, false}},
		{"assistant key replaced", "assistant.a1", `{"timeoutMs":9000,"maxWaitMs":0}`, &stats.Applied, "t1", "a1", want{9 * time.Second, 0, 0, false}},
		{"assistant disables", "assistant.a2", `{"enabled":false}`, &stats.Applied, "t1", "a2", want{7 * time.Second, 10 * time.Second, 0, true}},
		{"assistant enables in a quiet team", "assistant.a3", `{"enabled":true}`, &stats.Applied, "quiet", "a3", want{5 * time.Second, 10 * time.Second, 0, false}},
		{"bad JSON", "assistant.a1", `{"timeoutMs":`, &stats.Invalid, "t1", "a1", want{9 * time.Second, 0, 0, false}},
		{"unknown field", "assistant.a1", `{"timeout":1000}`, &stats.Invalid, "t1", "a1", want{9 * time.Second, 0, 0, false}},
		{"wrong type", "assistant.a1", `{"timeoutMs":"1000"}`, &stats.Invalid, "t1", "a1", want{9 * time.Second, 0, 0, false}},
		{"negative", "team.t1", `{"maxWaitMs":-1}`, &stats.Invalid, "t1", "", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"zero timeout", "team.t1", `{"timeoutMs":0}`, &stats.Invalid, "t1", "", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"two values", "team.t1", `{"timeoutMs":1000} {}`, &stats.Invalid, "t1", "", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"not an object", "team.t1", `null`, &stats.Invalid, "t1", "", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"other prefix", "tenant.t1", `{"timeoutMs":1000}`, &stats.Invalid, "t1", "", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"assistant deleted", "assistant.a1", "", &stats.Deleted, "t1", "a1", want{7 * time.Second, 10 * time.Second, 0, false}},
		{"team deleted", "team.t1", "", &stats.Deleted, "t1", "", want{5 * time.Second, 10 * time.Second, 0, false}},
		{"quiet team deleted", "team.quiet", "", &stats.Deleted, "quiet", "", want{5 * time.Second, 10 * time.Second, 0, false}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step(t, tt.key, tt.give, tt.counter)
			check(t, tt.team, tt.ast, tt.want)
		})
	}
	if st := th.Stats(); st.Teams != 1 || st.Assistants != 2 {
		t.Errorf("Stats() = %+v, want 1 team key (t2) and 2 assistant keys (a2, a3) in force", st)
	}
}

// TestThresholdsPurge: a purged key falls back, like a deleted one.
func TestThresholdsPurge(t *testing.T) {
	srv := startJetStream(t)
	th := runThresholds(t, srv, "limits", detector.DefaultConfig())
	kv, err := jsClient(t, srv).KeyValue(testCtx(t), "limits")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(testCtx(t), "team.t1", []byte(`{"timeoutMs":7000}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "applied", func() bool { return th.For("t1", "").Timeout == 7*time.Second })
	if err := kv.Purge(testCtx(t), "team.t1"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "purged", func() bool { return th.For("t1", "").Timeout == 5*time.Second })
	if _, err := kv.Get(testCtx(t), "team.t1"); err != jetstream.ErrKeyNotFound {
		t.Errorf("Get() after purge = %v", err)
	}
}

// TestThresholdsLoadedAtStart: the values the bucket holds apply as soon as
// NewThresholds returns, before Run watches it: a call armed at the start (a replay)
// arms with them, not with the flags'.
func TestThresholdsLoadedAtStart(t *testing.T) {
	srv := startJetStream(t)
	base := detector.DefaultConfig()
	runThresholds(t, srv, "start", base) // creates the bucket
	kv, err := jsClient(t, srv).KeyValue(testCtx(t), "start")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(testCtx(t), "team.t1", []byte(`{"timeoutMs": 2500}`)); err != nil {
		t.Fatal(err)
	}
	th, err := NewThresholds(testCtx(t), connect(t, srv, ConnOptions{}), "start", 1, base, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := th.For("t1", "a").Timeout; got != 2500*time.Millisecond {
		t.Errorf("For(t1) timeout %v right after NewThresholds, want 2.5s", got)
	}
}

// FuzzParseOverride: a thresholds value is bytes from the network (anyone who may write
// the bucket): ParseOverride never panics, and what it accepts is within its bounds and
// reads back the same.
func FuzzParseOverride(f *testing.F) {
	for _, s := range []string{`{"timeoutMs": 4000, "maxWaitMs": 9000}`, `{"toolTimeoutMs": 15000}`, `{"enabled": false}`,
		`{"timeoutMs": -1}`, `null`, `{}`, `{"timeoutMs": 1e30}`, `{"x": 1}`, `{"timeoutMs": 1} {}`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		o, err := ParseOverride(data)
		if err != nil {
			return
		}
		for _, v := range []*int64{o.TimeoutMs, o.MaxWaitMs, o.ToolTimeoutMs} {
			if v != nil && (*v < 0 || *v > int64(100*24*time.Hour/time.Millisecond)) {
				t.Fatalf("accepted %d ms from %q", *v, data)
			}
		}
		if o.TimeoutMs != nil && *o.TimeoutMs == 0 {
			t.Fatalf("accepted a zero timeout from %q", data)
		}
		back, err := json.Marshal(o)
		if err != nil {
			t.Fatal(err)
		}
		if again, err := ParseOverride(back); err != nil || !equalOverride(again, o) {
			t.Fatalf("%q read back from %q as %+v, %v", back, data, again, err)
		}
	})
}

func equalOverride(a, b Override) bool {
	eq := func(x, y *int64) bool { return (x == nil) == (y == nil) && (x == nil || *x == *y) }
	return eq(a.TimeoutMs, b.TimeoutMs) && eq(a.MaxWaitMs, b.MaxWaitMs) && eq(a.ToolTimeoutMs, b.ToolTimeoutMs) &&
		(a.Enabled == nil) == (b.Enabled == nil) && (a.Enabled == nil || *a.Enabled == *b.Enabled)
}
