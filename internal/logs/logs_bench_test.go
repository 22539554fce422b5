package logs

import (
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// BenchmarkRateLimitedDropped measures an entry the limit drops: what a flood of bad
// input costs per event once its message has been logged this second.
func BenchmarkRateLimitedDropped(b *testing.B) {
	core := zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(discard{}), zapcore.InfoLevel)
	log := RateLimited(zap.New(core))
	log.Info("bad input") // this second's entry
	b.ReportAllocs()
	for b.Loop() {
		if ce := log.Check(zapcore.InfoLevel, "bad input"); ce != nil {
			ce.Write(zap.String("reason", "not-json"))
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
