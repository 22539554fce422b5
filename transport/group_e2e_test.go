package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
	"github.com/hangwatch/hangwatch/internal/natstest"
)

// freezeOnPublish is a sink that cuts its member's network (freezes its proxy) as the
// engine hands it its first output, then passes every output on: the output is in
// flight, in the proxy, when the member's partitions move.
type freezeOnPublish struct {
	engine.Sink
	once  sync.Once
	proxy *natstest.Proxy
}

func (s *freezeOnPublish) Publish(callID string, out *detector.Output) error {
	s.once.Do(s.proxy.Freeze)
	return s.Sink.Publish(callID, out)
}

// TestGroupSecondPublisher measures the worst case of SPEC §3's exactly once in a
// group: a member cut off with outputs in flight while its partitions move. The new
// owner rebuilds the calls, finds in the hang stream none of what the member cut off
// published (it is held in the network), and publishes the same hangs; once the network
// is back, the cut-off member's outputs reach the stream, which drops them as
// duplicates. A plain subscriber sees each hang once.
func TestGroupSecondPublisher(t *testing.T) {
	srv := startJetStream(t)
	proxy := natstest.StartProxy(t, listenOf(srv.Embedded))
	gs := newGroupSetup(t, "second", 2)
	gs.replicas = 1
	gs.wrap = func(member string, s engine.Sink) engine.Sink {
		if member == "b" {
			return &freezeOnPublish{Sink: s, proxy: proxy}
		}
		return s
	}
	a, err := gs.newMember(t, "a", srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	b, err := gs.newMember(t, "b", proxy.URL())
	if err != nil {
		t.Fatal(err)
	}
	waitBalanced(t, 2, a, b)
	received := gs.subscribe(t, plainClient(t, srv))
	tr := newTraffic(t, plainClient(t, srv), gs)
	const calls = 12
	for i := range calls {
		// Stalls that never end: a hang each, a second after its turn.
		id := fmt.Sprintf("c%02d", i)
		ts := time.Now().UnixMilli()
		tr.publish(testCtx(t), id, "conversation-update", convUpdate(id, ts, userTurn("user-1", ts)))
	}
	// b freezes at its first hang; a takes its partition over after the member TTL.
	eventually(t, "b cut off and its partition taken over", func() bool { return a.src.Owned() == 2 })
	time.Sleep(500 * time.Millisecond)
	proxy.Thaw()
	eventually(t, "b back in the group", func() bool { return b.src.Owned() == 1 && a.src.Owned() == 1 })
	want := map[string]int{}
	for i := range calls {
		want[fmt.Sprintf("hang/c%02d", i)] = 1
	}
	eventually(t, "every hang at the subscriber", func() bool { return len(received.all()) >= calls })
	time.Sleep(time.Second) // a duplicate would show by now
	got := map[string]int{}
	for _, r := range received.all() {
		got[r.kind+"/"+r.call]++
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s received %d times, want %d", k, got[k], n)
		}
	}
	if len(got) != len(want) {
		t.Errorf("received %v, want %v", got, want)
	}
	bs, as := b.sink.Stats(), a.sink.Stats()
	t.Logf("the member cut off published %d hangs, %d of them dropped by the hang stream as duplicates of the new owner's; the new owner published %d, found %d out already",
		bs.Published[detector.KindHang], bs.Duplicates, as.Published[detector.KindHang], as.AlreadyOut)
	if bs.Duplicates == 0 && as.AlreadyOut == 0 {
		t.Error("no output went out from both members: the test did not cut a member off with outputs in flight")
	}
}

// TestGroupLeave: a member that leaves hands its partitions over at once, with its
// outputs stored first; the member that stays rebuilds them and publishes nothing twice.
func TestGroupLeave(t *testing.T) {
	srv := startJetStream(t)
	gs := newGroupSetup(t, "leave", 4)
	gs.replicas = 1
	a, err := gs.newMember(t, "a", srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	b, err := gs.newMember(t, "b", srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	waitBalanced(t, 4, a, b)
	eventually(t, "both ready", func() bool { ok, _ := a.src.Ready(); ok2, _ := b.src.Ready(); return ok && ok2 })
	received := gs.subscribe(t, plainClient(t, srv))
	tr := newTraffic(t, plainClient(t, srv), gs)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr.run(ctx, 2*time.Second, 50*time.Millisecond)
	time.Sleep(time.Second)
	left := time.Now()
	b.stop()
	eventually(t, "a consumes every partition", func() bool { return a.src.Owned() == 4 })
	took := time.Since(left)
	eventually(t, "a ready with every partition", func() bool { ok, _ := a.src.Ready(); return ok })
	calls := tr.wait()
	received.settle(calls, 10*time.Second)
	v := judge(calls, received.all())
	v.report(t, "a member leaves", len(calls))
	t.Logf("a took the partitions over %v after b began to stop", took.Round(time.Millisecond))
	if took >= DefaultMemberTTL {
		t.Errorf("the partitions moved after %v: b's leave was not heard, a waited for the member TTL", took)
	}
}

// TestGroupSourceStream: a group partitions the events stream it makes, gives the
// partitioning to one made without it, and refuses one partitioned otherwise.
func TestGroupSourceStream(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	ctx := testCtx(t)
	so := SourceOptions{Subjects: []string{"voice.events.>"}}
	part16, err := NewPartitioning("voice.events.>", 16, 3)
	if err != nil {
		t.Fatal(err)
	}
	part8, err := NewPartitioning("voice.events.>", 8, 3)
	if err != nil {
		t.Fatal(err)
	}
	transform := func(name string) *jetstream.SubjectTransformConfig {
		return streamInfo(t, js, name).Config.SubjectTransform
	}

	if _, err := NewGroupSource(ctx, conn, so, StreamOptions{Name: "MADE"}, GroupOptions{Name: "g", Partitioning: part16}); err != nil {
		t.Fatal(err)
	}
	if got := transform("MADE"); !part16.sameTransform(got) {
		t.Errorf("a stream made by a group transforms %+v, want %v", got, part16)
	}
	// It takes only what the partitioning matches: an event without a token after the
	// call id, which no partition would hold, is refused to its publisher rather than
	// stored where no member reads it.
	if got := streamInfo(t, js, "MADE").Config.Subjects; !slices.Equal(got, []string{"voice.events.*.>"}) {
		t.Errorf("a stream made by a group takes %q, want only what it partitions", got)
	}
	if _, err := js.Publish(ctx, "voice.events.c1", statusUpdate("c1", "ongoing", 1)); err == nil {
		t.Error("an event on voice.events.<callId> was stored, in no partition")
	}
	if _, err := js.Publish(ctx, eventSubject("c1", "status-update"), statusUpdate("c1", "ongoing", 1)); err != nil {
		t.Errorf("an event on voice.events.<callId>.<type>: %v", err)
	}

	plain, err := NewPartitioning("plain.events.>", 16, 3)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "PLAIN", Subjects: []string{"plain.events.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewGroupSource(ctx, conn, SourceOptions{Subjects: []string{"plain.events.>"}}, StreamOptions{Name: "PLAIN"},
		GroupOptions{Name: "g", Partitioning: plain}); err != nil {
		t.Fatal(err)
	}
	if got := transform("PLAIN"); !plain.sameTransform(got) {
		t.Errorf("a stream without partitions, once a group used it, transforms %+v, want %v", got, plain)
	}

	_, err = NewGroupSource(ctx, conn, so, StreamOptions{Name: "MADE"}, GroupOptions{Name: "g", Partitioning: part8})
	if !errors.Is(err, ErrGroup) {
		t.Errorf("a group of 8 partitions on a stream of 16: %v, want ErrGroup", err)
	}
	for _, tt := range []struct {
		name string
		give GroupOptions
		so   SourceOptions
	}{
		{"a bad name", GroupOptions{Name: "a.b", Partitioning: part16}, so},
		{"no partitioning", GroupOptions{Name: "g"}, so},
		{"two subjects", GroupOptions{Name: "g", Partitioning: part16}, SourceOptions{Subjects: []string{"voice.events.>", "other.>"}}},
	} {
		if _, err := NewGroupSource(ctx, conn, tt.so, StreamOptions{Name: "MADE"}, tt.give); !errors.Is(err, ErrGroup) {
			t.Errorf("%s: %v, want ErrGroup", tt.name, err)
		}
	}
}

// TestStreamHealth: healthy while the streams answer, not once one is missing or the
// server is gone.
func TestStreamHealth(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	ctx := testCtx(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"ev.>"}}); err != nil {
		t.Fatal(err)
	}
	h, err := NewStreamHealth(conn, "EV")
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := h.Healthy(); !ok {
		t.Errorf("healthy before the first check: %s", why)
	}
	tests := []struct {
		give string
		want bool
	}{{"EV", true}, {"MISSING", false}}
	for _, tt := range tests {
		if got := h.check(ctx, tt.give) == ""; got != tt.want {
			t.Errorf("stream %s healthy: %v, want %v", tt.give, got, tt.want)
		}
	}
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = h.Run(runCtx)
	}()
	defer func() {
		stop()
		<-done
	}()
	srv.stop()
	eventually(t, "unhealthy once the server is gone", func() bool { ok, _ := h.Healthy(); return !ok })
	srv.start(t)
	eventually(t, "healthy once it is back", func() bool { ok, _ := h.Healthy(); return ok })
}

// TestGroupDeadLetterInPartition: a dead-letter subject under the group's --subject: a
// rejected event's dead letter comes back in through its partition, is terminated, and
// counts among the partition's deliveries, so the next event follows on without a
// rebuild of the partition.
func TestGroupDeadLetterInPartition(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	conn := connect(t, srv, ConnOptions{})
	part, err := NewPartitioning("voice.events.>", 1, 3)
	if err != nil {
		t.Fatal(err)
	}
	src, err := NewGroupSource(testCtx(t), conn, SourceOptions{Subjects: []string{"voice.events.>"}, DeadLetter: "voice.events.dead.letters",
		ProbeEvery: 100 * time.Millisecond, Logger: testLogger(t)}, StreamOptions{}, GroupOptions{Name: "g", Partitioning: part, ID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	eng := runEngine(t, src, &recordingSink{})
	eventually(t, "partition live", func() bool { ok, _ := src.Ready(); return ok })
	rebuilds := src.Stats().Rebuilds
	store(t, js, eventSubject("bad", "status-update"), []byte("not json"))
	eventually(t, "the dead letter back in and terminated", func() bool { return src.Stats().DeadLettered == 1 && src.Stats().Acked >= 1 })
	store(t, js, eventSubject("c1", "status-update"), statusUpdate("c1", "ongoing", 1))
	eventually(t, "the next event applied", func() bool { return eng.Stats().Calls == 1 })
	// A delivery that does not follow on is counted as it comes, before the partition
	// is rebuilt and the event applied again.
	if st := src.Stats(); st.LostDeliveries != 0 || st.Rebuilds != rebuilds {
		t.Errorf("after the dead letter came back in: %d deliveries counted lost, %d rebuilds; want none: %+v",
			st.LostDeliveries, st.Rebuilds-rebuilds, st)
	}
}
