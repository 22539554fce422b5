package engine

import (
	"cmp"
	"slices"
	"sync"
)

// labels counts hangs by a label of unbounded cardinality (a team, a model) so that the
// metrics can name the most frequent few and sum the rest as "other". It holds at most
// maxLabels distinct labels; past that, new ones count as other at once.
type labels struct {
	mu     sync.Mutex
	counts map[string]int64
	other  int64
}

const maxLabels = 4096

// Other is the label of everything that is not among the most frequent.
const Other = "other"

func (l *labels) add(label string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts == nil {
		l.counts = make(map[string]int64)
	}
	if _, ok := l.counts[label]; !ok && len(l.counts) >= maxLabels {
		l.other++
		return
	}
	if _, ok := l.counts[label]; !ok {
		label = clone(label)
	}
	l.counts[label]++
}

// LabelCount is a label's count.
type LabelCount struct {
	Label string
	Count int64
}

// top returns the n most frequent labels, and the count of all the others.
func (l *labels) top(n int) ([]LabelCount, int64) {
	l.mu.Lock()
	all := make([]LabelCount, 0, len(l.counts))
	for k, v := range l.counts {
		all = append(all, LabelCount{k, v})
	}
	other := l.other
	l.mu.Unlock()
	slices.SortFunc(all, func(a, b LabelCount) int {
		if c := cmp.Compare(b.Count, a.Count); c != 0 {
			return c
		}
		return cmp.Compare(a.Label, b.Label)
	})
	if len(all) > n {
		for _, lc := range all[n:] {
			other += lc.Count
		}
		all = all[:n]
	}
	return all, other
}
