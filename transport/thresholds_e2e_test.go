package transport

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
)

// TestE2EThresholdsLive: thresholds per team and assistant, changed in a real KV bucket
// while calls are live, through the engine and a real server: a change applies to the
// deadlines armed after it (a call armed before keeps its own), an assistant's key wins
// over its team's, a disabled team's calls are not watched, and a deleted key falls
// back to the flags. Each hang says the threshold that fired.
func TestE2EThresholdsLive(t *testing.T) {
	base := detector.DefaultConfig()
	base.MaxWait = 0
	srv := startJetStream(t)
	th := runThresholds(t, srv, "limits", base)
	js := jsClient(t, srv)
	kv, err := js.KeyValue(testCtx(t), "limits")
	if err != nil {
		t.Fatal(err)
	}
	applied := func(n int64) {
		t.Helper()
		eventually(t, "the change applied", func() bool { st := th.Stats(); return st.Applied+st.Deleted >= n })
	}

	h := &coreE2E{t: t, srv: srv, clock: clockwork.NewFakeClockAt(e2eStart), rec: newRecorder()}
	h.conn = connect(t, srv, ConnOptions{})
	h.src = NewSource(h.conn, SourceOptions{ProbeEvery: noProbes, Now: h.clock.Now})
	h.sink = &recordingSink{}
	h.pub = &testPublisher{t: t, srv: srv, nc: plainClient(t, srv)}
	h.eng = runEngine(t, &tapped{h.src, h.rec}, h.sink, engine.WithClock(h.clock), engine.WithConfig(base), engine.WithThresholds(th))
	h.rec.waitMark(t, 0, time.Time{})
	t.Cleanup(h.rec.release)

	arm := func(call, team, assistant string) {
		t.Helper()
		data := convUpdate(call, ms(0), userTurn("user-1", ms(0)))
		data = bytes.Replace(data, []byte(`"teamId":"team"`), fmt.Appendf(nil, `"teamId":%q,"assistantId":%q`, team, assistant), 1)
		h.pub.publish(call, data)
		h.settle()
	}
	arm("a-before", "A", "x") // armed with the flags: 5 s
	if _, err := kv.Put(testCtx(t), "team.A", []byte(`{"timeoutMs": 2000}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(testCtx(t), "assistant.fast", []byte(`{"timeoutMs": 3000}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(testCtx(t), "team.C", []byte(`{"enabled": false}`)); err != nil {
		t.Fatal(err)
	}
	applied(3)
	arm("a-after", "A", "x")   // team A: 2 s
	arm("a-fast", "A", "fast") // assistant fast wins over team A: 3 s
	arm("c-off", "C", "x")     // team C is not watched
	if err := kv.Delete(testCtx(t), "team.A"); err != nil {
		t.Fatal(err)
	}
	applied(4)
	arm("a-deleted", "A", "x") // back to the flags: 5 s

	for range 6 {
		h.advance(time.Second)
		h.settle()
	}
	var got []string
	for _, p := range h.sink.all() {
		got = append(got, fmt.Sprintf("%v %s %v", p.out.Kind, p.callID, p.out.Threshold))
	}
	slices.Sort(got) // calls of different shards that fire at one mark come in any order
	want := []string{"hang a-after 2s", "hang a-before 5s", "hang a-deleted 5s", "hang a-fast 3s"}
	if !slices.Equal(got, want) {
		t.Errorf("outputs %q, want %q", got, want)
	}
	if st := h.eng.Stats(); st.Unwatched == 0 {
		t.Errorf("the disabled team's call counted no unwatched event: %+v", st)
	}
}
