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

func (e *fakeEntry) Bucket() string                  { return "fake" }
func (e *fakeEntry) Key() string                     { return e.key }
func (e *fakeEntry) Value() []byte                   { return e.value }
func (e *fakeEntry) Revision() uint64                { return e.rev }
func (e *fakeEntry) Created() time.Time              { return time.Time{} }
func (e *fakeEntry) Delta() uint64                   { return 0 }
func (e *fakeEntry) Operation() jetstream.KeyValueOp { return e.op }
