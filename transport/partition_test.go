package transport

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hangwatch/hangwatch/engine"
)

func TestNewPartitioning(t *testing.T) {
	type want struct {
		source, dest, filter string // filter of partition 7
	}
	tests := []struct {
		name     string
		subject  string
		token    int
		want     want
		wantFail bool
	}{
		{"the advised layout", "voice.events.>", 3,
			want{"voice.events.*.>", "voice.events.{{partition(16,1)}}.{{wildcard(1)}}.>", "voice.events.7.*.>"}, false},
		{"exact tokens", "voice.events.*.*", 3,
			want{"voice.events.*.*", "voice.events.{{partition(16,1)}}.{{wildcard(1)}}.{{wildcard(2)}}", "voice.events.7.*.*"}, false},
		{"a wildcard before the call id", "*.events.*.*", 3,
			want{"*.events.*.*", "{{wildcard(1)}}.events.{{partition(16,2)}}.{{wildcard(2)}}.{{wildcard(3)}}", "*.events.7.*.*"}, false},
		{"the call id last", "calls.*", 2,
			want{"calls.*", "calls.{{partition(16,1)}}.{{wildcard(1)}}", "calls.7.*"}, false},
		{"a full wildcard well before", "voice.>", 4,
			want{"voice.*.*.*.>", "voice.{{wildcard(1)}}.{{wildcard(2)}}.{{partition(16,3)}}.{{wildcard(3)}}.>", "voice.*.*.7.*.>"}, false},
		{"a full wildcard after", "voice.*.>", 2,
			want{"voice.*.>", "voice.{{partition(16,1)}}.{{wildcard(1)}}.>", "voice.7.*.>"}, false},
		{"a literal call id token", "voice.events.calls.*", 3, want{}, true},
		{"past the end", "voice.events.*", 4, want{}, true},
		{"token 0", "voice.events.>", 0, want{}, true},
		{"an empty token", "voice..>", 3, want{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPartitioning(tt.subject, 16, tt.token)
			if tt.wantFail {
				if !errors.Is(err, ErrPartitioning) {
					t.Fatalf("NewPartitioning(%q, 16, %d) = %v, want ErrPartitioning", tt.subject, tt.token, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tr := p.Transform()
			got := want{tr.Source, tr.Destination, p.Filter(7)}
			if got != tt.want {
				t.Errorf("NewPartitioning(%q, 16, %d) =\n %+v, want\n %+v", tt.subject, tt.token, got, tt.want)
			}
		})
	}
}

func TestNewPartitioningCounts(t *testing.T) {
	tests := []struct {
		give     int
		wantFail bool
	}{{0, true}, {1, false}, {MaxPartitions, false}, {MaxPartitions + 1, true}}
	if MaxPartitions-1 > engine.MaxPartition {
		t.Fatalf("MaxPartitions %d: the engine holds partitions up to %d", MaxPartitions, engine.MaxPartition)
	}
	for _, tt := range tests {
		_, err := NewPartitioning("voice.events.>", tt.give, 3)
		if (err != nil) != tt.wantFail {
			t.Errorf("NewPartitioning with %d partitions: %v, want failure %v", tt.give, err, tt.wantFail)
		}
	}
}

func TestPartitioningOf(t *testing.T) {
	p, err := NewPartitioning("voice.events.>", 16, 3)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		give string
		want int
	}{
		{"voice.events.0.c1.conversation-update", 0},
		{"voice.events.15.c1.conversation-update", 15},
		{"voice.events.16.c1.conversation-update", -1},
		{"voice.events.07.c1.conversation-update", -1},
		{"voice.events.-1.c1.conversation-update", -1},
		{"voice.events.c1.conversation-update", -1},
		{"voice.events", -1},
		{"voice.events.3", 3},
	}
	for _, tt := range tests {
		if got := p.Of(tt.give); got != tt.want {
			t.Errorf("Of(%q) = %d, want %d", tt.give, got, tt.want)
		}
	}
}

// TestPartitioningOnServer stores events through a stream with the transform and
// checks that each lands in the partition its filter reads, and in the server's
// partition of its call id: every call in one partition, the calls spread over them.
func TestPartitioningOnServer(t *testing.T) {
	srv := startJetStream(t)
	js := jsClient(t, srv)
	ctx := testCtx(t)
	const partitions = 4
	p, err := NewPartitioning("voice.events.>", partitions, 3)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"voice.events.>"},
		SubjectTransform: p.Transform()})
	if err != nil {
		t.Fatal(err)
	}
	const calls = 40
	for i := range calls {
		for _, typ := range []string{"conversation-update", "end-of-call-report"} {
			if _, err := js.Publish(ctx, eventSubject(fmt.Sprintf("call-%d", i), typ), []byte("{}")); err != nil {
				t.Fatal(err)
			}
		}
	}
	callPart := map[string]int{}
	perPart := make([]int, partitions)
	for n := range partitions {
		cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{p.Filter(n)}})
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for range info.NumPending {
			msg, err := cons.Next()
			if err != nil {
				t.Fatal(err)
			}
			if got := p.Of(msg.Subject()); got != n {
				t.Errorf("Of(%q) = %d, read through the filter of partition %d", msg.Subject(), got, n)
			}
			call := strings.Split(msg.Subject(), ".")[3]
			if q, seen := callPart[call]; seen && q != n {
				t.Errorf("call %s is in partitions %d and %d", call, q, n)
			}
			callPart[call] = n
			perPart[n]++
		}
	}
	total := 0
	for n, c := range perPart {
		total += c
		if c == 0 {
			t.Errorf("partition %d holds no event of %d calls", n, calls)
		}
	}
	if total != 2*calls || len(callPart) != calls {
		t.Errorf("the partitions hold %d events of %d calls, want %d of %d", total, len(callPart), 2*calls, calls)
	}
}
