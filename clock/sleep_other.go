//go:build !linux

package clock

import "time"

// sleep sleeps d.
func sleep(d time.Duration) { time.Sleep(d) }
