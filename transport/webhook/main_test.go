package webhook

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild()) // a deliverer for TestJetStreamKill9 to kill
	}
	goleak.VerifyTestMain(m)
}
