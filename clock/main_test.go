package clock

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package if a test leaves a goroutine running: the scheduler tests
// start shard loops, and fake AfterFunc callbacks would run in goroutines of their own.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
