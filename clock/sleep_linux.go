package clock

import (
	"syscall"
	"time"
)

// sleep sleeps d in the kernel, which wakes the thread within its timer slack.
func sleep(d time.Duration) {
	ts := syscall.NsecToTimespec(int64(d))
	for syscall.Nanosleep(&ts, &ts) == syscall.EINTR {
	}
}
