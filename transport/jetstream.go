package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
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
	// Replicas is the replication of the streams hangwatch creates (default 1): run 3 in
	// a 3-node cluster.
	Replicas int
}

// nextStored asks the stream's leader for the stream sequence of the first message
// stored on any of subjects (wildcards allowed) at or after sequence from, 0 when there
// is none: what the caller, which received every message of the subjects before from,
// has yet to receive. A consumer's leader answers its info from its own replica of the
// stream, which may lag behind what the stream has stored and acknowledged (a replica
// cut off from the others goes on leading the consumer for seconds): its "nothing
// pending" is no evidence. The stream's leader has every message it acknowledged; the
// request is never a direct get, which any replica may answer. It reads from from on
// (next_by_subj), not the last message of the subjects (last_by_subj), which the server
// finds by matching every subject of the stream: 5 ms a question at 100,000 subjects,
// against tens of microseconds.
func nextStored(ctx context.Context, nc *nats.Conn, stream string, subjects []string, from uint64) (uint64, error) {
	var next uint64
	for _, subject := range subjects {
		req, err := json.Marshal(struct {
			Seq     uint64 `json:"seq"`
			NextFor string `json:"next_by_subj"`
		}{max(from, 1), subject})
		if err != nil {
			return 0, err
		}
		msg, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+stream, req)
		if err != nil {
			return 0, fmt.Errorf("next stored on %s: %w", subject, err)
		}
		var resp struct {
			Error *struct {
				ErrCode     int    `json:"err_code"`
				Description string `json:"description"`
			} `json:"error"`
			Message *struct {
				Seq uint64 `json:"seq"`
			} `json:"message"`
		}
		if err := json.Unmarshal(msg.Data, &resp); err != nil {
			return 0, fmt.Errorf("next stored on %s: %w", subject, err)
		}
		switch {
		case resp.Error != nil && resp.Error.ErrCode == errNoMessageFound:
		case resp.Error != nil:
			return 0, fmt.Errorf("next stored on %s: %s (%d)", subject, resp.Error.Description, resp.Error.ErrCode)
		case resp.Message != nil && (next == 0 || resp.Message.Seq < next):
			next = resp.Message.Seq
		}
	}
	return next, nil
}

// errNoMessageFound is the JetStream API's error code for a get that found no message.
const errNoMessageFound = 10037

// replayPolicy is how a rebuild reads a stream that keeps perSubject messages per
// subject (its MaxMsgsPerSubject): every one it keeps when it keeps a few, so that a
// late duplicate of an older snapshot, stored after the newer one, does not hide it (the
// detector applies the newest by its timestamps, SPEC §2); else the latest of each
// subject (one kept, or a stream that keeps every message, whose whole history would be
// too long to read).
func replayPolicy(perSubject int64) jetstream.DeliverPolicy {
	if perSubject > 1 {
		return jetstream.DeliverAllPolicy
	}
	return jetstream.DeliverLastPerSubjectPolicy
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
	if o.Replicas <= 0 {
		o.Replicas = 1
	}
	return o
}

// ensureStream returns the stream named cfg.Name, created with cfg when it is missing,
// retrying while the server does not answer (a fleet started at once issues the same
// create together: nats.go #949, nats-server #3677). A stream that exists is used as it
// is, whatever its configuration; it is logged, so that an operator can see what runs.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, log *zap.Logger) (jetstream.Stream, error) {
	var (
		st      jetstream.Stream
		created bool
	)
	where := "stream " + cfg.Name
	err := retry(ctx, log, where, func(ctx context.Context) error {
		var err error
		st, err = js.Stream(ctx, cfg.Name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			st, err = js.CreateStream(ctx, cfg)
			created = err == nil
		}
		return err
	})
	if err != nil {
		return nil, jsError(where, err)
	}
	have := st.CachedInfo().Config
	msg := "using existing stream"
	if created {
		msg = "stream created"
	}
	log.Info(msg, zap.String("stream", have.Name), zap.Strings("subjects", have.Subjects),
		zap.Int64("max_msgs_per_subject", have.MaxMsgsPerSubject), zap.Duration("max_age", have.MaxAge),
		zap.Duration("duplicates", have.Duplicates), zap.Int("replicas", have.Replicas))
	return st, nil
}

// setupTimeout bounds one attempt of a setup call (a stream or consumer lookup or
// create); retry tries again until its context is done. Identical creates issued
// together by a fleet started at once may go unanswered: each of those members waits
// this long before its retry finds what another made.
const setupTimeout = 2 * time.Second

// retry calls f until it succeeds, fails for good, or ctx is done: a timeout or a
// cluster without a leader yet is tried again after a backoff.
func retry(ctx context.Context, log *zap.Logger, what string, f func(context.Context) error) error {
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, setupTimeout)
		err := f(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		d := backoff(attempt)
		log.Warn("JetStream did not answer: retrying", zap.String("what", what), zap.Duration("in", d), zap.Error(err))
		if !sleepCtx(ctx, d) {
			return err
		}
	}
}

// transient reports whether a JetStream error may go away: the server did not answer
// in time, the cluster has no leader for the asset yet, or another instance created the
// same stream or consumer meanwhile with other settings (the retry finds it).
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamNameInUse, jetstream.JSErrCodeConsumerNameExists, jetstream.JSErrCodeConsumerExists:
			return true
		case jetstream.JSErrCodeJetStreamNotEnabled, jetstream.JSErrCodeJetStreamNotEnabledForAccount:
			return false
		}
		return apiErr.Code >= 500 || apiErr.Code == 408
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrConnectionReconnecting)
}

// jsError wraps an error of JetStream mode with what it concerns and, where the cause is
// plain, what to do about it.
func jsError(what string, err error) error {
	hint := ""
	switch {
	case errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		hint = ": JetStream is not enabled on the server (or for this account): start nats-server with -js, or run hangwatch without --jetstream"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		hint = ": JetStream did not answer in time: is the cluster up, and does the stream have a leader?"
	}
	return fmt.Errorf("%w: %s: %w%s", ErrJetStream, what, err, hint)
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

// limitedOr returns limited, or log when it is nil.
func limitedOr(limited, log *zap.Logger) *zap.Logger {
	if limited == nil {
		return log
	}
	return limited
}
