package engine

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// The engine asks wire's retained copies how many messages they left out.
var _ Omitter = (*wire.Payload)(nil)

// wireEvent decodes a real event of the webhook dialect, as the engine's decoder would.
func wireEvent(t *testing.T, s string) *detector.Event {
	t.Helper()
	ev := new(detector.Event)
	if err := wire.Decode(ev, []byte(s), wire.DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	return ev
}

func wireConv(t *testing.T, id string, ts int64, msgs string) *detector.Event {
	return wireEvent(t, fmt.Sprintf(`{"message":{"type":"conversation-update","timestamp":%d,"call":{"id":%q,"status":"ongoing"},"messages":[%s]}}`,
		start.UnixMilli()+ts, id, msgs))
}

// TestEngineRetentionTruncationsCountOutputs: hangwatch_history_truncations_total
// {cause="retention"} counts the outputs that left older messages out (docs/metrics.md;
// SPEC §4, history truncations), as their historyTruncated says. A call armed past the
// budget whose history has nothing before its stretch loses nothing, and a call answered
// in time publishes no output at all: neither counts. A call armed past the budget with
// a reply before its stretch hangs without that reply, and counts.
func TestEngineRetentionTruncationsCountOutputs(t *testing.T) {
	h := newHarness(t, WithMaxRetainedBytes(4000))
	big := strings.Repeat("x", 3500)
	// c1 fills most of the budget; it is within it. (The calls past the budget are armed
	// before c1's copy is packed, which would shrink it.)
	h.send(wireConv(t, "c1", 1, `{"role":"user","messageId":"user-1","text":"`+big+`"}`))
	// c2 is armed past the budget; its history is only its unanswered turns.
	h.send(wireConv(t, "c2", 2, `{"role":"user","messageId":"user-1","text":"hello?"}`))
	// c3 is armed past the budget after a reply: it keeps the history from that reply on.
	h.send(wireConv(t, "c3", 3, `{"role":"user","messageId":"user-1","text":"hi"},{"role":"assistant","messageId":"user-1-a","text":"hello"},{"role":"user","messageId":"user-2","text":"and?"}`))
	h.advance(time.Second)
	h.send(wireConv(t, "c2", 1003, `{"role":"user","messageId":"user-1","text":"hello?"},{"role":"user","messageId":"user-2","text":"anyone?"}`))
	h.advance(time.Second)
	// c2 is answered in time: it publishes nothing.
	h.send(wireConv(t, "c2", 2004, `{"role":"user","messageId":"user-1","text":"hello?"},{"role":"user","messageId":"user-2","text":"anyone?"},{"role":"assistant","messageId":"user-2-a","text":"yes"}`))
	if st := h.e.Stats(); st.Truncated != 0 {
		t.Fatalf("truncated %d before any output, want 0", st.Truncated)
	}
	h.advance(5 * time.Second) // c1 hangs with its whole history, c3 with its tail
	outs := h.sink.take()
	if len(outs) != 2 {
		t.Fatalf("outputs %q, want the hangs of c1 and c3", briefs(outs))
	}
	cut := 0
	for _, p := range outs {
		b := wire.AppendOutput(nil, p.callID, &p.out, 0)
		truncated := bytes.Contains(b, []byte(`"historyTruncated"`))
		if truncated {
			cut++
		}
		if want := p.callID == "c3"; truncated != want {
			t.Errorf("%s: %v historyTruncated=%v, want %v", p.callID, p.out.Kind, truncated, want)
		}
	}
	if st := h.e.Stats(); st.Truncated != int64(cut) {
		t.Errorf("history_truncations_total{cause=retention} = %d, but %d of the %d outputs left messages out", st.Truncated, cut, len(outs))
	}
}
