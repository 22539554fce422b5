package metrics

import (
	"fmt"
	"slices"
	"testing"

	"github.com/hangwatch/hangwatch/engine"
)

// TestStickyLabels: the labels of hangs by team and by model are the most frequent now,
// joined to those exported before (a series never disappears), up to maxExported; a
// label that becomes frequent later gets its own series then; the rest sum as other.
func TestStickyLabels(t *testing.T) {
	counts := func(n int, base int64) []engine.LabelCount { // label-0 most frequent
		var all []engine.LabelCount
		for i := range n {
			all = append(all, engine.LabelCount{Label: fmt.Sprintf("label-%d", i), Count: base - int64(i)})
		}
		return all
	}
	var st sticky
	got, other := st.pick(counts(15, 100), 7)
	if len(got) != TopLabels || other != 7+(100-10)+(100-11)+(100-12)+(100-13)+(100-14) {
		t.Fatalf("first scrape: %d labels, other %d", len(got), other)
	}
	// A new label becomes the most frequent: it joins, the earlier ten stay.
	all := append([]engine.LabelCount{{Label: "late", Count: 1000}}, counts(15, 100)...)
	got, _ = st.pick(all, 0)
	var labels []string
	for _, lc := range got {
		labels = append(labels, lc.Label)
	}
	if !slices.Contains(labels, "late") || !slices.Contains(labels, "label-0") || len(labels) != TopLabels+1 {
		t.Errorf("second scrape labels %v, want the ten and late", labels)
	}
	// Never more than maxExported.
	for i := range 10 {
		var top []engine.LabelCount
		for j := range TopLabels {
			top = append(top, engine.LabelCount{Label: fmt.Sprintf("wave-%d-%d", i, j), Count: int64(1000 - j)})
		}
		st.pick(top, 0)
	}
	if len(st.labels) != maxExported {
		t.Errorf("%d labels exported, want at most %d", len(st.labels), maxExported)
	}
}
