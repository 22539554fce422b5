package sim

import (
	"testing"
	"unsafe"
)

// TestSlotIsSmall guards the memory of a run: a live call is one slot, and a million of
// them must fit in a few hundred megabytes.
func TestSlotIsSmall(t *testing.T) {
	const limit = 256
	if size := unsafe.Sizeof(slot{}) + 4; size > limit { // and its place in the heap
		t.Errorf("a live call takes %d bytes, want at most %d", size, limit)
	}
	t.Logf("a live call takes %d bytes", unsafe.Sizeof(slot{})+4)
}
