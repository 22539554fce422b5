//go:build race

package wire

// raceEnabled: the race detector makes sync.Pool drop buffers at random.
const raceEnabled = true
