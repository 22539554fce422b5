package transport

import (
	"testing"

	"github.com/hangwatch/hangwatch/internal/fixtures"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// readFixture returns an event of the webhook fixture call.
func readFixture(_ testing.TB, name string) []byte { return fixtures.Webhook(name) }
