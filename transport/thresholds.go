package transport

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/engine"
)

// Key prefixes of the thresholds bucket: team.<teamId> and assistant.<assistantId>.
const (
	TeamKeyPrefix      = "team."
	AssistantKeyPrefix = "assistant."
)

// Thresholds are the thresholds per team and assistant of SPEC §2, live from a NATS
// key-value bucket: it implements engine.Thresholds. An assistant key wins over a team
// key, which wins over the flags; keys merge field by field. A value that is not valid
// is ignored, counted and logged, and the previous one stays; a deleted key falls back.
type Thresholds struct {
	base    detector.Config
	kv      jetstream.KeyValue
	bucket  string
	log     *zap.Logger
	limited *zap.Logger
	set     atomic.Pointer[thresholdSet]
	synced  atomic.Bool // the bucket's values as of the start are applied
	// Only the watching goroutine touches these.
	revs    map[string]uint64 // the revision of each key applied
	next    *thresholdSet     // the changes applied and not yet in force, nil if none
	pending struct{ applied, deleted int64 }
	stats   struct{ applied, invalid, deleted atomic.Int64 }
}

var _ engine.Thresholds = (*Thresholds)(nil)

// Override is the value of a key of the thresholds bucket: each field it sets replaces
// the one below it.
type Override struct {
	TimeoutMs     *int64 `json:"timeoutMs,omitempty"`
	MaxWaitMs     *int64 `json:"maxWaitMs,omitempty"`
	ToolTimeoutMs *int64 `json:"toolTimeoutMs,omitempty"`
	Enabled       *bool  `json:"enabled,omitempty"`
}

// thresholdSet is one state of the bucket, read-only once published.
type thresholdSet struct {
	teams      map[string]Override
	assistants map[string]Override
	team       map[string]*detector.Config // base + the team's key
	assistant  map[string]*detector.Config // base + the assistant's key
	// combos holds the pairs of a team and an assistant that both have a key, merged
	// on first use: pair → *detector.Config, base + team + assistant. Its keys are
	// copies, never the strings For is given: those alias a received event (up to
	// 1 MiB), which a key would keep in memory outside every budget (SPEC §2 Bounds).
	// Only the pairs of keys are here (the others are in team and assistant), and at
	// most maxCombos of them: the product of a bucket's team and assistant keys can
	// be far more than the pairs in use, and input picks which ones are.
	combos  sync.Map
	ncombos atomic.Int64
}

type pair struct{ team, assistant string }

// maxCombos bounds the pairs cached in a thresholdSet: past it, the cache starts
// again empty, and the pairs in use come back on their next event.
const maxCombos = 1 << 14

// ErrThresholds is wrapped by the errors of a key's value.
var ErrThresholds = errors.New("invalid thresholds")

// ParseOverride reads the value of a thresholds key: a JSON object with any of
// timeoutMs (above 0), maxWaitMs (0 disables), toolTimeoutMs (0: the timeout) and
// enabled, and nothing else.
func ParseOverride(data []byte) (Override, error) {
	// encoding/json reads null into a struct as nothing at all, without an error.
	if v := bytes.TrimLeft(data, " \t\r\n"); len(v) == 0 || v[0] != '{' {
		return Override{}, fmt.Errorf("%w: not a JSON object", ErrThresholds)
	}
	var o Override
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		return Override{}, fmt.Errorf("%w: %w", ErrThresholds, err)
	}
	if dec.More() {
		return Override{}, fmt.Errorf("%w: more than one JSON value", ErrThresholds)
	}
	switch {
	case o.TimeoutMs != nil && *o.TimeoutMs <= 0:
		return Override{}, fmt.Errorf("%w: timeoutMs must be above 0, got %d", ErrThresholds, *o.TimeoutMs)
	case o.MaxWaitMs != nil && *o.MaxWaitMs < 0:
		return Override{}, fmt.Errorf("%w: maxWaitMs must be 0 or above, got %d", ErrThresholds, *o.MaxWaitMs)
	case o.ToolTimeoutMs != nil && *o.ToolTimeoutMs < 0:
		return Override{}, fmt.Errorf("%w: toolTimeoutMs must be 0 or above, got %d", ErrThresholds, *o.ToolTimeoutMs)
	}
	for _, v := range []*int64{o.TimeoutMs, o.MaxWaitMs, o.ToolTimeoutMs} {
		if v != nil && *v > int64(100*24*time.Hour/time.Millisecond) {
			return Override{}, fmt.Errorf("%w: %d ms is more than 100 days", ErrThresholds, *v)
		}
	}
	return o, nil
}

// apply returns th with the fields o sets.
func (o Override) apply(th detector.Thresholds) detector.Thresholds {
	ms := func(v int64) time.Duration { return time.Duration(v) * time.Millisecond }
	if o.TimeoutMs != nil {
		th.Timeout = ms(*o.TimeoutMs)
	}
	if o.MaxWaitMs != nil {
		th.MaxWait = ms(*o.MaxWaitMs)
	}
	if o.ToolTimeoutMs != nil {
		th.ToolTimeout = ms(*o.ToolTimeoutMs)
	}
	if o.Enabled != nil {
		th.Disabled = !*o.Enabled
	}
	return th
}

// NewThresholds returns the thresholds of base overridden by the keys of the bucket,
// which it creates when missing (with replicas). Run watches it.
func NewThresholds(ctx context.Context, c *Conn, bucket string, replicas int, base detector.Config, log, limited *zap.Logger) (*Thresholds, error) {
	if log == nil {
		log = zap.NewNop()
	}
	js, err := jetstream.New(c.NATS())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJetStream, err)
	}
	var kv jetstream.KeyValue
	where := "thresholds bucket " + bucket
	err = retry(ctx, log, where, func(ctx context.Context) error {
		var err error
		kv, err = js.KeyValue(ctx, bucket)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      bucket,
				Description: "hangwatch: thresholds per team (team.<teamId>) and assistant (assistant.<assistantId>)",
				Replicas:    max(replicas, 1),
			})
			if err == nil {
				log.Info("thresholds bucket created", zap.String("bucket", bucket))
			}
		}
		return err
	})
	if err != nil {
		return nil, jsError(where, err)
	}
	t := newThresholds(kv, bucket, base, log, limitedOr(limited, log))
	// The values the bucket holds apply before the engine starts: a call armed at the
	// start (a replay) must not arm with the flags' thresholds where a key says otherwise.
	if err := t.load(ctx); err != nil {
		return nil, jsError(where+": load", err)
	}
	return t, nil
}

// newThresholds returns the thresholds of base, with no key applied yet.
func newThresholds(kv jetstream.KeyValue, bucket string, base detector.Config, log, limited *zap.Logger) *Thresholds {
	t := &Thresholds{base: base, kv: kv, bucket: bucket, log: log, limited: limited, revs: map[string]uint64{}}
	t.set.Store(&thresholdSet{teams: map[string]Override{}, assistants: map[string]Override{},
		team: map[string]*detector.Config{}, assistant: map[string]*detector.Config{}})
	return t
}

// load applies the bucket's values as of now, and returns.
func (t *Thresholds) load(ctx context.Context) error {
	w, err := t.kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer w.Stop() //nolint:errcheck // a watcher that cannot stop is gone anyway
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case e, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			if e == nil {
				t.publish()
				t.synced.Store(true)
				s := t.set.Load()
				t.log.Info("thresholds loaded", zap.String("bucket", t.bucket), zap.Int("teams", len(s.teams)), zap.Int("assistants", len(s.assistants)))
				return nil
			}
			t.apply(e)
		}
	}
}

// For implements engine.Thresholds.
func (t *Thresholds) For(teamID, assistantID string) *detector.Config {
	s := t.set.Load()
	team, teamKey := s.team[teamID]
	a, assistantKey := s.assistants[assistantID]
	switch {
	case !assistantKey && !teamKey:
		return &t.base
	case !assistantKey:
		return team
	case !teamKey:
		return s.assistant[assistantID]
	}
	// Looked up with the strings given, stored with copies of them (see combos).
	if c, ok := s.combos.Load(pair{teamID, assistantID}); ok {
		return c.(*detector.Config)
	}
	merged := t.base.With(a.apply(team.Thresholds))
	if s.ncombos.Add(1) > maxCombos {
		s.combos.Clear()
		s.ncombos.Store(1)
	}
	c, _ := s.combos.LoadOrStore(pair{strings.Clone(teamID), strings.Clone(assistantID)}, &merged)
	return c.(*detector.Config)
}

// Synced reports whether the bucket's values as of the start are applied.
func (t *Thresholds) Synced() bool { return t.synced.Load() }

// Run watches the bucket and applies every change until ctx is done.
func (t *Thresholds) Run(ctx context.Context) error {
	for attempt := 0; ctx.Err() == nil; attempt++ {
		w, err := t.kv.WatchAll(ctx)
		if err != nil {
			t.limited.Warn("thresholds bucket: watching", zap.String("bucket", t.bucket), zap.Error(err))
			if !sleepCtx(ctx, backoff(attempt)) {
				break
			}
			continue
		}
		attempt = 0
		t.watch(ctx, w)
		_ = w.Stop()
	}
	return nil
}

func (t *Thresholds) watch(ctx context.Context, w jetstream.KeyWatcher) {
	// A watch's first values (a reconnection's) go in force at once, as at the start;
	// and what is applied goes in force before the watch is left, not with the next one.
	live := false
	defer t.publish()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil { // the values as of the watch's start are all here
				live = true
				t.publish()
				continue
			}
			t.apply(e)
			if live {
				t.publish()
			}
		}
	}
}

// apply applies one entry of the bucket to the changes not yet in force (publish puts
// them in force): a bucket of n keys loads in one set, not in n sets of up to n keys.
func (t *Thresholds) apply(e jetstream.KeyValueEntry) {
	key := e.Key()
	// A watch started anew (the start's load, a reconnection) hands over what was
	// applied already: once is enough.
	if e.Revision() <= t.revs[key] {
		return
	}
	t.revs[key] = e.Revision()
	var (
		id     string
		isTeam bool
	)
	switch {
	case strings.HasPrefix(key, TeamKeyPrefix):
		id, isTeam = key[len(TeamKeyPrefix):], true
	case strings.HasPrefix(key, AssistantKeyPrefix):
		id = key[len(AssistantKeyPrefix):]
	default:
		t.stats.invalid.Add(1)
		t.limited.Warn("thresholds bucket: key ignored: use team.<teamId> or assistant.<assistantId>", zap.String("key", key))
		return
	}
	var o Override
	if e.Operation() == jetstream.KeyValuePut {
		var err error
		if o, err = ParseOverride(e.Value()); err != nil {
			t.stats.invalid.Add(1)
			t.limited.Warn("thresholds bucket: invalid value ignored, the previous one stays", zap.String("key", key), zap.Error(err))
			return
		}
	}
	s := t.edit()
	overrides, configs := s.assistants, s.assistant
	if isTeam {
		overrides, configs = s.teams, s.team
	}
	if e.Operation() != jetstream.KeyValuePut {
		delete(overrides, id)
		delete(configs, id)
		t.pending.deleted++
		t.log.Info("thresholds deleted: falling back", zap.String("key", key))
		return
	}
	overrides[id] = o
	cfg := t.base.With(o.apply(t.base.Thresholds))
	configs[id] = &cfg
	t.pending.applied++
	t.log.Info("thresholds applied", zap.String("key", key), zap.Any("value", o))
}

// edit returns the set the changes go into until publish: a copy of the set in force,
// which For may be reading, made once for all the changes of a batch. The configs of
// the keys that do not change are shared, not merged again.
func (t *Thresholds) edit() *thresholdSet {
	if t.next == nil {
		s := t.set.Load()
		t.next = &thresholdSet{teams: maps.Clone(s.teams), assistants: maps.Clone(s.assistants),
			team: maps.Clone(s.team), assistant: maps.Clone(s.assistant)}
	}
	return t.next
}

// publish puts the changes applied in force, if any.
func (t *Thresholds) publish() {
	if t.next == nil {
		return
	}
	t.set.Store(t.next)
	t.next = nil
	// Counted once in force: who sees the count sees the change in For.
	t.stats.applied.Add(t.pending.applied)
	t.stats.deleted.Add(t.pending.deleted)
	t.pending.applied, t.pending.deleted = 0, 0
}

// ThresholdsStats are the counters of Thresholds.
type ThresholdsStats struct {
	Applied, Invalid, Deleted int64
	Teams, Assistants         int
}

// Stats returns the counters.
func (t *Thresholds) Stats() ThresholdsStats {
	s := t.set.Load()
	return ThresholdsStats{
		Applied: t.stats.applied.Load(), Invalid: t.stats.invalid.Load(), Deleted: t.stats.deleted.Load(),
		Teams: len(s.teams), Assistants: len(s.assistants),
	}
}
