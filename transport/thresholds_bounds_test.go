package transport

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// TestThresholdsDoNotPinEvents: the engine looks thresholds up with the team and
// assistant ids of the event it received (For(ev.TeamID, ev.AssistantID)), strings
// that alias the event's bytes. Once the engine is done with an event, the thresholds
// must not keep it in memory (SPEC §2 Bounds: "The process's memory stays within the
// budget plus a fixed overhead under any input"), whether its team has a key or not.
func TestThresholdsDoNotPinEvents(t *testing.T) {
	srv := startJetStream(t)
	base := detector.DefaultConfig()
	th := runThresholds(t, srv, "limits", base)
	kv, err := jsClient(t, srv).KeyValue(testCtx(t), "limits")
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 64, 512 << 10 // events of 512 KiB, each of a team of its own
	put := func(key, value string) {
		t.Helper()
		if _, err := kv.Put(testCtx(t), key, []byte(value)); err != nil {
			t.Fatal(err)
		}
	}
	put("assistant.a1", `{"timeoutMs":7000}`)
	for i := range n {
		put(fmt.Sprintf("team.keyed-%d", i), `{"maxWaitMs":20000}`)
	}
	eventually(t, "the keys applied", func() bool { return th.Stats().Applied == n+1 })

	tests := []struct {
		name        string
		giveTeam    string // with the event's number
		wantMaxWait time.Duration
	}{
		{"team without a key", "team-%d", 10 * time.Second},
		{"team with a key", "keyed-%d", 20 * time.Second},
	}
	pad := strings.Repeat("x", size)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var freed atomic.Int64
			for i := range n {
				team := fmt.Sprintf(tt.giveTeam, i)
				data := fmt.Appendf(nil, `{"message":{"type":"status-update","call":{"id":"c%d","teamId":%q,"assistantId":"a1","status":"ongoing"},"assistant":{"pad":%q}}}`, i, team, pad)
				runtime.AddCleanup(&data[0], func(int) { freed.Add(1) }, 0)
				var ev detector.Event
				if err := wire.Decode(&ev, data, wire.DefaultLimits()); err != nil {
					t.Fatal(err)
				}
				if ev.TeamID != team {
					t.Fatalf("decoded team %q, want %q", ev.TeamID, team)
				}
				if cfg := th.For(ev.TeamID, ev.AssistantID); cfg.Timeout != 7*time.Second || cfg.MaxWait != tt.wantMaxWait {
					t.Fatalf("For(%q, a1) = timeout %v, max wait %v; want 7s, %v", team, cfg.Timeout, cfg.MaxWait, tt.wantMaxWait)
				}
				// The engine is done with the event: nothing but the thresholds can hold it.
			}
			// Cleanups run after a collection, in their own goroutine: wait for them,
			// collecting again until they all ran.
			for deadline := time.Now().Add(waitFor); freed.Load() < n && time.Now().Before(deadline); {
				runtime.GC()
				time.Sleep(5 * time.Millisecond)
			}
			if got := freed.Load(); got != n {
				t.Errorf("%d of %d received events freed once done with: the thresholds keep the others in memory", got, n)
			}
		})
	}
	runtime.KeepAlive(th)
}

// TestThresholdsCacheBounded: what For keeps stays bounded, whatever teams and
// assistants the events name: random teams with an assistant that has a key keep
// nothing, and the pairs of a team and an assistant that both have a key are kept up
// to maxCombos, while every answer stays right.
func TestThresholdsCacheBounded(t *testing.T) {
	const teams, assistants = 200, 100 // 20,000 pairs of keys, more than maxCombos
	var entries []jetstream.KeyValueEntry
	for i := range teams {
		entries = append(entries, putEntry(fmt.Sprintf("team.t%d", i), fmt.Sprintf(`{"timeoutMs":%d}`, 2000+i)))
	}
	for i := range assistants {
		entries = append(entries, putEntry(fmt.Sprintf("assistant.a%d", i), fmt.Sprintf(`{"maxWaitMs":%d}`, 20000+i)))
	}
	base := detector.DefaultConfig()
	th := loadFake(t, base, entries)
	cached := func() int {
		n := 0
		th.set.Load().combos.Range(func(any, any) bool { n++; return true })
		return n
	}

	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100_000 {
		team := fmt.Sprintf("random-%x", rnd.Uint64())
		if cfg := th.For(team, "a7"); cfg.Timeout != base.Timeout || cfg.MaxWait != 20007*time.Millisecond {
			t.Fatalf("For(%q, a7) = %+v, want the flags' timeout and a7's max wait", team, cfg.Thresholds)
		}
	}
	if n := cached(); n != 0 {
		t.Errorf("%d pairs cached after 100,000 random teams with an assistant that has a key, want 0: they resolve without a cache", n)
	}

	most := 0
	for range 3 {
		for i := range teams {
			for j := range assistants {
				cfg := th.For(fmt.Sprintf("t%d", i), fmt.Sprintf("a%d", j))
				if want := time.Duration(2000+i) * time.Millisecond; cfg.Timeout != want || cfg.MaxWait != time.Duration(20000+j)*time.Millisecond {
					t.Fatalf("For(t%d, a%d) = %+v, want the team's timeout and the assistant's max wait", i, j, cfg.Thresholds)
				}
			}
			most = max(most, cached())
		}
	}
	if most > maxCombos || most == 0 {
		t.Errorf("up to %d pairs cached, want 1 to %d", most, maxCombos)
	}
}

// TestThresholdsLoadLinear: loading a bucket costs in proportion to its keys. The
// start must not apply them one by one into a new copy of all the keys so far: 13,000
// keys did not load within the start's time (JetStream "did not answer in time").
// The work is counted in allocations, not time, which a shared machine makes noisy.
func TestThresholdsLoadLinear(t *testing.T) {
	base := detector.DefaultConfig()
	perKey := func(n int) float64 {
		entries := make([]jetstream.KeyValueEntry, 0, n+1)
		entries = append(entries, putEntry("assistant.a", `{"maxWaitMs":20000}`))
		for i := range n {
			entries = append(entries, putEntry(fmt.Sprintf("team.t%d", i), `{"timeoutMs":7000}`))
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		th := loadFake(t, base, entries)
		runtime.ReadMemStats(&after)
		if st := th.Stats(); st.Teams != n || st.Applied != int64(n+1) {
			t.Fatalf("%d team keys: Stats() = %+v", n, st)
		}
		if cfg := th.For(fmt.Sprintf("t%d", n-1), "a"); cfg.Timeout != 7*time.Second || cfg.MaxWait != 20*time.Second {
			t.Fatalf("%d team keys: For(t%d, a) = %+v", n, n-1, cfg.Thresholds)
		}
		per := float64(after.Mallocs-before.Mallocs) / float64(n)
		t.Logf("%d team keys: %.1f allocations a key", n, per)
		return per
	}
	small, large := perKey(1000), perKey(8000)
	if large > 2*small {
		t.Errorf("a key costs %.1f allocations in a bucket of 8,000 keys, %.1f in one of 1,000: loading is not linear", large, small)
	}
}

// TestThresholdsLoadBatch: the keys loaded together merge as when they came one by
// one: the last value of a key wins, a value that is not valid is ignored and counted
// and the previous one stays, a deleted key falls back, an assistant's key wins over
// its team's field by field; each counts once, when in force.
func TestThresholdsLoadBatch(t *testing.T) {
	base := detector.DefaultConfig()
	entries := []jetstream.KeyValueEntry{
		putEntry("team.t1", `{"timeoutMs":3000}`),
		putEntry("team.t1", `{"timeoutMs":7000}`),
		putEntry("team.t1", `{"timeoutMs":-1}`), // invalid: 7 s stays
		putEntry("team.t2", `{"timeoutMs":8000}`),
		deleteEntry("team.t2"),
		putEntry("assistant.a1", `{"maxWaitMs":20000}`),
		putEntry("tenant.x", `{}`), // invalid key
		deleteEntry("assistant.gone"),
	}
	th := loadFake(t, base, entries)
	if got, want := th.Stats(), (ThresholdsStats{Applied: 4, Invalid: 2, Deleted: 2, Teams: 1, Assistants: 1}); got != want {
		t.Errorf("Stats() = %+v, want %+v", got, want)
	}
	tests := []struct {
		team, assistant       string
		wantTimeout, wantWait time.Duration
	}{
		{"t1", "", 7 * time.Second, 10 * time.Second},
		{"t1", "a1", 7 * time.Second, 20 * time.Second},
		{"t2", "", 5 * time.Second, 10 * time.Second},
		{"t2", "a1", 5 * time.Second, 20 * time.Second},
		{"t3", "a2", 5 * time.Second, 10 * time.Second},
	}
	for _, tt := range tests {
		if cfg := th.For(tt.team, tt.assistant); cfg.Timeout != tt.wantTimeout || cfg.MaxWait != tt.wantWait {
			t.Errorf("For(%q, %q) = %+v, want timeout %v, max wait %v", tt.team, tt.assistant, cfg.Thresholds, tt.wantTimeout, tt.wantWait)
		}
	}

	// A watch started anew hands its first values over together too, and what it
	// applied is in force once it ends, even before its end-of-values marker.
	ch := make(chan jetstream.KeyValueEntry, 2)
	ch <- putEntry("team.t3", `{"timeoutMs":9000}`)
	close(ch)
	th.watch(testCtx(t), fakeWatcher(ch))
	if cfg := th.For("t3", ""); cfg.Timeout != 9*time.Second {
		t.Errorf("For(t3) after the watch = %+v, want a 9s timeout", cfg.Thresholds)
	}
	if st := th.Stats(); st.Applied != 5 || st.Teams != 2 {
		t.Errorf("Stats() after the watch = %+v, want 5 applied, 2 teams", st)
	}
}

// loadFake returns the thresholds of base loaded from a bucket whose values are
// entries, handed over by a watcher as JetStream does.
func loadFake(t *testing.T, base detector.Config, entries []jetstream.KeyValueEntry) *Thresholds {
	t.Helper()
	th := newThresholds(&fakeBucket{entries: entries}, "fake", base, zap.NewNop(), zap.NewNop())
	if err := th.load(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if !th.Synced() {
		t.Fatal("not synced after load")
	}
	return th
}

// fakeBucket is a bucket that only watches: its values, then nil. The rest of
// jetstream.KeyValue is not called.
type fakeBucket struct {
	jetstream.KeyValue
	entries []jetstream.KeyValueEntry
}

func (b *fakeBucket) WatchAll(context.Context, ...jetstream.WatchOpt) (jetstream.KeyWatcher, error) {
	ch := make(chan jetstream.KeyValueEntry, len(b.entries)+1)
	for _, e := range b.entries {
		ch <- e
	}
	ch <- nil
	return fakeWatcher(ch), nil
}

type fakeWatcher chan jetstream.KeyValueEntry

func (w fakeWatcher) Updates() <-chan jetstream.KeyValueEntry { return w }
func (w fakeWatcher) Stop() error                             { return nil }

// fakeEntry is a value of a bucket, of a revision above all the ones before.
type fakeEntry struct {
	key   string
	value []byte
	rev   uint64
	op    jetstream.KeyValueOp
}

var nextRev atomic.Uint64

func putEntry(key, value string) jetstream.KeyValueEntry {
	return &fakeEntry{key: key, value: []byte(value), rev: nextRev.Add(1), op: jetstream.KeyValuePut}
}

func deleteEntry(key string) jetstream.KeyValueEntry {
	return &fakeEntry{key: key, rev: nextRev.Add(1), op: jetstream.KeyValueDelete}
}

func (e *fakeEntry) Bucket() string                  { return "fake" }
func (e *fakeEntry) Key() string                     { return e.key }
func (e *fakeEntry) Value() []byte                   { return e.value }
func (e *fakeEntry) Revision() uint64                { return e.rev }
func (e *fakeEntry) Created() time.Time              { return time.Time{} }
func (e *fakeEntry) Delta() uint64                   { return 0 }
func (e *fakeEntry) Operation() jetstream.KeyValueOp { return e.op }
