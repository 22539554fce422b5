// Package bench is hangwatch's load generator: it measures, side by side in one run,
// how fast, lean and exact hangwatch is under load compared with the ceiling of what
// NATS delivers (a raw nats.go subscriber) and with the obvious implementation
// (bench/baseline). The program bench/cmd/loadgen drives it; bench/README.md explains
// the method and every figure.
//
// Each subject under test runs in a process of its own (the load generator runs itself
// with --serve, or the hangwatch binary), connected over TCP to the NATS server of the
// load generator, so that its CPU time, RSS and heap are its own. The phases run one
// subject after the other, each fed the identical stream:
//   - throughput: ~30 KB conversation-updates of the simulation, as fast as the subject
//     keeps up, in a closed loop (markers that the subject rejects as bad input come
//     back on its dead-letter subject and tell how far it is);
//   - memory: calls brought to idle then armed, and the subject's heap after GC;
//   - realtime: internal/sim's Runner on the real clock, the hangs that come back
//     tallied against the ground truth, with their detection lags.
package bench
