package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/fixtures"
)

// unpacked returns p, unpacked when it is packed.
func unpacked(t testing.TB, p *Payload) *Payload {
	t.Helper()
	if p.packed == nil {
		return p
	}
	v := new(Payload)
	if _, ok := p.unpack(v, nil); !ok {
		t.Fatal("a packed copy does not unpack")
	}
	return v
}

// retainPlain is Retain: the copy, not packed, that the packed one must write the same
// outputs as.
func retainPlain(p *Payload, from int32) *Payload { return p.Retain(from).(*Payload) }

// pk packs a copy, or returns it when Pack does not.
func pk(p detector.Payload) *Payload {
	if q := p.(*Payload).Pack(); q != nil {
		return q.(*Payload)
	}
	return p.(*Payload)
}

// packEvents are events to retain: the fixtures' conversation-updates as they are and
// compacted, and a long history (a call of many turns, with a model in its assistant).
func packEvents(t *testing.T) map[string][]byte {
	t.Helper()
	evs := map[string][]byte{}
	for _, f := range []struct {
		dialect string
		names   []string
	}{{"vapi", fixtures.VapiNames()}, {"webhook", fixtures.WebhookNames()}} {
		for _, name := range f.names {
			if !strings.Contains(name, "conversation-update") && !strings.Contains(name, "end-of-call") {
				continue
			}
			data := fixtureData(f.dialect, name)
			evs[f.dialect+"/"+name] = data
			var b bytes.Buffer
			if err := json.Compact(&b, data); err != nil {
				t.Fatal(err)
			}
			evs[f.dialect+"/compact/"+name] = b.Bytes()
		}
	}
	var msgs []string
	for i := range 40 {
		msgs = append(msgs, user(fmt.Sprintf("u%d", i), strconv.Quote(strings.Repeat(fmt.Sprintf("turn %d, and what the caller said; ", i), 8)), strconv.Itoa(1000+i)))
	}
	evs["long"] = []byte(ev(`{"type":"conversation-update","call":{"id":"c1","teamId":"t\u00e9am","assistantId":"a1"},` +
		`"assistant":{"name":"x","model":{"provider":"open\nai","model":"gpt-4o"}},"phone":{"n":1},"customer":{"number":"+1555"},` +
		`"messages":[` + strings.Join(msgs, ",") + `]}`))
	return evs
}

// TestPackRoundTrip: a packed copy writes the same outputs as the copy that is not
// packed, byte for byte: whole, with the tail of its history only, retained again, and
// cut to a max payload; and it has the same ids, model and omitted count.
func TestPackRoundTrip(t *testing.T) {
	packedSome := false
	for name, data := range packEvents(t) {
		t.Run(name, func(t *testing.T) {
			data = bytes.Clone(data)
			var ev detector.Event
			if err := Decode(&ev, data, DefaultLimits()); err != nil {
				t.Fatal(err)
			}
			p := ev.Payload.(*Payload)
			type pair struct {
				name        string
				packed, ref *Payload
			}
			var pairs []pair
			for _, from := range []int32{-1, 0, 1, 3, 10, 1000} {
				q, ref := pk(p.Retain(from)), retainPlain(p, from)
				pairs = append(pairs, pair{fmt.Sprintf("Retain(%d)", from), q, ref})
				for _, again := range []int32{0, from + 1, from + 5} {
					pairs = append(pairs, pair{fmt.Sprintf("Retain(%d).Retain(%d)", from, again), pk(q.Retain(again)), retainPlain(ref, again)})
				}
			}
			call := p.RetainCall()
			for i := range data {
				data[i] = 'X' // the received buffer is reused: the copies must not alias it
			}
			for _, pr := range pairs {
				q, ref := pr.packed, pr.ref
				if ref.packed != nil {
					t.Fatalf("%s: the reference is packed", pr.name)
				}
				if q.packed != nil {
					packedSome = true
					if q.Len() >= ref.Len() {
						t.Errorf("%s: packed Len %d, not below %d", pr.name, q.Len(), ref.Len())
					}
				}
				if q.TeamID() != ref.TeamID() || q.AssistantID() != ref.AssistantID() || q.Omitted() != ref.Omitted() {
					t.Errorf("%s: ids %q %q omitted %d, want %q %q %d", pr.name, q.TeamID(), q.AssistantID(), q.Omitted(), ref.TeamID(), ref.AssistantID(), ref.Omitted())
				}
				if gp, gm := q.Model(); true {
					if wp, wm := ref.Model(); gp != wp || gm != wm {
						t.Errorf("%s: model %q %q, want %q %q", pr.name, gp, gm, wp, wm)
					}
				}
				for _, latest := range []detector.Payload{nil, call, q} {
					refLatest := latest
					if latest == q {
						refLatest = ref
					}
					whole := len(AppendOutput(nil, "c1", &detector.Output{Kind: detector.KindHang, Snapshot: ref, Latest: refLatest}, 0))
					for _, limit := range []int{0, whole, whole - 1, whole / 2, whole / 4, 300, 1} {
						out := detector.Output{Kind: detector.KindUnresolved, Reason: detector.ReasonTurnTimeout, UserMessageID: "u", FirstUserMessageID: "u", EndedReason: "x", Wall: testWall, Snapshot: q, Latest: latest}
						got, gotCut := AppendOutputFit(nil, "c1", &out, limit)
						out.Snapshot, out.Latest = ref, refLatest
						want, wantCut := AppendOutputFit(nil, "c1", &out, limit)
						if !bytes.Equal(got, want) || gotCut != wantCut {
							t.Fatalf("%s, latest %T, max %d: cut %v, want %v; output\n%s\nwant\n%s", pr.name, latest, limit, gotCut, wantCut, trim(got), trim(want))
						}
						if !json.Valid(got) {
							t.Fatalf("%s, max %d: not JSON", pr.name, limit)
						}
					}
				}
			}
		})
	}
	if !packedSome {
		t.Error("no copy was packed")
	}
}

// TestPackOnlyWhenWorth: small copies and copies that do not compress stay as they are.
func TestPackOnlyWhenWorth(t *testing.T) {
	small := decodeString(t, withMessages(`[`+user("u1", `"hi"`, "1")+`]`)).Payload.(*Payload)
	if q := small.Retain(-1).(*Payload); q.Pack() != nil {
		t.Errorf("a copy of %d bytes is packed", len(q.data))
	}
	if pk(small.Retain(-1)).Pack() != nil {
		t.Error("Pack of a packed copy")
	}
	// A decoded payload too small to pack gives its compact copy: the received bytes are
	// let go.
	if q := pk(small.Pack()); q.packed != nil || !q.copied || !bytes.Equal(q.data, small.Retain(-1).(*Payload).data) {
		t.Errorf("Pack of a small decoded payload = %+v, want its compact copy", q)
	}
	// Random bytes (hex of a xorshift) do not compress by an eighth.
	var sb strings.Builder
	x := uint64(88172645463325252)
	for sb.Len() < 4000 {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		sb.WriteString(strconv.FormatUint(x, 36))
	}
	noise := decodeString(t, withMessages(`[`+user("u1", `"`+sb.String()+`"`, "1")+`]`)).Payload.(*Payload)
	if q := pk(noise.Retain(-1)); q.packed != nil {
		t.Errorf("incompressible copy packed: %d bytes of %d", len(q.packed), q.base)
	}
	long := decodeString(t, string(packEvents(t)["long"])).Payload.(*Payload)
	if q := pk(long.Retain(-1)); q.packed == nil || q.Len() > long.Len()/2 {
		t.Errorf("long history: packed %v, Len %d of %d", q.packed != nil, q.Len(), long.Len())
	}
}

// TestPackedOutputAllocs: writing the output of a packed copy does not allocate once
// the scratch buffers are warm.
func TestPackedOutputAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector drops sync.Pool buffers at random")
	}
	long := decodeString(t, string(packEvents(t)["long"])).Payload.(*Payload)
	q := pk(long.Retain(2))
	if q.packed == nil {
		t.Fatal("not packed")
	}
	out := &detector.Output{Kind: detector.KindHang, UserMessageID: "u", FirstUserMessageID: "u", Snapshot: q, Latest: q}
	dst := make([]byte, 0, 64<<10)
	for _, limit := range []int{0, 4000} {
		dst = AppendOutput(dst[:0], "c1", out, limit)
		if allocs := testing.AllocsPerRun(100, func() { dst = AppendOutput(dst[:0], "c1", out, limit) }); allocs != 0 {
			t.Errorf("max %d: %v allocations", limit, allocs)
		}
	}
}
