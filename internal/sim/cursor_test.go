package sim

import (
	"testing"

	"github.com/hangwatch/hangwatch/detector"
)

func TestDeadline(t *testing.T) {
	tests := []struct {
		name        string
		give        params
		first, last int64
		tool        bool
		want        int64
		wantReason  detector.Reason
	}{
		{"one turn", params{timeout: 5000, maxWait: 10000}, 1000, 1000, false, 6000, detector.ReasonTurnTimeout},
		{"re-armed", params{timeout: 5000, maxWait: 10000}, 1000, 4000, false, 9000, detector.ReasonTurnTimeout},
		{"max-wait first", params{timeout: 5000, maxWait: 10000}, 1000, 8000, false, 11000, detector.ReasonMaxWait},
		{"tie goes to the turn timeout", params{timeout: 5000, maxWait: 10000}, 1000, 6000, false, 11000, detector.ReasonTurnTimeout},
		{"max-wait disabled", params{timeout: 5000}, 1000, 60000, false, 65000, detector.ReasonTurnTimeout},
		{"awaiting a tool", params{timeout: 5000, toolTimeout: 8000, maxWait: 10000}, 1000, 1000, true, 9000, detector.ReasonTurnTimeout},
		{"awaiting a tool, max-wait first", params{timeout: 5000, toolTimeout: 12000, maxWait: 10000}, 1000, 1000, true, 11000, detector.ReasonMaxWait},
		{"the tool answered", params{timeout: 5000, toolTimeout: 8000, maxWait: 10000}, 1000, 1000, false, 6000, detector.ReasonTurnTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, reason := deadline(&tt.give, tt.first, tt.last, tt.tool)
			if got != tt.want || reason != tt.wantReason {
				t.Errorf("deadline(%d, %d) = %d, %v, want %d, %v", tt.first, tt.last, got, reason, tt.want, tt.wantReason)
			}
		})
	}
}

// TestCursorKeepsClearOfDeadlines checks the invariant that makes the ground truth
// robust to jitter: no step of a call comes within Margin of the deadline of the
// stretch it belongs to.
func TestCursorKeepsClearOfDeadlines(t *testing.T) {
	s := newSim(t, stormy)
	p := &s.p
	for i := range uint64(500) {
		sc := s.Script(i, t0)
		c := sc.cursor()
		prev := int64(0)
		for {
			open, hung, dl := c.open, c.hung, c.deadline
			m := c.next(p)
			if open && !hung && !c.hung && c.open && m.at >= c.deadline {
				t.Fatalf("call %d: step %+v moved the deadline to %d, before it", i, m, c.deadline)
			}
			if m.at < prev+minGap {
				t.Fatalf("call %d: step at %d, %d after the previous one", i, m.at, m.at-prev)
			}
			if open && !hung && m.at > dl-p.margin && m.at < dl+p.margin {
				t.Fatalf("call %d: step %+v within margin of deadline %d", i, m, dl)
			}
			prev = m.at
			if m.kind == msgEnd {
				break
			}
		}
	}
}
