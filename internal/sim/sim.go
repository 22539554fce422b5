package sim

import (
	"fmt"
	"strings"
	"time"
)

// Sim is a validated simulation: the configuration, the derived timings and the pieces
// of JSON that every payload shares, rendered once. It is immutable and safe for
// concurrent use; Scripts, Runners and Truths are made from it.
type Sim struct {
	cfg     Config
	p       params
	lay     layout
	subject []subjectPart

	team       []byte   // quoted
	assistants [][]byte // quoted ids
	// assistantObjects are the full assistant objects of status-updates, by assistant.
	assistantObjects [][]byte
	clinics          [][]byte // quoted
	campaigns        [][]byte // quoted
	welcomes         [][]byte // escaped, by clinic then phrase
	users            [][]byte // escaped texts
	hellos           [][]byte
	replies          [][]byte
	userFillers      [][]byte
	replyFillers     [][]byte
}

// New validates cfg and returns the simulation it describes.
func New(cfg Config) (*Sim, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.AssistantIDs = append([]string(nil), cfg.AssistantIDs...)
	s := &Sim{
		cfg:          cfg,
		p:            newParams(cfg),
		subject:      parseSubject(cfg.Subject),
		team:         quoted(cfg.TeamID),
		clinics:      quoteAll(clinics),
		campaigns:    quoteAll(campaigns),
		users:        escapeAll(userPhrases),
		hellos:       escapeAll(helloPhrases),
		replies:      escapeAll(replyPhrases),
		userFillers:  escapeAll(userFillers),
		replyFillers: escapeAll(replyFillers),
	}
	for _, id := range cfg.AssistantIDs {
		s.assistants = append(s.assistants, quoted(id))
		s.assistantObjects = append(s.assistantObjects, assistantObject(id))
	}
	for _, c := range clinics {
		for _, w := range welcomePhrases {
			s.welcomes = append(s.welcomes, escaped(fmt.Sprintf(w, c)))
		}
	}
	s.lay = s.fitLayout()
	return s, nil
}

// Script returns the script of call index (below 2^48) when it starts at start,
// truncated to the millisecond. The same index and start give the same script, byte
// for byte.
func (s *Sim) Script(index uint64, start time.Time) Script {
	return s.scriptAt(index, start.UnixMilli())
}

// EventRate returns the mean number of events per second that one live call
// publishes, estimated over the first thousand calls. A Runner of Calls calls publishes
// about Calls×EventRate events per second once its ramp is over, so a load generator
// that wants a given event rate can size Calls by it.
func (s *Sim) EventRate() float64 {
	var events, ms int64
	for i := range uint64(1000) {
		sc := s.scriptAt(i, 0)
		c := sc.cursor()
		for c.next(&s.p).kind != msgEnd {
		}
		events += int64(c.msgs) + 2 // and the status-update and the end-of-call-report
		ms += c.at
	}
	return float64(events) * 1000 / float64(ms)
}

// scriptAt is Script with the start in Unix milliseconds.
func (s *Sim) scriptAt(index uint64, start int64) Script {
	index &= maxIndex
	cs := callSeed(s.cfg.Seed, index)
	return Script{
		sim:   s,
		index: index,
		cs:    cs,
		start: start,
		turns: int32(between(draw(cs, 0, saltTurns), s.p.turnsMin, s.p.turnsMax)),
	}
}

// callIDLen is the length of a call id: "WC-" and a UUID.
const callIDLen = 3 + 36

// maxIndex bounds call indexes: the last group of a call id holds the index.
const maxIndex = 1<<48 - 1

// CallID returns the id of call index, a UUID-shaped token that is valid in a NATS
// subject: "WC-" then 20 hex digits drawn from the seed and the index, then the index
// in 12 hex digits, so that ParseCallID can recover it.
func (s *Sim) CallID(index uint64) string { return string(s.AppendCallID(nil, index)) }

// AppendCallID appends the id of call index (see CallID) to b. Every call id has the
// same length, so that a replay can write one over another in place.
func (s *Sim) AppendCallID(b []byte, index uint64) []byte {
	h := draw(callSeed(s.cfg.Seed, index), 0, saltCallID)
	b = append(b, "WC-"...)
	b = appendHex(b, h>>32, 8)
	b = append(b, '-')
	b = appendHex(b, h>>16, 4)
	b = append(b, '-', '4')
	b = appendHex(b, h>>4, 3)
	b = append(b, '-')
	b = appendHex(b, 0x8000|h&0x3fff, 4)
	b = append(b, '-')
	return appendHex(b, index&maxIndex, 12)
}

// ParseCallID returns the index of a call id of this simulation (same seed), and false
// for any other id.
func (s *Sim) ParseCallID(id string) (uint64, bool) {
	if len(id) != callIDLen {
		return 0, false
	}
	var index uint64
	for _, c := range []byte(id[callIDLen-12:]) {
		switch {
		case c >= '0' && c <= '9':
			index = index<<4 | uint64(c-'0')
		case c >= 'a' && c <= 'f':
			index = index<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	var buf [callIDLen]byte
	if string(s.AppendCallID(buf[:0], index)) != id {
		return 0, false
	}
	return index, true
}

// subjectPart is a piece of the subject layout: a literal, or a placeholder.
type subjectPart struct {
	lit  string
	hole byte // 0 for a literal, 'c' for {callId}, 't' for {type}
}

func parseSubject(layout string) []subjectPart {
	var parts []subjectPart
	for layout != "" {
		i := strings.IndexByte(layout, '{')
		if i < 0 {
			parts = append(parts, subjectPart{lit: layout})
			break
		}
		if i > 0 {
			parts = append(parts, subjectPart{lit: layout[:i]})
			layout = layout[i:]
		}
		switch {
		case strings.HasPrefix(layout, "{callId}"):
			parts = append(parts, subjectPart{hole: 'c'})
			layout = layout[len("{callId}"):]
		case strings.HasPrefix(layout, "{type}"):
			parts = append(parts, subjectPart{hole: 't'})
			layout = layout[len("{type}"):]
		default:
			parts = append(parts, subjectPart{lit: "{"})
			layout = layout[1:]
		}
	}
	return parts
}

func quoteAll(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = quoted(s)
	}
	return out
}

func escapeAll(ss []string) [][]byte {
	out := make([][]byte, len(ss))
	for i, s := range ss {
		out[i] = escaped(s)
	}
	return out
}
