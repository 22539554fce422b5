package transport

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/cespare/xxhash/v2"
)

// The members of a group find each other by heartbeats on a core NATS subject: each
// says, every heartbeat interval, who it is and which partitions it consumes. A member
// unheard for the member TTL is gone; one that says it leaves is gone at once. Every
// member computes the same assignment of the partitions from the same set of live
// members, takes the partitions assigned to it once no other live member claims them,
// and hands over those assigned elsewhere. The server's consumer groups (pinned clients)
// make sure that, whatever the members believe, one of them at a time receives a
// partition's events.

// heartbeat is what a member publishes on the group's subject.
type heartbeat struct {
	ID      string `json:"id"`
	Owned   []int  `json:"owned,omitempty"`
	Leaving bool   `json:"leaving,omitempty"`
}

// decodeHeartbeat decodes a heartbeat; what is not one (another program on the subject)
// is an error, and ignored.
func decodeHeartbeat(data []byte) (heartbeat, error) {
	var hb heartbeat
	if err := json.Unmarshal(data, &hb); err != nil {
		return heartbeat{}, fmt.Errorf("decode heartbeat: %w", err)
	}
	if hb.ID == "" {
		return heartbeat{}, fmt.Errorf("decode heartbeat: no id")
	}
	return hb, nil
}

// memberState is what the latest heartbeat of a member said, and when it came.
type memberState struct {
	heard time.Time
	owned []int
}

// view is a member's view of its group: who is alive and what each claims. It is a
// plain value, told what was heard and when; the caller locks it.
type view struct {
	self    string
	ttl     time.Duration
	members map[string]memberState
}

func newView(self string, ttl time.Duration) *view {
	return &view{self: self, ttl: ttl, members: map[string]memberState{}}
}

// heard records a heartbeat heard at at. It reports whether the set of live members
// changed.
func (v *view) heard(hb heartbeat, at time.Time) bool {
	old, known := v.members[hb.ID]
	wasLive := known && at.Sub(old.heard) <= v.ttl
	if hb.Leaving {
		delete(v.members, hb.ID)
		return wasLive
	}
	v.members[hb.ID] = memberState{heard: at, owned: hb.Owned}
	return !wasLive || !slices.Equal(old.owned, hb.Owned)
}

// valid reports whether the view can be trusted at at: the member hears its own
// heartbeats, so it is connected, and hears what the others say.
func (v *view) valid(at time.Time) bool {
	m, ok := v.members[v.self]
	return ok && at.Sub(m.heard) <= v.ttl
}

// live returns the members heard within the TTL, in order, and forgets the others.
func (v *view) live(at time.Time) []string {
	ids := make([]string, 0, len(v.members))
	for id, m := range v.members {
		if at.Sub(m.heard) > v.ttl {
			delete(v.members, id)
			continue
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// claimant returns the live member other than self that claims partition p, if any.
func (v *view) claimant(p int, at time.Time) (string, bool) {
	for id, m := range v.members {
		if id != v.self && at.Sub(m.heard) <= v.ttl && slices.Contains(m.owned, p) {
			return id, true
		}
	}
	return "", false
}

// assign returns the partitions of member in a balanced assignment of partitions
// over members (in order): each partition goes to the member that ranks it highest
// (rendezvous hashing) among those not yet holding their share — partitions/members,
// one more for the first partitions%members members. Every member computes the same
// assignment from the same members, and a member that joins or leaves moves few
// partitions.
func assign(members []string, partitions int, member string) []int {
	n := len(members)
	if n == 0 {
		return nil
	}
	share := make([]int, n)
	for i := range share {
		share[i] = partitions / n
		if i < partitions%n {
			share[i]++
		}
	}
	var mine []int
	for p := range partitions {
		best, bestScore := -1, uint64(0)
		for i, m := range members {
			if share[i] == 0 {
				continue
			}
			if s := rank(m, p); best < 0 || s > bestScore {
				best, bestScore = i, s
			}
		}
		share[best]--
		if members[best] == member {
			mine = append(mine, p)
		}
	}
	return mine
}

// rank is how much member wants partition p.
func rank(member string, p int) uint64 {
	var buf [64]byte
	b := append(buf[:0], member...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(p), 10)
	return xxhash.Sum64(b)
}
