package transport

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/internal/natstest"
)

// The failover tests of a group (SPEC §6): three members, each an engine with package
// wire's decoder, a GroupSource and the JetStream sink, as cmd wires them, in the test's
// process, on a real three-node JetStream cluster with replicated streams. A small
// pipeline starts a call every 100 ms for 4.5 s: a third answered in time, a third
// stalling and then answered (hang, hang-resolved), a third stalling and ending
// unanswered (hang, hang-unresolved). 1.5 s in, a fault strikes. A plain core
// subscriber of the outputs must receive every output it should, once, and nothing
// else; how late each hang reached it after its deadline is logged.
//
// A member is killed in the process by closing its connection at once: the server
// sees it go as it sees a process killed by SIGKILL go, with what it pulled
// unacknowledged and what it queued unpublished, and nothing it does afterwards reaches
// NATS.

const (
	clusterPartitions = 16
	trafficFor        = 4500 * time.Millisecond
	callEvery         = 100 * time.Millisecond
	faultAt           = 1500 * time.Millisecond
)

// groupRun is one test's group on the shared cluster.
type groupRun struct {
	t       *testing.T
	c       *testCluster
	gs      groupSetup
	members []*testMember
}

// startGroup starts three members at once, member i on server i (or through urls[i]),
// and waits until they share the partitions.
func startGroup(t *testing.T, c *testCluster, ns string, urls ...string) *groupRun {
	t.Helper()
	r := &groupRun{t: t, c: c, gs: newGroupSetup(t, ns, clusterPartitions), members: make([]*testMember, 3)}
	// A fleet started at once: the same stream and consumer creates, together.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range r.members {
		url := c.url(i)
		if i < len(urls) && urls[i] != "" {
			url = urls[i]
		}
		wg.Go(func() { r.members[i], errs[i] = r.gs.newMember(t, fmt.Sprintf("m%d", i), url) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	waitBalanced(t, clusterPartitions, r.members...)
	// At the end, all at once: one by one, each would hand its partitions to the next.
	t.Cleanup(func() {
		var wg sync.WaitGroup
		for _, m := range r.members {
			wg.Go(m.stop)
		}
		wg.Wait()
	})
	return r
}

// drive runs the traffic with a subscriber and a publisher on clients, strikes with
// fault at faultAt, and judges what the subscriber received.
func (r *groupRun) drive(what string, clients string, fault func()) verdict {
	t := r.t
	t.Helper()
	received := r.gs.subscribe(t, r.c.client(clients))
	tr := newTraffic(t, r.c.client(clients), r.gs)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tr.run(ctx, trafficFor, callEvery)
	if fault != nil {
		time.Sleep(faultAt)
		fault()
	}
	calls := tr.wait()
	received.settle(calls, 20*time.Second)
	v := judge(calls, received.all())
	v.report(t, what, len(calls))
	var st []GroupStats
	for _, m := range r.members {
		st = append(st, m.src.Stats())
	}
	dup, out := sinkTotals(r.members...)
	t.Logf("%s: partitions owned %v; the hang stream dropped %d outputs published twice, %d were found out already", what,
		owned(r.members...), dup, out)
	for i, s := range st {
		t.Logf("  member %d: takeovers %d, handovers %d, rebuilds %d (resyncs %d, stalls %d), replayed %d, redelivered %d",
			i, s.Takeovers, s.Handovers, s.Rebuilds, s.Resyncs, s.Stalls, s.Replayed, s.Redelivered)
	}
	return v
}

func TestGroupCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("a JetStream cluster and five failovers: about a minute")
	}
	c := startCluster(t, 3)

	t.Run("steady", func(t *testing.T) {
		r := startGroup(t, c, "steady")
		r.drive("steady state", c.url(0), nil)
	})

	t.Run("kill", func(t *testing.T) {
		r := startGroup(t, c, "kill")
		r.drive("kill -9 of a member", c.url(1), func() { r.members[0].kill() })
		waitBalanced(t, clusterPartitions, r.members[1:]...)
	})

	t.Run("restart", func(t *testing.T) {
		r := startGroup(t, c, "restart")
		r.drive("restart of a member", c.url(1), func() {
			r.members[0].stop()
			time.Sleep(time.Second)
			m, err := r.gs.newMember(t, "m3", c.url(0))
			if err != nil {
				t.Error(err)
				return
			}
			r.members[0] = m
		})
		waitBalanced(t, clusterPartitions, r.members...)
	})

	t.Run("cut", func(t *testing.T) {
		proxy := natstest.StartProxy(t, c.addr(2))
		r := startGroup(t, c, "cut", "", "", proxy.URL())
		r.drive("network cut of a member", c.url(0), func() {
			// Longer than the member TTL: its partitions move, then come back.
			proxy.Freeze()
			time.Sleep(3 * time.Second)
			proxy.Thaw()
		})
		waitBalanced(t, clusterPartitions, r.members...)
	})

	// Last: the cluster is left one server short.
	t.Run("leader", func(t *testing.T) {
		r := startGroup(t, c, "leader")
		leader := c.leaderOf(r.gs.stream)
		other := (leader + 1) % 3
		t.Logf("the events stream's leader is server %d; the hang stream's, server %d", leader, c.leaderOf(r.gs.hang))
		r.drive("loss of the events stream leader's node", c.url(other), func() { c.stop(leader) })
	})
}
