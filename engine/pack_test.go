package engine

import (
	"slices"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
)

// packable is a retPayload whose copies pack to a quarter of their bytes.
type packable struct {
	*retPayload
	packed bool
}

func (p *packable) Len() int {
	if p.packed {
		return p.retPayload.Len() / 4
	}
	return p.retPayload.Len()
}

func (p *packable) Retain(from int32) detector.Payload {
	return &packable{retPayload: p.retPayload.Retain(from).(*retPayload)}
}

func (p *packable) Pack() detector.Payload {
	if !p.kept || p.packed {
		return nil
	}
	p.asked.add(p.name + " pack")
	return &packable{retPayload: p.retPayload, packed: true}
}

func packableConv(id string, ts int64, n, per int, log *retainLog) *detector.Event {
	ev := armedConv(id, ts, n, per, log)
	ev.Payload = &packable{retPayload: ev.Payload.(*retPayload)}
	return ev
}

// TestEnginePacksKeptCopies: a copy a call keeps for DefaultPackAfter is packed, and
// Retained counts it packed; a copy let go or replaced sooner is not; the hang carries
// the packed copy.
func TestEnginePacksKeptCopies(t *testing.T) {
	log := &retainLog{}
	h := newHarness(t)
	h.send(packableConv("c1", 1, 3, 200, log))
	h.send(packableConv("c2", 1, 3, 200, log))
	if got, want := log.take(), []string{"c1@1 -1", "c2@1 -1"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	h.advance(DefaultPackAfter / 2)
	// c2 is answered, then armed again with a later turn: its first copy is let go.
	h.send(conv("c2", 2, user("user-0", 0), reply("r-1", 0), user("user-2", 0), reply("r-3", 0)))
	h.send(packableConv("c2", 3, 5, 200, log))
	if st := h.e.Stats(); st.Retained != 600+1000 {
		t.Errorf("retained %d, want 1600", st.Retained)
	}
	h.advance(DefaultPackAfter/2 + time.Millisecond)
	if got, want := log.take(), []string{"c2@3 -1", "c1@1 pack"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Retained != 150+1000 {
		t.Errorf("retained %d, want 1150", st.Retained)
	}
	h.advance(DefaultPackAfter)
	if got, want := log.take(), []string{"c2@3 pack"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Retained != 150+250 {
		t.Errorf("retained %d, want 400", st.Retained)
	}
	h.advance(5 * time.Second)
	outs := h.sink.take()
	if len(outs) != 2 {
		t.Fatalf("outputs %q, want two hangs", briefs(outs))
	}
	for _, o := range outs {
		if p, ok := o.out.Snapshot.(*packable); !ok || !p.packed || o.out.Latest != o.out.Snapshot {
			t.Errorf("%s's hang carries %+v, %+v; want the packed copy", o.callID, o.out.Snapshot, o.out.Latest)
		}
	}
	h.send(endEvent("c1"))
	h.send(endEvent("c2"))
	if st := h.e.Stats(); st.Retained != 0 {
		t.Errorf("retained %d after the ends, want 0", st.Retained)
	}
}

// TestEnginePackAfter: 0 packs as the copy is made, a negative duration never.
func TestEnginePackAfter(t *testing.T) {
	for _, tt := range []struct {
		after time.Duration
		want  []string
		kept  int64
	}{{0, []string{"c1@1 -1", "c1@1 pack"}, 150}, {-1, []string{"c1@1 -1"}, 600}} {
		log := &retainLog{}
		h := newHarness(t, WithPackAfter(tt.after))
		h.send(packableConv("c1", 1, 3, 200, log))
		h.advance(time.Second)
		if got := log.take(); !slices.Equal(got, tt.want) {
			t.Errorf("after %v: asked %q, want %q", tt.after, got, tt.want)
		}
		if st := h.e.Stats(); st.Retained != tt.kept {
			t.Errorf("after %v: retained %d, want %d", tt.after, st.Retained, tt.kept)
		}
	}
}

// gatedPackable is a packable whose packing waits for gate, after saying on entered that
// it began.
type gatedPackable struct {
	*packable
	entered chan<- struct{}
	gate    <-chan struct{}
}

func (p *gatedPackable) Retain(from int32) detector.Payload {
	return &gatedPackable{packable: p.packable.Retain(from).(*packable), entered: p.entered, gate: p.gate}
}

func (p *gatedPackable) Pack() detector.Payload {
	p.entered <- struct{}{}
	<-p.gate
	return p.packable.Pack()
}

// TestEnginePacksBesideShards: a copy is packed beside the shard, which goes on applying
// events and firing deadlines meanwhile; the packed copy is kept once it comes back.
func TestEnginePacksBesideShards(t *testing.T) {
	log := &retainLog{}
	h := newHarness(t, WithShards(1))
	h.sink.notify()
	h.src.setAuto(true)
	entered, gate := make(chan struct{}, 1), make(chan struct{})
	ev := packableConv("c1", 1, 3, 200, log)
	ev.Payload = &gatedPackable{packable: ev.Payload.(*packable), entered: entered, gate: gate}
	h.send(ev)
	h.send(conv("c2", 1, user("user-1", 0)))
	// Past DefaultPackAfter, the next thing the shard wakes for (a mark) hands the copy
	// over; the packer holds it.
	h.clock.Advance(DefaultPackAfter)
	h.in.Mark(h.clock.Now())
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the copy was not handed to the packer")
	}
	// Both deadlines fire while the packer holds c1's copy.
	h.clock.Advance(5*time.Second - DefaultPackAfter)
	got := []string{brief(h.sink.wait(t)), brief(h.sink.wait(t))}
	slices.Sort(got)
	if want := []string{"hang c1 user-2 turn-timeout 5000ms@5000", "hang c2 user-1 turn-timeout 5000ms@5000"}; !slices.Equal(got, want) {
		t.Errorf("published %q while packing, want %q", got, want)
	}
	// c1 keeps 600 bytes, c2 its call's few.
	before := h.e.Stats().Retained
	if before < 600 || before > 700 {
		t.Errorf("retained %d while packing, want c1's 600 and c2's few", before)
	}
	close(gate)
	h.barrier() // waits for the packer
	if st := h.e.Stats(); before-st.Retained != 450 {
		t.Errorf("retained %d once packed, %d before; want c1's copy packed to a quarter", st.Retained, before)
	}
}

// lastingMsg is a testMsg whose bytes last (engine.Lasting).
type lastingMsg struct{ *testMsg }

func (lastingMsg) Lasting() {}

// TestEngineKeepsLastingBytes: a call keeps the received payload of a Lasting message
// as it is, counted whole, and makes no copy; the packer replaces it once kept for
// DefaultPackAfter (here, with a payload that does not pack, by its compact copy); a
// payload let go sooner is never copied. A message that is not Lasting is copied at once.
func TestEngineKeepsLastingBytes(t *testing.T) {
	log := &retainLog{}
	h := newHarness(t)
	send := func(ev *detector.Event) {
		h.in.Deliver(lastingMsg{h.msg(ev)})
		h.sync()
	}
	var _ Lasting = lastingMsg{}
	send(packableConv("c1", 1, 3, 200, log))
	send(packableConv("c2", 1, 3, 200, log))
	if got := log.take(); len(got) != 0 {
		t.Errorf("asked %q of lasting messages, want nothing", got)
	}
	if st := h.e.Stats(); st.Retained != 1200 {
		t.Errorf("retained %d, want the two payloads whole, 1200", st.Retained)
	}
	// c2 is answered before its copy is due: its payload goes, never copied.
	send(conv("c2", 2, user("user-0", 0), reply("r-1", 0), user("user-2", 0), reply("r-3", 0)))
	h.advance(DefaultPackAfter)
	if got, want := log.take(), []string{"c1@1 -1"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q (the packer's compact copy of c1)", got, want)
	}
	h.advance(5 * time.Second)
	outs := h.sink.take()
	if len(outs) != 1 || outs[0].callID != "c1" {
		t.Fatalf("outputs %q, want c1's hang", briefs(outs))
	}
	if p, ok := outs[0].out.Snapshot.(*packable); !ok || !p.kept {
		t.Errorf("c1's hang carries %+v, want the compact copy", outs[0].out.Snapshot)
	}
	// Not Lasting: copied as it is kept.
	h.send(packableConv("c3", 1, 3, 200, log))
	if got, want := log.take(), []string{"c3@1 -1"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
}

// TestEngineLastingPastBudget: a received payload kept as it is counts whole against
// max-retained-bytes, and past the budget a newly armed call keeps a copy of the tail of
// its history, as without Lasting (SPEC §2, Bounds).
func TestEngineLastingPastBudget(t *testing.T) {
	log := &retainLog{}
	h := newHarness(t, WithMaxRetainedBytes(1000))
	send := func(ev *detector.Event) {
		h.in.Deliver(lastingMsg{h.msg(ev)})
		h.sync()
	}
	send(packableConv("c1", 1, 3, 200, log)) // 600 bytes, kept as received
	if got := log.take(); len(got) != 0 {
		t.Errorf("asked %q, want nothing", got)
	}
	send(packableConv("c2", 1, 5, 200, log)) // 1000 bytes: past the budget; the tail is r-3, user-4
	if got, want := log.take(), []string{"c2@1 3"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q", got, want)
	}
	if st := h.e.Stats(); st.Retained != 1000 || st.Truncated != 0 {
		t.Errorf("retained %d, truncated %d; want 1000, 0 (counted when an output goes out)", st.Retained, st.Truncated)
	}
	h.advance(DefaultPackAfter)
	got := log.take()
	slices.Sort(got)
	if want := []string{"c1@1 -1", "c2@1 pack"}; !slices.Equal(got, want) {
		t.Errorf("asked %q, want %q (c1's compact copy, c2's tail packed)", got, want)
	}
	// c2's hang carries its packed tail, which left three messages out; c1's, the whole.
	h.advance(5 * time.Second)
	if outs := h.sink.take(); len(outs) != 2 {
		t.Fatalf("outputs %q, want two hangs", briefs(outs))
	}
	if st := h.e.Stats(); st.Truncated != 1 {
		t.Errorf("truncated %d, want 1", st.Truncated)
	}
}
