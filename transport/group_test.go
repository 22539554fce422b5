package transport

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"
)

// assignAll returns the partitions of every member.
func assignAll(members []string, partitions int) map[string][]int {
	all := map[string][]int{}
	for _, m := range members {
		all[m] = assign(members, partitions, m)
	}
	return all
}

func members(n int) []string {
	ms := make([]string, n)
	for i := range ms {
		ms[i] = fmt.Sprintf("host-%d-1234-abcdef%02d", i, i)
	}
	slices.Sort(ms)
	return ms
}

func TestAssignBalanced(t *testing.T) {
	tests := []struct {
		give       int // members
		partitions int
	}{{1, 16}, {2, 16}, {3, 16}, {4, 16}, {5, 16}, {16, 16}, {20, 16}, {3, 1}, {7, 256}}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("members=%d,partitions=%d", tt.give, tt.partitions), func(t *testing.T) {
			ms := members(tt.give)
			all := assignAll(ms, tt.partitions)
			owner := make([]int, tt.partitions)
			for i := range owner {
				owner[i] = -1
			}
			for i, m := range ms {
				if n := len(all[m]); n != tt.partitions/tt.give && n != (tt.partitions+tt.give-1)/tt.give {
					t.Errorf("member %d has %d partitions: unbalanced", i, n)
				}
				for _, p := range all[m] {
					if owner[p] >= 0 {
						t.Errorf("partition %d goes to members %d and %d", p, owner[p], i)
					}
					owner[p] = i
				}
			}
			if i := slices.Index(owner, -1); i >= 0 {
				t.Errorf("partition %d goes to no member", i)
			}
		})
	}
}

// TestAssignStable: a member that joins or leaves moves few partitions, and every
// member computes the same assignment whatever the order it knows the others in.
func TestAssignStable(t *testing.T) {
	const partitions = 16
	ms := members(4)
	before := assignAll(ms[:3], partitions)
	after := assignAll(ms, partitions)
	moved := 0
	for _, m := range ms[:3] {
		for _, p := range before[m] {
			if !slices.Contains(after[m], p) {
				moved++
			}
		}
	}
	// The joiner's share must move; rendezvous hashing moves little more.
	if moved > len(after[ms[3]])+2 {
		t.Errorf("a fourth member moved %d partitions, for a share of %d: %v → %v", moved, len(after[ms[3]]), before, after)
	}
	back := assignAll(ms[:3], partitions)
	for _, m := range ms[:3] {
		if !slices.Equal(back[m], before[m]) {
			t.Errorf("%s: %v, then %v after a member came and went", m, before[m], back[m])
		}
	}
}

func TestViewMembers(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ttl := 2 * time.Second
	v := newView("b", ttl)
	if v.valid(t0) {
		t.Error("a view that never heard itself is valid")
	}
	tests := []struct {
		name        string
		give        heartbeat
		at          time.Duration // after t0
		wantChanged bool
		wantLive    []string
	}{
		{"itself", heartbeat{ID: "b"}, 0, true, []string{"b"}},
		{"another", heartbeat{ID: "a", Owned: []int{1, 2}}, 100 * time.Millisecond, true, []string{"a", "b"}},
		{"the same again", heartbeat{ID: "a", Owned: []int{1, 2}}, 500 * time.Millisecond, false, []string{"a", "b"}},
		{"claims change", heartbeat{ID: "a", Owned: []int{1}}, time.Second, true, []string{"a", "b"}},
		{"itself later", heartbeat{ID: "b"}, 1900 * time.Millisecond, false, []string{"a", "b"}},
		{"the other unheard past the TTL", heartbeat{ID: "b"}, 3500 * time.Millisecond, false, []string{"b"}},
		{"it comes back", heartbeat{ID: "a"}, 3600 * time.Millisecond, true, []string{"a", "b"}},
		{"it leaves", heartbeat{ID: "a", Leaving: true}, 3700 * time.Millisecond, true, []string{"b"}},
		{"one that left says so again", heartbeat{ID: "a", Leaving: true}, 3800 * time.Millisecond, false, []string{"b"}},
	}
	for _, tt := range tests {
		at := t0.Add(tt.at)
		if got := v.heard(tt.give, at); got != tt.wantChanged {
			t.Errorf("%s: heard reports a change %v, want %v", tt.name, got, tt.wantChanged)
		}
		if got := v.live(at); !slices.Equal(got, tt.wantLive) {
			t.Errorf("%s: live = %v, want %v", tt.name, got, tt.wantLive)
		}
	}
	if !v.valid(t0.Add(3800 * time.Millisecond)) {
		t.Error("a view that heard itself within the TTL is not valid")
	}
	if v.valid(t0.Add(3500*time.Millisecond + ttl + time.Millisecond)) {
		t.Error("a view that has not heard itself for the TTL is valid")
	}
}

func TestViewClaimant(t *testing.T) {
	t0 := time.Unix(1000, 0)
	v := newView("b", 2*time.Second)
	v.heard(heartbeat{ID: "b", Owned: []int{3}}, t0)
	v.heard(heartbeat{ID: "a", Owned: []int{1, 2}}, t0)
	tests := []struct {
		give      int
		at        time.Duration
		wantID    string
		wantFound bool
	}{
		{1, 0, "a", true},
		{3, 0, "", false}, // its own claim is no other's
		{4, 0, "", false},
		{1, 3 * time.Second, "", false}, // a claim of a member gone
	}
	for _, tt := range tests {
		id, ok := v.claimant(tt.give, t0.Add(tt.at))
		if id != tt.wantID || ok != tt.wantFound {
			t.Errorf("claimant(%d) after %v = %q, %v; want %q, %v", tt.give, tt.at, id, ok, tt.wantID, tt.wantFound)
		}
	}
}

func TestDecodeHeartbeat(t *testing.T) {
	tests := []struct {
		give     string
		want     heartbeat
		wantFail bool
	}{
		{`{"id":"a","owned":[1,2]}`, heartbeat{ID: "a", Owned: []int{1, 2}}, false},
		{`{"id":"a","leaving":true}`, heartbeat{ID: "a", Leaving: true}, false},
		{`{"owned":[1]}`, heartbeat{}, true},
		{`{"id":1}`, heartbeat{}, true},
		{`hello`, heartbeat{}, true},
		{``, heartbeat{}, true},
	}
	for _, tt := range tests {
		got, err := decodeHeartbeat([]byte(tt.give))
		if (err != nil) != tt.wantFail || got.ID != tt.want.ID || got.Leaving != tt.want.Leaving || !slices.Equal(got.Owned, tt.want.Owned) {
			t.Errorf("decodeHeartbeat(%s) = %+v, %v; want %+v, failure %v", tt.give, got, err, tt.want, tt.wantFail)
		}
	}
}

// FuzzHeartbeat: whatever comes on the group's subject, decoding neither panics nor
// gives a heartbeat without an id, and a heartbeat survives its own encoding.
func FuzzHeartbeat(f *testing.F) {
	f.Add([]byte(`{"id":"a","owned":[1,2]}`))
	f.Add([]byte(`{"id":"a","leaving":true}`))
	f.Add([]byte(`{"id":"","owned":[-1]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		hb, err := decodeHeartbeat(data)
		if err != nil {
			return
		}
		if hb.ID == "" {
			t.Fatal("a heartbeat without an id")
		}
		v := newView("self", time.Second)
		v.heard(hb, time.Unix(0, 0))
		again, err := json.Marshal(hb)
		if err != nil {
			t.Fatal(err)
		}
		if back, err := decodeHeartbeat(again); err != nil || back.ID != hb.ID {
			t.Fatalf("%+v encodes as %s, which decodes as %+v, %v", hb, again, back, err)
		}
	})
}

// TestGroupMarks: the engine is marked at the least evidence of the partitions with
// calls in it: a live one's mark, a rebuilding one's start; a partition without calls
// counts for nothing, and with none, now is evidence.
func TestGroupMarks(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	now := at(100)
	rec := newRecorder()
	g := &GroupSource{in: rec, o: SourceOptions{Now: func() time.Time { return now }}, sessions: map[int]*session{}}
	marks := func() []time.Time {
		var ts []time.Time
		for _, e := range rec.all() {
			if e.kind == kindMark {
				ts = append(ts, e.at)
			}
		}
		return ts
	}
	tests := []struct {
		name string
		give func()
		want time.Time // the latest mark; zero: none
	}{
		{"no partition: now", func() {}, at(100)},
		{"a partition taken over after a mark: no step back", func() {
			g.sessions[1] = &session{p: 1, state: stateLive, mark: at(10)}
		}, at(100)},
		{"later marks follow the least partition", func() {
			now = at(200)
			g.marked = at(5)
			g.sessions[2] = &session{p: 2, state: stateLive, mark: at(30)}
		}, at(10)},
		{"the slowest catches up: the next slowest", func() { g.sessions[1].mark = at(50) }, at(30)},
		{"a rebuild counts from its start", func() {
			g.sessions[3] = &session{p: 3, state: stateRebuilding, since: at(40)}
			g.sessions[2].mark = at(60)
		}, at(40)},
		{"a partition without calls counts for nothing", func() { g.sessions[3].state = stateIdle }, at(50)},
	}
	for _, tt := range tests {
		tt.give()
		g.mu.Lock()
		g.markLocked()
		g.mu.Unlock()
		ms := marks()
		var got time.Time
		if len(ms) > 0 {
			got = ms[len(ms)-1]
		}
		if !got.Equal(tt.want) {
			t.Errorf("%s: marked %v, want %v", tt.name, got.Sub(t0), tt.want.Sub(t0))
		}
	}
}
