package sim

// The simulation draws its randomness from a hash of (call seed, key, salt) instead of
// a stream generator: any draw of a call can be recomputed on its own, in any order,
// which is what lets a history be regenerated from a cursor of a few integers.

// Salts keep the draws of one key independent of each other.
const (
	saltTurns uint64 = iota + 1
	saltKind
	saltThink
	saltReply
	saltLate
	saltSilent
	saltSilentAt
	saltPostHello
	saltPostHelloAt
	saltHangUp
	saltHelloGap
	saltHelloCount
	saltWelcome
	saltEnd
	saltText
	saltTextLen
	saltFiller
	saltMetrics
	saltRandID
	saltGen
	saltCallID
	saltPhone
	saltAssistant
	saltClinic
	saltTool
	saltToolReply
	saltToolID
	saltEndedReason
	saltToolName
)

// mix is the finalizer of splitmix64: a bijection of uint64 with good avalanche.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// callSeed returns the seed of call index of a run seeded with seed.
func callSeed(seed, index uint64) uint64 {
	return mix(mix(seed+0x9e3779b97f4a7c15) ^ (index * 0xd1b54a32d192ed03))
}

// draw returns the draw of key and salt of the call seeded with cs.
func draw(cs, key, salt uint64) uint64 {
	return mix(cs ^ mix(key*0x9e3779b97f4a7c15+salt*0xc2b2ae3d27d4eb4f))
}

// between maps a draw uniformly onto [lo, hi]; it returns lo when hi <= lo.
func between(h uint64, lo, hi int64) int64 {
	if hi <= lo {
		return lo
	}
	return lo + int64(h%uint64(hi-lo+1))
}

// chance reports whether a draw falls below share (a probability in [0, 1]). Shares are
// turned into thresholds once, in newParams, so that this costs one comparison.
func chance(h uint64, threshold uint64) bool { return h < threshold }

// threshold returns the draw threshold of a probability: chance(h, threshold(p)) is true
// with probability p.
func threshold(p float64) uint64 {
	switch {
	case p <= 0:
		return 0
	case p*0x1p64 >= 0x1p64:
		return ^uint64(0)
	}
	return uint64(p * 0x1p64)
}
