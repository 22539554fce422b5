// Package logs holds what hangwatch's packages share about logging.
package logs

import (
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// RateLimited returns a logger that lets through the first entry of each message per
// second and drops the rest: for what a publisher can flood, such as bad input, refused
// calls or slow-consumer errors. Metrics count every one. Give each reason its own
// message to limit them apart.
func RateLimited(l *zap.Logger) *zap.Logger {
	return l.WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 1, 0)
	}))
}
