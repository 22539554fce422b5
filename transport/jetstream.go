package transport

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Defaults of JetStream mode.
const (
	// DefaultStream is the default of --stream, the stream of the events.
	DefaultStream = "HANGWATCH_EVENTS"
	// DefaultHangStream is the default of --hang-stream, the stream of the outputs.
	DefaultHangStream = "HANGWATCH_HANGS"
	// DefaultDurable is the default name of the durable consumer of the events.
	DefaultDurable = "hangwatch"
	// DefaultDuplicates is the default, and the least, duplicate window of the hang
	// stream: a restart within it never publishes a stall twice.
	DefaultDuplicates = 10 * time.Minute
	// DefaultHangMaxAge is how long the hang stream keeps an output by default.
	DefaultHangMaxAge = 7 * 24 * time.Hour
	// DefaultStreamMaxAge is how long the events stream keeps a message by default: the
	// default --call-ttl, after which the engine forgets a silent call anyway.
	DefaultStreamMaxAge = 2 * time.Hour
)

// ErrJetStream is wrapped by the errors of JetStream mode's options and setup.
var ErrJetStream = errors.New("jetstream")

// StreamOptions describes the stream the events are read from. The stream is created over
// the source's subjects when it is missing (file storage, discard old); one that exists is
// used as it is.
type StreamOptions struct {
	// Name of the stream (default DefaultStream).
	Name string
	// PerSubject is how many messages the stream keeps per subject (default 1): with
	// the subject layout voice.events.<callId>.<type>, the latest event of each kind of
	// each call.
	PerSubject int64
	// MaxAge is how long a message is kept (default DefaultStreamMaxAge): pass
	// --call-ttl.
	MaxAge time.Duration
}

func (o StreamOptions) withDefaults() StreamOptions {
	if o.Name == "" {
		o.Name = DefaultStream
	}
	if o.PerSubject == 0 {
		o.PerSubject = 1
	}
	if o.MaxAge <= 0 {
		o.MaxAge = DefaultStreamMaxAge
	}
	return o
}

// ensureStream returns the stream named cfg.Name, created with cfg when it is missing. A
// stream that exists is used as it is, whatever its configuration; it is logged, so that
// an operator can see what runs.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log *zap.Logger) (jetstream.Stream, error) {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		st, err = js.CreateStream(ctx, cfg)
		if err == nil {
			log.Info("stream created", zap.String("stream", cfg.Name), zap.Strings("subjects", cfg.Subjects),
				zap.Int64("max_msgs_per_subject", cfg.MaxMsgsPerSubject), zap.Duration("max_age", cfg.MaxAge),
				zap.Duration("duplicates", cfg.Duplicates))
			return st, nil
		}
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			st, err = js.Stream(ctx, cfg.Name) // another engine created it meanwhile
		}
	}
	if err != nil {
		return nil, fmt.Errorf("%w: stream %s: %w", ErrJetStream, cfg.Name, err)
	}
	have := st.CachedInfo().Config
	log.Info("using existing stream", zap.String("stream", have.Name), zap.Strings("subjects", have.Subjects),
		zap.Int64("max_msgs_per_subject", have.MaxMsgsPerSubject), zap.Duration("max_age", have.MaxAge),
		zap.Duration("duplicates", have.Duplicates))
	return st, nil
}

// filterSubjects returns the subjects a consumer configuration filters on.
func filterSubjects(cfg jetstream.ConsumerConfig) []string {
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}
	}
	return cfg.FilterSubjects
}

// setFilter makes cfg filter on subjects, in the field the server expects.
func setFilter(cfg *jetstream.ConsumerConfig, subjects []string) {
	cfg.FilterSubject, cfg.FilterSubjects = "", nil
	if len(subjects) == 1 {
		cfg.FilterSubject = subjects[0]
	} else {
		cfg.FilterSubjects = slices.Clone(subjects)
	}
}

// sleepCtx waits d, or until ctx is done; it reports whether d passed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
