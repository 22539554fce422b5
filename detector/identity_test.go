package detector

import (
	"slices"
	"testing"
	"time"
)

// window returns the latest k messages of a history, as a producer that sends a sliding
// window does.
func window(k int) func([]msg) []msg {
	return func(h []msg) []msg { return h[max(len(h)-k, 0):] }
}

func full(h []msg) []msg { return h }

// TestCallWindowed checks that a sliding window gives the verdicts and ids of the whole
// history, as long as it holds the unanswered stretch (see TestCallDeliveryInvariance for
// the bound).
func TestCallWindowed(t *testing.T) {
	sys, greet, u1, call, result, r1, u2 := vapiMsgs()
	tests := []struct {
		name string
		k    int
		give func(cut func([]msg) []msg) []op
	}{
		{
			name: "the Vapi call, without messageId",
			k:    3,
			give: func(cut func([]msg) []msg) []op {
				h := []msg{sys, greet, u1, call, result, r1, u2}
				return []op{
					conv(4090, cut(h[:2])...),
					conv(8710, cut(h[:3])...),
					conv(9190, cut(h[:4])...),
					conv(14_840, cut(h[:5])...),
					conv(19_960, cut(h[:6])...),
					conv(28_210, cut(h[:7])...),
					endReport(39_450, cut(h[:7])...).ended("customer-ended-call"),
				}
			},
		},
		{
			name: "stretches, tools and a caller who keeps saying hello",
			k:    4,
			give: func(cut func([]msg) []msg) []op {
				h := []msg{
					greeting("w", 0),
					hello("user-1", 1000), asstCalls("tc", 1100, "call-1"), toolMsg("tr", 7000, "call-1"), reply("r1", 7500),
					hello("user-2", 9000), hello("user-3", 12_000), hello("user-4", 15_000), hello("user-5", 18_000), silent("a5", 18_100),
					hello("user-6", 21_000),
				}
				h2 := slices.Clone(h)
				h2[9] = a("a5", "Sorry.", 20_000) // the empty message filled in place
				return []op{
					conv(0, cut(h[:1])...),
					conv(1000, cut(h[:2])...),
					conv(1100, cut(h[:3])...),
					conv(7000, cut(h[:4])...),
					conv(7500, cut(h[:5])...),
					conv(9000, cut(h[:6])...),
					conv(12_000, cut(h[:7])...),
					conv(15_000, cut(h[:8])...),
					conv(18_000, cut(h[:9])...),
					conv(18_100, cut(h[:10])...),
					conv(20_000, cut(h2[:10])...),
					conv(21_000, cut(h2[:11])...),
					status(30_000, StatusEnded),
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, _, _ := run(DefaultConfig(), tt.give(full))
			if len(want) == 0 {
				t.Fatal("the whole history gives no output: nothing to compare")
			}
			got, _, _ := run(DefaultConfig(), tt.give(window(tt.k)))
			if !slices.Equal(got, want) {
				t.Errorf("window %d differs from the whole history\n got: %v\nwant: %v", tt.k, got, want)
			}
		})
	}
}

func TestFallbackID(t *testing.T) {
	const key = uint64(0x9c1d2e3f12345678)
	tests := []struct {
		name string
		give Message
		want string
	}{
		{name: "messageId", give: Message{Role: RoleUser, ID: "user-3", Time: 1772700008300, Key: key}, want: "user-3"},
		{name: "user turn", give: Message{Role: RoleUser, Time: 1772700008300, Key: key}, want: "user-1772700008300-9c1d2e3f"},
		{name: "reply", give: Message{Role: RoleReply, Time: 1772700017318, Key: key}, want: "assistant-1772700017318-9c1d2e3f"},
		{name: "without timestamp: the whole key", give: Message{Role: RoleUser, Key: key}, want: "user-9c1d2e3f12345678"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := messageID(&tt.give); got != tt.want {
				t.Errorf("messageID() = %q, want %q", got, tt.want)
			}
		})
	}

	// Unique within a call: every message that differs in role, time or text has its own.
	seen := map[string]msg{}
	for _, m := range []msg{
		u("", "Hello?", 1000), u("", "Hello?", 1001), u("", "Hello? ", 1000), u("", "Hi", 1000),
		a("", "Hello?", 1000), u("", "Hello?", noTS), u("", "Hi", noTS), a("", "Hello?", noTS),
	} {
		id := idOf(m)
		if prev, ok := seen[id]; ok {
			t.Errorf("%+v and %+v share the id %q", prev, m, id)
		}
		seen[id] = m
	}
}

// The ids of a stretch may alias the payload of the snapshot that showed them; the call
// copies those it keeps. The bytes are overwritten once the event is let go, as memory
// that is no longer kept may be.
func TestCallIDsOutliveThePayload(t *testing.T) {
	cfg := DefaultConfig()
	apply := func(c *Call, o op, bufs ...[]byte) Step {
		ev := *o.ev
		ev.Messages = slices.Clone(ev.Messages)
		for i := range ev.Messages { // the user turns' ids alias bufs, in order
			if ev.Messages[i].Role == RoleUser && len(bufs) > 0 {
				ev.Messages[i].ID, bufs = unsafeString(bufs[0]), bufs[1:]
			}
		}
		ev.EndedReason = unsafeString(append([]byte(nil), ev.EndedReason...))
		ev.Received, ev.Wall, ev.Payload = eng(o.at), wallNs(o.at), payload("e")
		return c.Apply(&cfg, &ev, eng(o.at))
	}
	scribble := func(bufs ...[]byte) {
		for _, b := range bufs {
			copy(b, "XXXXXX")
		}
	}
	t.Run("first and latest turn", func(t *testing.T) {
		var c Call
		b1, b2, b3 := []byte("user-1"), []byte("user-1"), []byte("user-2")
		apply(&c, conv(1000, hello("user-1", 1000)), b1)
		apply(&c, conv(2000, hello("user-1", 1000), hello("user-2", 2000)), b2, b3)
		scribble(b1, b2, b3)
		s := c.Tick(&cfg, eng(7000), eng(7000))
		if len(s.Outputs) != 1 || s.Outputs[0].FirstUserMessageID != "user-1" || s.Outputs[0].UserMessageID != "user-2" {
			t.Fatalf("hang = %+v, want first user-1, last user-2", s.Outputs)
		}
		s = apply(&c, status(9000, StatusEnded).ended("customer-ended-call"))
		if len(s.Outputs) != 1 || s.Outputs[0].FirstUserMessageID != "user-1" || s.Outputs[0].UserMessageID != "user-2" {
			t.Fatalf("unresolved = %+v, want first user-1, last user-2", s.Outputs)
		}
	})
	t.Run("ended reason", func(t *testing.T) {
		var c Call
		apply(&c, conv(1000, hello("user-1", 1000)))
		c.Tick(&cfg, eng(6000), eng(6000))
		reason := []byte("customer-ended-call")
		ev := *status(9000, StatusEnded).ev
		ev.EndedReason, ev.Received, ev.Wall = unsafeString(reason), eng(9000), wallNs(9000)
		s := c.Apply(&cfg, &ev, eng(9000))
		copy(reason, "XXXXXXXXXXXXXXXXXXX")
		if len(s.Outputs) != 1 || s.Outputs[0].EndedReason != "customer-ended-call" {
			t.Fatalf("unresolved = %+v, want endedReason customer-ended-call", s.Outputs)
		}
	})
	t.Run("a later new turn", func(t *testing.T) {
		var c Call
		b3 := []byte("user-3")
		apply(&c, conv(1000, hello("user-1", 1000)))
		apply(&c, conv(2000, hello("user-1", 1000), hello("user-2", 2000)))
		apply(&c, conv(3000, hello("user-1", 1000), hello("user-2", 2000), hello("user-3", 3000)), []byte("user-1"), []byte("user-2"), b3)
		apply(&c, conv(3500, hello("user-1", 1000), hello("user-2", 2000), hello("user-3", 3000), silent("a", 3500)))
		scribble(b3)
		s := c.Tick(&cfg, eng(time.Minute.Milliseconds()), eng(time.Minute.Milliseconds()))
		if len(s.Outputs) != 1 || s.Outputs[0].UserMessageID != "user-3" {
			t.Errorf("hang = %+v, want last user-3", s.Outputs)
		}
	})
}
