package engine

import "github.com/hangwatch/hangwatch/detector"

// Thresholds says which configuration applies to a call, by its team and assistant
// (SPEC §2, thresholds per team and assistant). The engine asks at every event of a
// call; a change applies to the deadlines armed after it. For must be fast and safe for
// concurrent use, and never return nil.
type Thresholds interface {
	For(teamID, assistantID string) *detector.Config
}

// fixed is the Thresholds of an engine without per-team configuration.
type fixed struct{ cfg detector.Config }

func (f *fixed) For(string, string) *detector.Config { return &f.cfg }
