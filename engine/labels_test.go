package engine

import (
	"fmt"
	"testing"
)

// TestLabelsLateFrequentLabelLeads: SPEC §4 "team or model labels only for the most
// frequent few, the rest as other". Once maxLabels distinct teams have hung once each (a
// platform with many tenants, or one producer sending random teamIds), a team that then
// hangs a thousand times is the most frequent, with its thousand hangs, and no hang is
// lost: the counts and other sum to every hang.
func TestLabelsLateFrequentLabelLeads(t *testing.T) {
	var l labels
	for i := range maxLabels {
		l.add(fmt.Sprint("team-", i))
	}
	for range 1000 {
		l.add("hot")
	}
	top, other := l.top(10)
	if len(top) == 0 || top[0].Label != "hot" || top[0].Count != 1000 {
		t.Fatalf("top = %v (other %d), want hot first with 1000 hangs", top[:min(3, len(top))], other)
	}
	all, other := l.top(2 * maxLabels)
	if len(all) > maxLabels {
		t.Errorf("%d labels tracked, want at most %d", len(all), maxLabels)
	}
	sum := other
	for _, lc := range all {
		sum += lc.Count
	}
	if want := int64(maxLabels + 1000); sum != want {
		t.Errorf("counts and other sum to %d, want every hang: %d", sum, want)
	}
}

// TestLabelsLeadersAreKept: a label that top reported among its leaders gets a series of
// its own in the metrics for the life of the process (internal/metrics sticky), so a
// flood of new labels that evicts the least frequent must not evict it: its count would
// fall back to zero. Neither its count nor other ever goes down.
func TestLabelsLeadersAreKept(t *testing.T) {
	var l labels
	l.add("early")
	l.add("early")
	if top, _ := l.top(maxLabels); len(top) != 1 || top[0] != (LabelCount{"early", 2}) {
		t.Fatalf("top = %v, want early with 2", top)
	}
	var lastOther int64
	for i := range 8 * maxLabels { // the least frequent rise past 2
		l.add(fmt.Sprint("flood-", i))
		if i%maxLabels == 0 {
			_, other := l.top(maxLabels)
			if other < lastOther {
				t.Fatalf("other went down from %d to %d", lastOther, other)
			}
			lastOther = other
		}
	}
	all, _ := l.top(maxLabels)
	var early int64
	for _, lc := range all {
		if lc.Label == "early" {
			early = lc.Count
		}
	}
	if early != 2 {
		t.Errorf("early counted %d after the flood, want 2 (kept)", early)
	}
	// The kept labels are bounded.
	for i := range 2 * maxKept {
		for range 100 + i {
			l.add(fmt.Sprint("leader-", i))
		}
		l.top(maxLabels)
	}
	if l.kept != maxKept {
		t.Errorf("%d labels kept, want %d", l.kept, maxKept)
	}
}
