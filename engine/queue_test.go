package engine

import "testing"

// TestQueueLetsBurstsGo: after a burst, neither the queue nor the buffer a shard hands
// back keeps the room the burst took.
func TestQueueLetsBurstsGo(t *testing.T) {
	q := newQueue()
	var buf []item
	for round := range 3 {
		n := 5000
		if round > 0 {
			n = 3 // quiet again
		}
		for range n {
			q.push(item{mark: 1})
		}
		items, _ := q.take(buf)
		if len(items) != n {
			t.Fatalf("round %d: took %d items, want %d", round, len(items), n)
		}
		buf = items
	}
	q.mu.Lock()
	room := cap(q.items)
	q.mu.Unlock()
	if room > keepItems || cap(buf) > keepItems {
		t.Errorf("after the burst: the queue keeps room for %d items and the shard's buffer %d; want at most %d", room, cap(buf), keepItems)
	}
}
