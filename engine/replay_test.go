package engine

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/detector"
)

// replaySource replays stored events, then hands its deliver function to the test.
// With hold set, Replay returns only once the engine is stopped.
type replaySource struct {
	testSource
	stored   []*detector.Event
	replayed chan struct{} // closed once every stored event is delivered
	hold     bool
}

func (s *replaySource) Replay(ctx context.Context, deliver func(*detector.Event)) error {
	for _, ev := range s.stored {
		deliver(ev)
	}
	close(s.replayed)
	if s.hold {
		<-ctx.Done()
	}
	return nil
}

// at returns an event received d before start.
func at(ev *detector.Event, d time.Duration) *detector.Event {
	ev.Received = start.Add(-d).UnixNano()
	ev.Payload = payload("stored")
	return ev
}

// TestEngineReplay checks the recovery of SPEC §2 after a restart: the stored state is
// applied whole before any deadline fires, so a stall whose deadline passed while the
// engine was down hangs at once, and calls answered or ended meanwhile do not.
func TestEngineReplay(t *testing.T) {
	clk := clockwork.NewFakeClockAt(start)
	sink := &recordingSink{}
	end := statusEvent("ended", detector.StatusFinished)
	src := &replaySource{
		testSource: testSource{deliver: make(chan func(*detector.Event), 1)},
		replayed:   make(chan struct{}),
		stored: []*detector.Event{
			at(conv("stalled", user("user-1", -20_000)), 20*time.Second),
			// Its deadline passed 13 s before its end, but it ended while hangwatch was
			// down: no hang (the end comes later in the replay).
			at(conv("ended", user("user-1", -20_000)), 20*time.Second),
			at(conv("answered", user("user-1", -20_000), reply("r1", -8_000)), 8*time.Second),
			at(conv("recent", user("user-1", -2_000)), 2*time.Second),
			at(end, 2*time.Second),
		},
	}
	e, err := New(src, sink, WithClock(clk), WithShards(2))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := runEngine(e)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	<-src.replayed
	<-src.deliver // live
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"hang stalled user-1 turn-timeout 20000ms@0"}
	if got := briefs(sink.take()); !slices.Equal(got, want) {
		t.Errorf("at release: published %v, want %v", got, want)
	}
	clk.Advance(3 * time.Second) // "recent" stalled 2 s before the restart
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	want = []string{"hang recent user-1 turn-timeout 5000ms@3000"}
	if got := briefs(sink.take()); !slices.Equal(got, want) {
		t.Errorf("3 s later: published %v, want %v", got, want)
	}
}

// TestEngineReplayCut checks that an engine stopped during its replay publishes nothing
// from the half it applied: the next start replays again.
func TestEngineReplayCut(t *testing.T) {
	sink := &recordingSink{}
	src := &replaySource{stored: []*detector.Event{at(conv("c1", user("user-1", -20_000)), 20*time.Second)},
		replayed: make(chan struct{}), hold: true}
	e, err := New(src, sink, WithClock(clockwork.NewFakeClockAt(start)))
	if err != nil {
		t.Fatal(err)
	}
	_, stop := runEngine(e)
	<-src.replayed
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if got := sink.take(); len(got) != 0 || e.Stats().Calls != 1 {
		t.Errorf("published %v after a cut replay (calls %d), want nothing", briefs(got), e.Stats().Calls)
	}
}

// callsOn returns the id of a call on each shard of e, in the order of the shards.
func callsOn(e *Engine) []string {
	ids := make([]string, len(e.shards))
	for i, found := 0, 0; found < len(ids); i++ {
		id := fmt.Sprint("call-", i)
		for j, s := range e.shards {
			if ids[j] == "" && e.shardOf(id) == s {
				ids[j] = id
				found++
			}
		}
	}
	return ids
}

// TestEngineReleaseSideBySide checks that the shards go live side by side after a
// replay: while the first shard is still busy publishing what the release made due, the
// second has its release too and publishes its own.
func TestEngineReleaseSideBySide(t *testing.T) {
	rec := &recordingSink{c: make(chan published, 2)}
	sink := &gatedSink{recordingSink: rec, entered: make(chan struct{}), gate: make(chan struct{})}
	src := &replaySource{testSource: testSource{deliver: make(chan func(*detector.Event), 1)}, replayed: make(chan struct{})}
	e, err := New(src, sink, WithClock(clockwork.NewFakeClockAt(start)), WithShards(2))
	if err != nil {
		t.Fatal(err)
	}
	ids := callsOn(e)
	sink.call = ids[0] // keeps the first shard busy
	for _, id := range ids {
		src.stored = append(src.stored, at(conv(id, user("user-1", -20_000)), 20*time.Second))
	}
	_, stop := runEngine(e)
	defer func() {
		if err := stop(); err != nil {
			t.Error(err)
		}
	}()
	<-sink.entered
	select {
	case p := <-rec.c:
		if got, want := brief(p), "hang "+ids[1]+" user-1 turn-timeout 20000ms@0"; got != want {
			t.Errorf("published %q, want %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Error("the second shard was not released while the first was busy")
	}
	close(sink.gate)
	<-src.deliver // live
}

// TestEngineStopDuringRelease checks that a stop while the shards go live after a
// replay is a clean stop like any other (SPEC §4: exit 0): Run returns nil, and what the
// release made due is published.
func TestEngineStopDuringRelease(t *testing.T) {
	rec := &recordingSink{}
	sink := &gatedSink{recordingSink: rec, call: "c1", entered: make(chan struct{}), gate: make(chan struct{})}
	src := &replaySource{stored: []*detector.Event{at(conv("c1", user("user-1", -20_000)), 20*time.Second)},
		replayed: make(chan struct{})}
	e, err := New(src, sink, WithClock(clockwork.NewFakeClockAt(start)), WithShards(1))
	if err != nil {
		t.Fatal(err)
	}
	_, stop := runEngine(e)
	<-sink.entered // the release is under way: its shard publishes c1's hang
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	<-e.shards[0].stop // Run gave up waiting for the release
	close(sink.gate)
	if err := <-stopped; err != nil {
		t.Errorf("Run() stopped during the release = %v, want nil", err)
	}
	if got, want := briefs(rec.take()), []string{"hang c1 user-1 turn-timeout 20000ms@0"}; !slices.Equal(got, want) {
		t.Errorf("published %v, want %v", got, want)
	}
}
