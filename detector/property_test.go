package detector

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// seeds is how many random calls each property test checks.
const seeds = 2000

// TestCallDeliveryInvariance is the property of issue 11: however a call's snapshots are
// delivered (duplicated, reordered, dropped when a newer one arrives at the same
// instant, cut to a sliding window, rewritten in place), the verdicts are those of the
// in-order delivery of whole histories.
//
// Every message reaches the engine within 300 ms of its own timestamp, below the max lag,
// so that it is anchored at its own time whichever event first shows it: the
// perturbations keep what the evidence is and when it comes, and change only its form.
// A snapshot is dropped only when a newer one arrives at the same instant, for the same
// reason: a snapshot lost for good is evidence lost, which changes verdicts rightly.
//
// The outputs must also carry the same events (named by their publish time), except
// when events have no timestamp: a stale copy that differs from the snapshot applied
// only by a message rewritten before its last one (same last message, same length) is
// then indistinguishable from a rewrite in place (SPEC §2 orders such snapshots by their
// last message and length alone), and may be applied. The verdicts stay, since a turn
// seen answered stays answered; the history an output carries may be that copy's.
func TestCallDeliveryInvariance(t *testing.T) {
	for seed := range uint64(seeds) {
		rng := rand.New(rand.NewPCG(seed, 11))
		c := genCall(rng, 300)
		want := c.verdicts(c.inOrder(), c.timed)
		for range 3 {
			d, how := perturb(rng, &c)
			if got := c.verdicts(d, c.timed); !slices.Equal(got, want) {
				t.Fatalf("seed %d, delivery %s: verdicts differ\n got: %v\nwant: %v\ncall:\n%v\ndelivery:\n%v",
					seed, how, got, want, &c, deliveryString(d))
			}
		}
	}
}

// perturb returns a random delivery of c other than the in-order one, and what it did.
func perturb(rng *rand.Rand, c *gcall) ([]delivery, string) {
	d := c.inOrder()
	var how []string
	isSnap := func(e delivery) bool { return e.i < len(c.snaps) }
	on := func(name string) bool {
		if rng.IntN(2) == 0 {
			return false
		}
		how = append(how, name)
		return true
	}
	if on("drop") { // a snapshot dropped when a newer one arrives at the same instant
		for k := 0; k+1 < len(d); k++ {
			if isSnap(d[k]) && isSnap(d[k+1]) && d[k].at == d[k+1].at && rng.IntN(2) == 0 {
				d = slices.Delete(d, k, k+1)
				k--
			}
		}
	}
	if on("swap") { // snapshots of the same instant arrive newest first
		for k := 0; k+1 < len(d); k++ {
			if isSnap(d[k]) && isSnap(d[k+1]) && d[k].at == d[k+1].at && rng.IntN(2) == 0 {
				d[k], d[k+1] = d[k+1], d[k]
				k++
			}
		}
	}
	if c.ids && on("rewrite") {
		d = rewrite(rng, c, d)
	}
	if on("window") {
		bound := c.windowBound()
		k := bound + rng.IntN(4)
		how[len(how)-1] = fmt.Sprintf("window(%d, bound %d)", k, bound)
		for i := range d {
			d[i].msgs = window(k)(d[i].msgs)
		}
	}
	if on("duplicate") { // the same event twice in a row
		for k := 0; k < len(d); k++ {
			if rng.IntN(5) == 0 {
				d = slices.Insert(d, k+1, d[k])
				k++
			}
		}
	}
	if on("stale") { // a copy of an event arrives again, after newer ones
		for k := 0; k < len(d); k++ {
			if rng.IntN(6) != 0 || k+1 >= len(d) {
				continue
			}
			m := k + 1 + rng.IntN(len(d)-k-1) // after d[m], before d[m+1]
			if !c.timed && !olderBySPEC(d[k].msgs, d[m].msgs) {
				continue
			}
			dup := d[k]
			dup.at = d[m].at
			if m+1 < len(d) {
				dup.at += rng.Int64N(d[m+1].at - d[m].at + 1)
			}
			d = slices.Insert(d, m+1, dup)
		}
	}
	if len(how) == 0 {
		return perturb(rng, c)
	}
	return d, strings.Join(how, "+")
}

// olderBySPEC reports whether SPEC §2 orders a snapshot without a timestamp, msgs, older
// than the one before it, prev: it ends with a message prev holds, or its last message's
// own time is not after prev's. One that ends with a message prev lacks is newer by the
// rule (a sliding window moved past prev's end, after a snapshot lost or swapped): a
// stale copy of a window older than prev shows nothing that says it is older, so such a
// copy is not a delivery whose verdicts can be those of the in-order one.
func olderBySPEC(msgs, prev []msg) bool {
	last, ok := lastRead(msgs)
	if !ok {
		return true
	}
	key := keyOf(last, roleOf(last))
	if slices.ContainsFunc(prev, func(m msg) bool { return roleOf(m) != 0 && keyOf(m, roleOf(m)) == key }) {
		return true
	}
	p, ok := lastRead(prev)
	return ok && last.ts != noTS && p.ts != noTS && last.ts <= p.ts
}

// lastRead returns the last message of msgs that detection reads.
func lastRead(msgs []msg) (msg, bool) {
	for i := len(msgs) - 1; i >= 0; i-- {
		if roleOf(msgs[i]) != 0 {
			return msgs[i], true
		}
	}
	return msg{}, false
}

// rewrite edits, in later snapshots, the text of messages that earlier snapshots of the
// delivery showed (same messageId), and empties some replies that earlier snapshots
// showed: a turn seen answered stays answered.
func rewrite(rng *rand.Rand, c *gcall, d []delivery) []delivery {
	seen := map[string]bool{} // ids shown by an earlier delivered snapshot
	var prevTail string       // the last message of the previous snapshot that detection reads
	prevAt := int64(-1)
	for k := range d {
		if d[k].i == len(c.snaps) {
			continue
		}
		msgs := slices.Clone(d[k].msgs)
		// A reply is emptied only in a snapshot newer by its timestamp, and never the tail
		// of the one before it: without timestamps, a snapshot is newer when it holds that
		// tail, which an emptied reply no longer is.
		canHide := d[k].at > prevAt
		for j := range msgs {
			m := &msgs[j]
			switch r := roleOf(*m); {
			case !seen[m.id]:
			case r == RoleReply && canHide && m.id != prevTail && rng.IntN(8) == 0:
				m.text = ""
			case (r == RoleReply || r == RoleUser) && rng.IntN(4) == 0:
				m.text += " (edited)"
			}
		}
		for _, m := range d[k].msgs {
			if roleOf(m) != 0 {
				seen[m.id], prevTail = true, m.id
			}
		}
		d[k].msgs, prevAt = msgs, d[k].at
	}
	return d
}

// windowBound returns the narrowest sliding window that shows, in every snapshot, the
// first user turn of the stretch that any snapshot before it left unanswered (back to the
// latest one published earlier, since the snapshots of one instant may be dropped or
// arrive in any order) and of its own. A narrower window can cut the first turn of an
// unanswered stretch and the tool calls after it: its stage is then unknowable from
// the history, and so are the turns a reply in it answers. No detector can give the
// verdicts of the whole history from less.
func (c *gcall) windowBound() int {
	bound := 1
	for i, s := range c.snaps {
		for j := i; j >= 0; j-- {
			if k := firstUnanswered(c.snaps[j].msgs); k >= 0 {
				key := keyOf(c.snaps[j].msgs[k], RoleUser)
				at := slices.IndexFunc(s.msgs, func(m msg) bool { return roleOf(m) == RoleUser && keyOf(m, RoleUser) == key })
				if at >= 0 {
					bound = max(bound, len(s.msgs)-at)
				}
			}
			if c.snaps[j].at < s.at {
				break
			}
		}
	}
	return bound
}

// firstUnanswered returns the position of the first user turn after the last reply of a
// history (SPEC §2), or -1.
func firstUnanswered(h []msg) int {
	first := -1
	for i, m := range h {
		switch roleOf(m) {
		case RoleReply:
			first = -1
		case RoleUser:
			if first < 0 {
				first = i
			}
		}
	}
	return first
}

func deliveryString(d []delivery) string {
	var b strings.Builder
	for _, e := range d {
		fmt.Fprintf(&b, "  %6d: #%d", e.at, e.i)
		for _, m := range e.msgs {
			fmt.Fprintf(&b, " %s/%s%q", m.role, m.id, m.text)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
