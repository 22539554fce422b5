package engine

import (
	"cmp"
	"container/heap"
	"slices"
	"sync"
)

// labels counts hangs by a label of unbounded cardinality (a team, a model) so that the
// metrics can name the most frequent few and sum the rest as "other".
//
// It is a Space-Saving summary (Metwally, Agrawal, El Abbadi 2005) of at most maxLabels
// labels: a label not tracked while the summary is full takes the slot of the least
// frequent one and inherits its count, plus one. The inherited part is an upper bound on
// the hangs the newcomer had before, so a label whose hangs are more than total/maxLabels
// is always tracked, however many labels came first; a cap that kept the first labels
// seen would count a team that starts hanging late as other forever.
//
// The counts reported are the hangs counted while the label was tracked (the estimate
// less what it inherited): exact lower bounds, which with other (the hangs counted for
// labels since evicted) sum to every hang. A label that top reported among its leaders
// is kept from then on (at most maxKept of them): the metrics export those with a
// series of their own for the life of the process, and a counter whose label was
// evicted would fall back to zero.
type labels struct {
	mu    sync.Mutex
	index map[string]*labelSlot // every label tracked
	heap  labelHeap             // those that can be evicted, least estimated first
	kept  int                   // tracked labels that cannot be evicted
	other int64
}

// labelSlot is a tracked label.
type labelSlot struct {
	label string
	est   int64 // hangs counted while tracked, plus inherited
	inh   int64 // inherited from the label it replaced
	pos   int   // in heap; -1 when kept
}

const (
	maxLabels = 4096
	// keptLeaders is how many of the most frequent labels at a call of top are kept:
	// the ten that the metrics give a series at each scrape (metrics.TopLabels).
	keptLeaders = 10
	// maxKept bounds the labels kept; the metrics export at most 30 per counter.
	maxKept = 64
)

// Other is the label of everything that is not among the most frequent.
const Other = "other"

func (l *labels) add(label string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if s, ok := l.index[label]; ok {
		s.est++
		if s.pos >= 0 {
			heap.Fix(&l.heap, s.pos)
		}
		return
	}
	if l.index == nil {
		l.index = make(map[string]*labelSlot)
	}
	if len(l.index) < maxLabels {
		s := &labelSlot{label: clone(label), est: 1}
		l.index[s.label] = s
		heap.Push(&l.heap, s)
		return
	}
	// Full: the least frequent label makes room. (The heap is never empty here, as
	// maxKept < maxLabels.)
	s := l.heap[0]
	l.other += s.est - s.inh
	delete(l.index, s.label)
	s.label, s.inh = clone(label), s.est
	s.est++
	l.index[s.label] = s
	heap.Fix(&l.heap, 0)
}

// LabelCount is a label's count.
type LabelCount struct {
	Label string
	Count int64
}

// byCount orders the most frequent first, then by label.
func byCount(a, b LabelCount) int {
	if c := cmp.Compare(b.Count, a.Count); c != 0 {
		return c
	}
	return cmp.Compare(a.Label, b.Label)
}

// top returns the n most frequent labels, and the count of all the others. The first
// keptLeaders it returns are kept from then on, until maxKept are.
func (l *labels) top(n int) ([]LabelCount, int64) {
	l.mu.Lock()
	all := make([]LabelCount, 0, len(l.index))
	for k, s := range l.index {
		all = append(all, LabelCount{k, s.est - s.inh})
	}
	other := l.other
	// The leaders are picked under the lock, so that no label is evicted between being
	// reported and being kept; the whole sort is left for after.
	if l.kept < maxKept {
		for _, lc := range leaders(all, min(n, keptLeaders)) {
			if s := l.index[lc.Label]; s.pos >= 0 && l.kept < maxKept {
				heap.Remove(&l.heap, s.pos)
				s.pos = -1
				l.kept++
			}
		}
	}
	l.mu.Unlock()
	slices.SortFunc(all, byCount)
	if len(all) > n {
		for _, lc := range all[n:] {
			other += lc.Count
		}
		all = all[:n]
	}
	return all, other
}

// leaders returns the n first of all in byCount order, in one pass.
func leaders(all []LabelCount, n int) []LabelCount {
	if n <= 0 {
		return nil
	}
	lead := make([]LabelCount, 0, n+1)
	for _, lc := range all {
		if len(lead) == n && byCount(lc, lead[n-1]) >= 0 {
			continue
		}
		i, _ := slices.BinarySearchFunc(lead, lc, byCount)
		lead = slices.Insert(lead, i, lc)
		if len(lead) > n {
			lead = lead[:n]
		}
	}
	return lead
}

// labelHeap is a min-heap of labels by estimate: its root is the one evicted next.
type labelHeap []*labelSlot

func (h labelHeap) Len() int           { return len(h) }
func (h labelHeap) Less(i, j int) bool { return h[i].est < h[j].est }
func (h labelHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].pos, h[j].pos = i, j
}
func (h *labelHeap) Push(x any) {
	s := x.(*labelSlot)
	s.pos = len(*h)
	*h = append(*h, s)
}
func (h *labelHeap) Pop() any {
	old := *h
	s := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return s
}
