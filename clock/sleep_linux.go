package clock

import (
	"syscall"
	"time"
)

// prSetTimerSlack is prctl's PR_SET_TIMERSLACK: the thread's timer slack, in ns.
const prSetTimerSlack = 29

// sleep sleeps d in the kernel. The thread's timer slack (50 µs by default, which the
// kernel adds to a sleep to batch wake-ups) is set to 1 ns first: a thread runs many
// goroutines one after another, so the setting is made on the thread that sleeps, each
// time (a system call of well under a microsecond).
func sleep(d time.Duration) {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerSlack, 1, 0)
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
