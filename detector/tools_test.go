package detector

import (
	"math/rand/v2"
	"testing"
	"time"
)

// referenceStage is stageOf as first written, quadratic: the pending ids in a slice,
// each result removing its call by a scan. tools must give the same stage.
func referenceStage(ev *Event, msgs []Message) Stage {
	var pending []uint64
	anonymous, called := 0, false
	for i := range msgs {
		m := &msgs[i]
		switch m.Role {
		case RoleToolCall:
			called = true
			ids := ev.ToolIDs(m)
			if len(ids) == 0 {
				anonymous++
			}
			pending = append(pending, ids...)
		case RoleToolResult:
			ids := ev.ToolIDs(m)
			switch {
			case len(ids) > 0:
				for j, id := range pending {
					if id == ids[0] {
						pending = append(pending[:j], pending[j+1:]...)
						break
					}
				}
			case anonymous > 0:
				anonymous--
			case len(pending) > 0:
				pending = pending[1:]
			}
		}
	}
	switch {
	case len(pending) > 0 || anonymous > 0:
		return StageAwaitingTool
	case called:
		return StageAfterTool
	}
	return StageAwaitingAssistant
}

// TestToolsMatchReference: random runs of tool calls (with and without ids, ids
// repeated, many at once) and results (naming a call, a call never made, or none),
// checked after every message against the reference, below and past the index.
func TestToolsMatchReference(t *testing.T) {
	for seed := range uint64(3000) {
		r := rand.New(rand.NewPCG(seed, 7))
		var ev Event
		n := 1 + r.IntN(60)
		idRange := uint64(1 + r.IntN(40))
		for range n {
			m := Message{Role: RoleToolResult}
			if r.IntN(2) == 0 {
				m.Role = RoleToolCall
			}
			m.ToolLo = int32(len(ev.Tools))
			k := r.IntN(3)
			if m.Role == RoleToolCall && r.IntN(4) == 0 {
				k = r.IntN(30)
			}
			if m.Role == RoleToolResult {
				k = min(k, 1)
			}
			for range k {
				ev.Tools = append(ev.Tools, 1+r.Uint64N(idRange))
			}
			m.ToolHi = int32(len(ev.Tools))
			ev.Messages = append(ev.Messages, m)
		}
		var tl tools
		for i := range ev.Messages {
			tl.add(&ev, &ev.Messages[i])
			if got, want := tl.stage(), referenceStage(&ev, ev.Messages[:i+1]); got != want {
				t.Fatalf("seed %d, after message %d: stage %v, want %v", seed, i, got, want)
			}
		}
	}
}

// TestToolFlood: a stored snapshot whose stretch holds thousands of tool calls and
// results before a late reply (a publisher's bad input). The stage is followed message
// by message through the index, not recomputed from the start for each message; when it
// was, this history took about a second of the shard (cubic in the tool messages), and a
// 1 MiB one minutes (SPEC §5). BenchmarkToolFlood measures it.
func TestToolFlood(t *testing.T) {
	ev := toolFlood(3000)
	th := DefaultConfig().Thresholds
	th.ToolTimeout = 20 * time.Second
	at, _, stage, _, ok := revealedHang(ev, ev.Messages, 0, len(ev.Messages)-1, &th)
	if !ok || stage != StageAfterTool || at != 1000+5000 {
		t.Errorf("revealedHang = %d, %v, ok %v; want the hang 5 s after the user turn, after-tool", at, stage, ok)
	}
	var tl tools
	for i := range ev.Messages {
		tl.add(ev, &ev.Messages[i])
	}
	if tl.stage() != StageAfterTool || len(tl.byID) != 0 {
		t.Errorf("stage %v with %d ids indexed, want after-tool and none left", tl.stage(), len(tl.byID))
	}
}

func BenchmarkToolFlood(b *testing.B) {
	ev := toolFlood(3000)
	th := DefaultConfig().Thresholds
	b.ReportAllocs()
	for b.Loop() {
		revealedHang(ev, ev.Messages, 0, len(ev.Messages)-1, &th)
	}
}

// toolFlood returns a history of a user turn, one message making calls tool calls, their
// results, the last call's first, and a reply a minute later.
func toolFlood(calls int) *Event {
	var ev Event
	ev.Messages = append(ev.Messages, Message{Role: RoleUser, Time: 1000, Key: 1})
	call := Message{Role: RoleToolCall, Time: 1001, Key: 2, ToolLo: 0}
	for i := range calls {
		ev.Tools = append(ev.Tools, uint64(100+i))
	}
	call.ToolHi = int32(len(ev.Tools))
	ev.Messages = append(ev.Messages, call)
	for i := calls - 1; i >= 0; i-- { // the last call answered first
		lo := int32(len(ev.Tools))
		ev.Tools = append(ev.Tools, uint64(100+i))
		ev.Messages = append(ev.Messages, Message{Role: RoleToolResult, Time: 1002, Key: uint64(10_000 + i), ToolLo: lo, ToolHi: lo + 1})
	}
	ev.Messages = append(ev.Messages, Message{Role: RoleReply, Time: 61_000, Key: 3})
	return &ev
}
