package transport

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/hangwatch/hangwatch/engine"
)

// Defaults of a group's timing.
const (
	// DefaultHeartbeat is how often a member says it is alive and what it consumes.
	DefaultHeartbeat = 500 * time.Millisecond
	// DefaultMemberTTL is how long a member may go unheard before the others take its
	// partitions over: the failover time of a member killed or cut off.
	DefaultMemberTTL = 2 * time.Second
	// DefaultPinnedTTL is the pin timeout of the partitions' consumers: how long the
	// server keeps a partition pinned to a member that no longer pulls. Members unpin
	// what they take over from a member gone, so it matters only when no member does.
	DefaultPinnedTTL = 5 * time.Second
	// pinGroup is the priority group of the partitions' consumers.
	pinGroup = "hangwatch"
	// groupPullExpiry and groupPullHeartbeat: a pinned member renews its pull well within
	// the pin timeout, so that an idle partition keeps its pin.
	groupPullExpiry    = 2 * time.Second
	groupPullHeartbeat = 500 * time.Millisecond
	// groupPullBatch is how many events a partition buffers in the client.
	groupPullBatch = 256
	// stallAfter: a partition whose consumer says it delivered what this member never
	// received, while this member waits for more, is rebuilt after this long: those
	// deliveries went to another member (the pin moved) or were lost in flight.
	stallAfter = time.Second
	// settleTimeout bounds the wait, when a member hands a partition over, for the
	// outputs of its calls to be stored.
	settleTimeout = 5 * time.Second
	// proofConcurrency bounds the consumer info requests of one round of proofs.
	proofConcurrency = 8
)

// ErrGroup is wrapped by the errors of a group's options.
var ErrGroup = errors.New("group")

// validGroupName: a group name is a token of a subject and part of consumer names.
var validGroupName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// GroupOptions configure a GroupSource.
type GroupOptions struct {
	// Name of the group (--group): instances that share it share the calls.
	Name string
	// Partitioning splits the events (from --subject, --partitions, --partition-token).
	Partitioning Partitioning
	// Durable starts the names of the partitions' durable consumers (default
	// DefaultDurable): partition n of group g is read through <durable>-<g>-<n>.
	Durable string
	// AckWait and MaxAckPending of each partition's consumer, as in ConsumerOptions
	// (defaults 30 s and 10,000).
	AckWait       time.Duration
	MaxAckPending int
	// Settle waits until what the engine made of the calls of a partition revoked so
	// far is published and stored: a member hands a partition over only then, so that
	// the next owner sees in the hang stream what went out, and no two members publish
	// the same output (SPEC §3, "Exactly once"). cmd passes the engine's Sync followed
	// by the JetStream sink's Flush; nil waits for nothing.
	Settle func(context.Context) error
	// Heartbeat, MemberTTL and PinnedTTL (defaults DefaultHeartbeat, DefaultMemberTTL,
	// DefaultPinnedTTL).
	Heartbeat, MemberTTL, PinnedTTL time.Duration
	// ID names this member (default: the host name, the process id and a random part).
	ID string
}

func (g GroupOptions) withDefaults() GroupOptions {
	if g.Durable == "" {
		g.Durable = DefaultDurable
	}
	if g.AckWait <= 0 {
		g.AckWait = 30 * time.Second
	}
	if g.MaxAckPending <= 0 {
		g.MaxAckPending = 10_000
	}
	if g.Heartbeat <= 0 {
		g.Heartbeat = DefaultHeartbeat
	}
	if g.MemberTTL <= 0 {
		g.MemberTTL = DefaultMemberTTL
	}
	if g.PinnedTTL <= 0 {
		g.PinnedTTL = DefaultPinnedTTL
	}
	if g.ID == "" {
		g.ID = memberID()
	}
	return g
}

// memberID returns a name for this process that no other member has.
func memberID() string {
	host, _ := os.Hostname()
	if host == "" {
		host = "hangwatch"
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:]))
}

// ValidateGroupName checks a group name: letters, digits, - and _.
func ValidateGroupName(name string) error {
	if !validGroupName.MatchString(name) {
		return fmt.Errorf("%w: name %q: use letters, digits, - and _", ErrGroup, name)
	}
	return nil
}

// GroupSource reads the events of a group's share of the calls from a JetStream stream
// partitioned by NATS's partition() transform (SPEC §6). Every partition has a durable
// consumer with a priority group of pinned clients: the server delivers a partition's
// events to one member at a time. The members find each other by heartbeats on the
// core subject hangwatch.group.<stream>.<group>, compute the same balanced assignment of
// the partitions, and hand partitions over as they join and leave.
//
// # Taking a partition over
//
// The member that takes a partition over unpins its consumer (a member gone keeps its
// pin until the pin timeout otherwise), drops whatever calls it still had of it, holds
// every deadline (Intake.Hold), asks the consumer how far it delivered (its delivered
// sequence C0), rebuilds the partition's calls from the stream (the latest message of
// each of its subjects, up to the stream's last sequence as of then), releases, and
// consumes live. Everything delivered up to C0, to whichever member, was stored before
// the rebuild began, so the rebuild covers it; everything delivered after must come to
// this member, in order: a delivery after a gap or a step back in the consumer's
// sequence, or a consumer that delivered what never arrived while this member waits,
// means that another member received it (the pin moved) or that it was lost, and the
// partition is rebuilt again. A hang whose deadline passed meanwhile is published late,
// once: the rebuilt calls' outputs are checked against the hang stream.
//
// # Evidence
//
// A delivery's stored time is evidence for its own partition only: every partition
// keeps its own mark (in-order first deliveries, and proofs by the consumer's info as
// JetStreamSource makes them), and the engine is marked at the least of them (a
// partition being rebuilt counts as of when its rebuild began). So no deadline fires
// before every partition this member consumes has caught up with it.
//
// # Handing a partition over
//
// A member whose assignment no longer holds a partition stops consuming it, revokes its
// calls (Intake.Revoke: dropped, nothing published), waits for GroupOptions.Settle (its
// outputs stored in the hang stream), unpins the consumer, and only then stops claiming
// it in its heartbeats: the next owner, which waits for that, sees in the hang stream
// every output that went out.
type GroupSource struct {
	conn    *Conn
	o       SourceOptions
	so      StreamOptions
	g       GroupOptions
	part    Partitioning
	rejects *Rejects
	js      jetstream.JetStream
	stream  jetstream.Stream
	subject string // of the heartbeats
	pool    sync.Pool
	probe   chan struct{}
	kick    chan struct{} // a heartbeat is due now (the claims changed)
	changed chan struct{} // the view changed: rebalance
	fatal   chan error    // a session met an error nothing can recover from
	stats   groupCounters

	// vmu guards the view, which the heartbeat subscription updates.
	vmu  sync.Mutex
	view *view

	// mu guards the sessions, the claims and the marks; the intake's Mark and Revoke are
	// called under it, so that they enter the engine in the order they are decided.
	mu       sync.Mutex
	in       engine.Intake
	sessions map[int]*session
	claims   map[int]bool // what the heartbeats say this member consumes
	target   []int        // what the assignment gives this member; nil until it is known
	marked   time.Time    // the latest mark given
	running  bool         // Run runs: ready may be true
	sessWG   sync.WaitGroup
}

var (
	_ engine.Source = (*GroupSource)(nil)
	_ engine.Prober = (*GroupSource)(nil)
)

type groupCounters struct {
	jsSourceCounters
	takeovers, handovers, rebuilds atomic.Int64
	resyncs, stalls, badBeats      atomic.Int64
}

// GroupStats are the counters of a GroupSource.
type GroupStats struct {
	JetStreamStats
	// Owned is the number of partitions consumed live now; Target the number the
	// assignment gives this member; Members the live members this member hears.
	Owned, Target, Members int
	// Takeovers and Handovers count the partitions taken and handed over; Rebuilds the
	// rebuilds of a partition's calls from the stream, Resyncs those made again because
	// a partition's deliveries did not follow on (Stalls of them because its consumer
	// delivered elsewhere while this member waited).
	Takeovers, Handovers, Rebuilds, Resyncs, Stalls int64
	// BadHeartbeats counts the messages on the group's subject that were no heartbeat.
	BadHeartbeats int64
}

// groupMsg is a message of a partition as the engine sees it.
type groupMsg struct {
	m      jetstream.Msg
	stored time.Time
	part   int
	src    *GroupSource
	live   bool // acknowledged when done; a rebuild's ordered consumer takes no acks
}

func (m *groupMsg) Data() []byte                { return m.m.Data() }
func (m *groupMsg) Received() (time.Time, bool) { return m.stored, true }
func (m *groupMsg) Partition() int              { return m.part }
func (m *groupMsg) Done() {
	if m.live {
		m.src.settled(m.m.Ack())
	}
	m.src.put(m)
}
func (m *groupMsg) Reject(err error) {
	reason := m.src.rejects.Reject(m.m.Subject(), m.m.Data(), err)
	if m.live {
		m.src.settled(m.m.TermWithReason("bad input: " + reason.String()))
	}
	m.src.put(m)
}

func (g *GroupSource) put(m *groupMsg) {
	*m = groupMsg{src: g}
	g.pool.Put(m)
}

func (g *GroupSource) settled(err error) {
	if err != nil {
		g.stats.ackErrors.Add(1)
		g.o.Limited.Warn("could not acknowledge: the server will deliver the event again", zap.Error(err))
		return
	}
	g.stats.acked.Add(1)
}

// NewGroupSource returns the source of a member of group go.Name, reading the stream so
// describes through c. It creates the stream over the one subject of o when it is
// missing, with go.Partitioning's transform; a stream that exists must partition the same
// way (--partitions is fixed for the life of the stream), and one without a transform
// is given it (the events stored before are then in no partition). Creation is retried
// while the server does not answer. The partitions' consumers are made as they are
// taken over.
func NewGroupSource(ctx context.Context, c *Conn, o SourceOptions, so StreamOptions, gopts GroupOptions) (*GroupSource, error) {
	o = o.withDefaults()
	if err := ValidateGroupName(gopts.Name); err != nil {
		return nil, err
	}
	if len(o.Subjects) != 1 {
		return nil, fmt.Errorf("%w: a group reads one subject, whose call id token partitions it; got %d", ErrGroup, len(o.Subjects))
	}
	if gopts.Partitioning.Partitions() == 0 {
		return nil, fmt.Errorf("%w: no partitioning", ErrGroup)
	}
	if v := c.NATS().ConnectedServerVersion(); !atLeast(v, 2, 11) {
		return nil, fmt.Errorf("%w: the server runs nats-server %s: a group needs 2.11 or later (consumer priority groups with pinned clients)", ErrGroup, v)
	}
	gopts = gopts.withDefaults()
	g := &GroupSource{conn: c, o: o, so: so.withDefaults(), g: gopts, part: gopts.Partitioning,
		rejects: NewRejects(c.NATS(), o.DeadLetter, o.Logger, o.Limited), probe: make(chan struct{}, 1),
		kick: make(chan struct{}, 1), changed: make(chan struct{}, 1), fatal: make(chan error, 1),
		view: newView(gopts.ID, gopts.MemberTTL), sessions: map[int]*session{}, claims: map[int]bool{}}
	g.pool.New = func() any { return &groupMsg{src: g} }
	g.subject = "hangwatch.group." + g.so.Name + "." + gopts.Name
	js, err := jetstream.New(c.NATS())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrJetStream, err)
	}
	g.js = js
	// The stream takes only what the partitioning matches (voice.events.> is read as
	// voice.events.*.>): an event on a subject without a token after the call id would be
	// stored in no partition, and no member would ever read it; the stream refuses it
	// instead, and its publisher hears so.
	want := jetstream.StreamConfig{
		Name:              g.so.Name,
		Description:       "hangwatch: the latest event of each kind of each live call, partitioned by call",
		Subjects:          []string{g.part.Transform().Source},
		Retention:         jetstream.LimitsPolicy,
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		MaxMsgsPerSubject: g.so.PerSubject,
		MaxAge:            g.so.MaxAge,
		Replicas:          g.so.Replicas,
		SubjectTransform:  g.part.Transform(),
	}
	if g.stream, err = ensureStream(ctx, js, want, o.Logger); err != nil {
		return nil, err
	}
	have := g.stream.CachedInfo().Config
	switch {
	case g.part.sameTransform(have.SubjectTransform):
	case have.SubjectTransform == nil:
		upd := have
		upd.SubjectTransform = want.SubjectTransform
		if g.stream, err = js.UpdateStream(ctx, upd); err != nil {
			return nil, jsError("give stream "+g.so.Name+" the partitioning "+g.part.String(), err)
		}
		o.Logger.Warn("events stream updated to partition its subjects: the events stored before are in no partition, and their calls are not rebuilt",
			zap.String("stream", g.so.Name), zap.Stringer("transform", g.part))
	default:
		return nil, fmt.Errorf("%w: stream %s partitions as %s → %s, not as %s: the partitions are fixed for the life of the stream; give the --subject, --partitions and --partition-token it was made with, or another --stream",
			ErrGroup, g.so.Name, have.SubjectTransform.Source, have.SubjectTransform.Destination, g.part)
	}
	if !slices.Equal(have.Subjects, want.Subjects) {
		o.Logger.Warn("the events stream takes subjects the partitioning does not match: events stored on them are in no partition, and no member reads them",
			zap.String("stream", g.so.Name), zap.Strings("stream_subjects", have.Subjects), zap.String("partitioned", want.Subjects[0]))
	}
	o.Logger.Info("joining group", zap.String("group", gopts.Name), zap.String("member", gopts.ID),
		zap.Int("partitions", g.part.Partitions()), zap.Stringer("transform", g.part))
	return g, nil
}

// atLeast reports whether version (major.minor.patch, maybe with a suffix) is at least
// major.minor.
func atLeast(version string, major, minor int) bool {
	var ma, mi int
	if _, err := fmt.Sscanf(version, "%d.%d", &ma, &mi); err != nil {
		return false
	}
	return ma > major || ma == major && mi >= minor
}

// ID returns the name of this member.
func (g *GroupSource) ID() string { return g.g.ID }

// Probe implements engine.Prober.
func (g *GroupSource) Probe() {
	select {
	case g.probe <- struct{}{}:
	default:
	}
}

// Ready reports whether the member consumes live every partition the assignment gives
// it, and none is being rebuilt; if not, it says why.
func (g *GroupSource) Ready() (bool, string) {
	if !g.conn.NATS().IsConnected() {
		return false, "not connected to NATS"
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case !g.running:
		return false, "not consuming: starting or draining"
	case g.target == nil:
		return false, "joining the group: its members are not known yet"
	}
	for _, ss := range g.sessions {
		if ss.state == stateRebuilding {
			return false, fmt.Sprintf("rebuilding the calls of partition %d", ss.p)
		}
	}
	for _, p := range g.target {
		if ss := g.sessions[p]; ss == nil || ss.state != stateLive {
			return false, fmt.Sprintf("partition %d is not consumed yet (another member hands it over, or it is being rebuilt)", p)
		}
	}
	return true, ""
}

// Owned returns the number of partitions consumed live now.
func (g *GroupSource) Owned() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, ss := range g.sessions {
		if ss.state == stateLive {
			n++
		}
	}
	return n
}

// Run joins the group and consumes the partitions this member is given until ctx is
// done; then it drains them (the events already pulled are still delivered, until the
// drain timeout) and returns. Its heartbeats stop then, so the other members take its
// partitions over after the member TTL, or at once after Leave.
func (g *GroupSource) Run(ctx context.Context, in engine.Intake) error {
	g.in = in
	nc := g.conn.NATS()
	sub, err := nc.Subscribe(g.subject, g.heard)
	if err != nil {
		return fmt.Errorf("%w: subscribe %s: %w", ErrGroup, g.subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	g.mu.Lock()
	g.running = true
	g.mu.Unlock()
	doneAt := make(chan time.Time, 1)
	defer context.AfterFunc(ctx, func() { doneAt <- time.Now() })()

	var wg sync.WaitGroup
	bg, stopBg := context.WithCancel(ctx)
	wg.Go(func() { g.beat(bg) })
	wg.Go(func() { g.prover(bg) })

	started := time.Now()
	tick := time.NewTicker(g.g.Heartbeat)
	defer tick.Stop()
	var fatal error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-g.conn.Closed():
			fatal = g.conn.closedForGood(g.o.Logger, nil)
			break loop
		case fatal = <-g.fatal:
			break loop
		case <-tick.C:
		case <-g.changed:
		}
		// The first assignment waits until this member has heard the others once: a
		// fleet started at once agrees on it from the start.
		if time.Since(started) >= 2*g.g.Heartbeat {
			g.rebalance(ctx)
		}
	}
	// Stop every session: on a shutdown each drains what it pulled; on a fatal error,
	// nothing more comes anyway.
	stopped := time.Now()
	select {
	case stopped = <-doneAt:
	default:
	}
	g.mu.Lock()
	g.running = false
	for _, ss := range g.sessions {
		ss.drainBy = stopped.Add(g.o.DrainTimeout)
		ss.cancel()
	}
	g.mu.Unlock()
	g.sessWG.Wait()
	stopBg()
	wg.Wait()
	return fatal
}

// Leave tells the other members that this one leaves, so that they take its
// partitions over at once, and unpins them. Call it once Run has returned and the
// outputs are stored: the next owners then see them in the hang stream.
func (g *GroupSource) Leave(ctx context.Context) {
	g.mu.Lock()
	claimed := make([]int, 0, len(g.claims))
	for p := range g.claims {
		claimed = append(claimed, p)
	}
	clear(g.claims)
	g.mu.Unlock()
	data, _ := json.Marshal(heartbeat{ID: g.g.ID, Leaving: true})
	if err := g.conn.NATS().Publish(g.subject, data); err != nil {
		g.o.Logger.Warn("could not tell the group this member leaves: the others take its partitions over after the member TTL", zap.Error(err))
		return
	}
	for _, p := range claimed {
		g.unpin(ctx, p)
	}
	_ = g.conn.NATS().FlushWithContext(ctx)
	g.o.Logger.Info("left the group", zap.String("group", g.g.Name), zap.String("member", g.g.ID), zap.Ints("partitions", claimed))
}

// heard handles a message on the group's subject.
func (g *GroupSource) heard(m *nats.Msg) {
	hb, err := decodeHeartbeat(m.Data)
	if err != nil {
		g.stats.badBeats.Add(1)
		g.o.Limited.Warn("not a heartbeat on the group's subject: ignored", zap.String("subject", m.Subject), zap.Error(err))
		return
	}
	g.vmu.Lock()
	changed := g.view.heard(hb, time.Now())
	g.vmu.Unlock()
	if changed {
		select {
		case g.changed <- struct{}{}:
		default:
		}
	}
}

// beat publishes a heartbeat every interval, and at once when the claims change.
func (g *GroupSource) beat(ctx context.Context) {
	tick := time.NewTicker(g.g.Heartbeat)
	defer tick.Stop()
	for {
		g.mu.Lock()
		hb := heartbeat{ID: g.g.ID, Owned: make([]int, 0, len(g.claims))}
		for p := range g.claims {
			hb.Owned = append(hb.Owned, p)
		}
		g.mu.Unlock()
		slices.Sort(hb.Owned)
		data, _ := json.Marshal(hb)
		if err := g.conn.NATS().Publish(g.subject, data); err != nil {
			g.o.Limited.Warn("heartbeat", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-g.kick:
		}
	}
}

func (g *GroupSource) kickBeat() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

// rebalance hands over what the assignment no longer gives this member, and takes
// what it gives that no other member claims.
func (g *GroupSource) rebalance(ctx context.Context) {
	now := time.Now()
	g.vmu.Lock()
	if !g.view.valid(now) {
		// Not hearing itself, a member is cut off: it changes nothing until it hears again.
		g.vmu.Unlock()
		g.o.Limited.Warn("not hearing this member's own heartbeats: waiting to hear them before taking partitions (is the subject allowed?)",
			zap.String("subject", g.subject))
		return
	}
	members := g.view.live(now)
	target := assign(members, g.part.Partitions(), g.g.ID)
	free := make([]int, 0, len(target))
	for _, p := range target {
		if _, claimed := g.view.claimant(p, now); !claimed {
			free = append(free, p)
		}
	}
	g.vmu.Unlock()

	g.mu.Lock()
	changed := !slices.Equal(g.target, target) || g.target == nil
	g.target = target
	if target == nil {
		g.target = []int{}
	}
	var handOver []*session
	for p, ss := range g.sessions {
		if !slices.Contains(target, p) {
			handOver = append(handOver, ss)
		}
	}
	g.mu.Unlock()
	if changed {
		g.o.Logger.Info("group assignment", zap.String("member", g.g.ID), zap.Int("members", len(members)), zap.Ints("partitions", target))
	}
	if len(handOver) > 0 {
		g.handOver(ctx, handOver)
	}
	for _, p := range free {
		g.mu.Lock()
		_, have := g.sessions[p]
		if !have && ctx.Err() == nil {
			g.take(ctx, p)
		}
		g.mu.Unlock()
	}
}

// take starts consuming partition p; g.mu is held.
func (g *GroupSource) take(ctx context.Context, p int) {
	sctx, cancel := context.WithCancel(ctx)
	ss := &session{g: g, p: p, name: fmt.Sprintf("%s-%s-%d", g.g.Durable, g.g.Name, p), filter: g.part.Filter(p),
		cancel: cancel, done: make(chan struct{}), state: stateIdle}
	g.sessions[p] = ss
	g.claims[p] = true
	g.stats.takeovers.Add(1)
	g.kickBeat()
	g.sessWG.Go(func() { ss.run(sctx) })
}

// handOver stops consuming the partitions of sessions, drops their calls, waits until
// what was made of them is stored, unpins them, and stops claiming them.
func (g *GroupSource) handOver(ctx context.Context, sessions []*session) {
	parts := make([]int, 0, len(sessions))
	for _, ss := range sessions {
		ss.cancel()
		<-ss.done
		g.mu.Lock()
		g.in.Revoke(ss.p) // before it stops counting for the marks
		delete(g.sessions, ss.p)
		g.mu.Unlock()
		parts = append(parts, ss.p)
	}
	if g.g.Settle != nil {
		sctx, cancel := context.WithTimeout(ctx, settleTimeout)
		if err := g.g.Settle(sctx); err != nil {
			g.o.Logger.Warn("handing partitions over before their outputs are stored: the next owner may publish one again, which the hang stream drops within its duplicate window",
				zap.Ints("partitions", parts), zap.Error(err))
		}
		cancel()
	}
	for _, p := range parts {
		g.unpin(ctx, p)
	}
	g.mu.Lock()
	for _, p := range parts {
		delete(g.claims, p)
	}
	g.mu.Unlock()
	g.stats.handovers.Add(int64(len(parts)))
	g.kickBeat()
	g.o.Logger.Info("partitions handed over", zap.String("member", g.g.ID), zap.Ints("partitions", parts))
}

// unpin unpins partition p's consumer, so that the next member that pulls is pinned at
// once. An error (nothing pinned, no such consumer yet) changes nothing.
func (g *GroupSource) unpin(ctx context.Context, p int) {
	ctx, cancel := context.WithTimeout(ctx, infoTimeout)
	defer cancel()
	name := fmt.Sprintf("%s-%s-%d", g.g.Durable, g.g.Name, p)
	if err := g.stream.UnpinConsumer(ctx, name, pinGroup); err != nil {
		g.o.Logger.Debug("unpin", zap.String("consumer", name), zap.Error(err))
	}
}

// markLocked marks the engine at the least evidence of the partitions with calls in
// it: a live one's mark, or when a rebuild began; with none, now. g.mu is held.
func (g *GroupSource) markLocked() {
	var least time.Time
	some := false
	for _, ss := range g.sessions {
		var t time.Time
		switch ss.state {
		case stateRebuilding:
			t = ss.since
		case stateLive:
			t = ss.mark
		default:
			continue
		}
		if !some || t.Before(least) {
			least, some = t, true
		}
	}
	if !some {
		least = g.o.Now()
	}
	if least.After(g.marked) {
		g.marked = least
		g.in.Mark(least)
	}
}

// prover proves the partitions' progress on request and every ProbeEvery.
func (g *GroupSource) prover(ctx context.Context) {
	tick := time.NewTicker(g.o.ProbeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-g.probe:
		case <-tick.C:
		}
		g.proveAll(ctx)
	}
}

// proveAll asks the consumer of every live partition how far it delivered, then marks.
func (g *GroupSource) proveAll(ctx context.Context) {
	g.mu.Lock()
	live := make([]*session, 0, len(g.sessions))
	for _, ss := range g.sessions {
		if ss.state == stateLive && ss.cons != nil {
			live = append(live, ss)
		}
	}
	g.mu.Unlock()
	sem := make(chan struct{}, proofConcurrency)
	var wg sync.WaitGroup
	for _, ss := range live {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ss.prove(ctx)
		})
	}
	wg.Wait()
	g.mu.Lock()
	g.markLocked()
	g.mu.Unlock()
}

// Stats returns the source's counters.
func (g *GroupSource) Stats() GroupStats {
	st := GroupStats{
		JetStreamStats: g.JetStreamStats(),
		Owned:          g.Owned(),
		Takeovers:      g.stats.takeovers.Load(),
		Handovers:      g.stats.handovers.Load(),
		Rebuilds:       g.stats.rebuilds.Load(),
		Resyncs:        g.stats.resyncs.Load(),
		Stalls:         g.stats.stalls.Load(),
		BadHeartbeats:  g.stats.badBeats.Load(),
	}
	g.mu.Lock()
	st.Target = len(g.target)
	g.mu.Unlock()
	g.vmu.Lock()
	st.Members = len(g.view.live(time.Now()))
	g.vmu.Unlock()
	return st
}

// JetStreamStats returns the counters the source shares with JetStreamSource.
func (g *GroupSource) JetStreamStats() JetStreamStats {
	c := &g.stats.jsSourceCounters
	return JetStreamStats{
		RejectStats:    g.rejects.Stats(),
		Replayed:       c.replayed.Load(),
		ReplaySkipped:  c.replaySkipped.Load(),
		Acked:          c.acked.Load(),
		AckErrors:      c.ackErrors.Load(),
		Redelivered:    c.redelivered.Load(),
		LostDeliveries: c.lost.Load(),
		ConsumeErrors:  c.consumeError.Load(),
		Probes:         c.probes.Load(),
		ProbeErrors:    c.probeErrors.Load(),
	}
}
