package transport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of a group (SPEC §6).
const (
	// DefaultPartitions is the default of --partitions.
	DefaultPartitions = 16
	// DefaultPartitionToken is the default of --partition-token: the call id token of
	// voice.events.<callId>.<type>.
	DefaultPartitionToken = 3
	// MaxPartitions bounds --partitions: each partition is a durable consumer.
	MaxPartitions = 1024
)

// ErrPartitioning is wrapped by the errors of a partitioning that cannot be made.
var ErrPartitioning = errors.New("partitioning")

// Partitioning says how the events stream splits the calls into partitions: with NATS's
// own partition() subject transform on the stream, so that other NATS tools see the same
// split. The stream stores every event with the number of its partition inserted
// before the call id token: voice.events.<callId>.<type> is stored as
// voice.events.<partition>.<callId>.<type>, and partition n is read through the filter
// voice.events.n.*.>. A subscriber of voice.events.> still sees every event.
type Partitioning struct {
	partitions int
	// at is the index (from 0) of the call id token in the subject, and of the
	// partition's token in a stored subject.
	at int
	// tokens are those of the transform's source: the subject, with its full wildcard
	// spread over the call id token when it covers it.
	tokens       []string
	source, dest string
}

// NewPartitioning returns the partitioning of the events on subject into partitions,
// by its token number token (from 1), which must be a wildcard of subject (a * there, or
// a > at or before it).
func NewPartitioning(subject string, partitions, token int) (Partitioning, error) {
	switch {
	case partitions < 1 || partitions > MaxPartitions:
		return Partitioning{}, fmt.Errorf("%w: %d partitions: want 1 to %d", ErrPartitioning, partitions, MaxPartitions)
	case token < 1:
		return Partitioning{}, fmt.Errorf("%w: partition token %d: tokens count from 1", ErrPartitioning, token)
	}
	tokens := strings.Split(subject, ".")
	for _, t := range tokens {
		if t == "" {
			return Partitioning{}, fmt.Errorf("%w: subject %q has an empty token", ErrPartitioning, subject)
		}
	}
	at := token - 1
	if last := len(tokens) - 1; tokens[last] == ">" && last <= at {
		// voice.events.> by token 3: voice.events.*.>, whose first * is the call id.
		spread := make([]string, 0, at+2)
		spread = append(spread, tokens[:last]...)
		for range at - last + 1 {
			spread = append(spread, "*")
		}
		tokens = append(spread, ">")
	}
	switch {
	case at >= len(tokens):
		return Partitioning{}, fmt.Errorf("%w: subject %q has %d tokens: token %d is not in it", ErrPartitioning, subject, len(tokens), token)
	case tokens[at] != "*":
		return Partitioning{}, fmt.Errorf("%w: token %d of subject %q is %q, not a wildcard: it cannot be the call id", ErrPartitioning, token, subject, tokens[at])
	}
	p := Partitioning{partitions: partitions, at: at, tokens: tokens, source: strings.Join(tokens, ".")}
	dest := make([]string, 0, len(tokens)+1)
	wildcard := 0
	for i, t := range tokens {
		switch {
		case t == "*":
			wildcard++
			if i == at {
				dest = append(dest, fmt.Sprintf("{{partition(%d,%d)}}", partitions, wildcard))
			}
			dest = append(dest, fmt.Sprintf("{{wildcard(%d)}}", wildcard))
		default:
			dest = append(dest, t)
		}
	}
	p.dest = strings.Join(dest, ".")
	return p, nil
}

// Partitions returns the number of partitions.
func (p Partitioning) Partitions() int { return p.partitions }

// Transform returns the subject transform of the events stream.
func (p Partitioning) Transform() *jetstream.SubjectTransformConfig {
	return &jetstream.SubjectTransformConfig{Source: p.source, Destination: p.dest}
}

// Filter returns the subject filter of partition n in the stream.
func (p Partitioning) Filter(n int) string {
	tokens := make([]string, 0, len(p.tokens)+1)
	tokens = append(tokens, p.tokens[:p.at]...)
	tokens = append(tokens, strconv.Itoa(n))
	tokens = append(tokens, p.tokens[p.at:]...)
	return strings.Join(tokens, ".")
}

// Of returns the partition of a subject as the stream stores it, or -1 when it has none.
func (p Partitioning) Of(subject string) int {
	i := 0
	for range p.at {
		j := strings.IndexByte(subject[i:], '.')
		if j < 0 {
			return -1
		}
		i += j + 1
	}
	token := subject[i:]
	if j := strings.IndexByte(token, '.'); j >= 0 {
		token = token[:j]
	}
	n, err := strconv.Atoi(token)
	if err != nil || n < 0 || n >= p.partitions || strconv.Itoa(n) != token {
		return -1
	}
	return n
}

// sameTransform reports whether a stream's transform is this partitioning's.
func (p Partitioning) sameTransform(have *jetstream.SubjectTransformConfig) bool {
	return have != nil && have.Source == p.source && have.Destination == p.dest
}

// String describes the transform, for logs and errors.
func (p Partitioning) String() string { return p.source + " → " + p.dest }
