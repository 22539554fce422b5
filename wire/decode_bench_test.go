package wire

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/jsonref"
)

// benchMessage is a history element shaped like those of the fixtures.
type benchMessage struct {
	MessageID string         `json:"messageId"`
	Role      string         `json:"role"`
	Text      string         `json:"text"`
	Timestamp int64          `json:"timestamp"`
	Metrics   map[string]any `json:"metrics"`
	Skipped   []any          `json:"skippedAssistantMessages,omitempty"`
}

var benchTexts = []string{
	"Hi, I need to move my appointment.",
	"Of course. What day works better for you?",
	"Thursday afternoon if possible, but I can’t do anything before two.",
	"Sure, let me check the calendar for Thursday afternoon at the Northside clinic.",
	"Hello? Are you there?",
	"Sorry about that. Thursday at 3 PM is open. Shall I book it?",
	"Yes please, and can you send me a text \"reminder\" the day before?",
	"Done. You’ll get a reminder on Wednesday evening. Anything else I can help with?",
}

// conversation makes a conversation-update of n messages (a greeting, then user turns
// and replies), compact or indented.
func conversation(n int, indent bool) []byte {
	const start = 1763647331407
	msgs := make([]benchMessage, 0, n)
	for i := range n {
		ts := int64(start + 280 + i*3900)
		m := benchMessage{Timestamp: ts, Text: benchTexts[i%len(benchTexts)]}
		switch {
		case i == 0:
			m.MessageID, m.Role = "welcome-1", "assistant"
			m.Metrics = map[string]any{
				"timeline": map[string]any{"totalElapsedTimeMs": 2},
				"audio":    map[string]any{"totalAudioReceivedMs": 16},
				"llm":      map[string]any{},
				"tts":      map[string]any{"audioDurationMs": 2410, "queueLatencyMs": 0, "generationTimeMs": 6, "isCachePlaying": true},
			}
		case i%2 == 1:
			m.MessageID, m.Role = fmt.Sprintf("user-%d", i/2+1), "user"
			m.Metrics = map[string]any{
				"timeline":      map[string]any{"offsetFromPreviousTurnMs": 2900, "totalElapsedTimeMs": 4700 + i*3900},
				"audio":         map[string]any{"delayedPacketsPerTurnCount": 1, "audioDelayPerTurnMs": 13, "totalAudioReceivedMs": 4700 + i*3900},
				"stt":           map[string]any{"timestampMs": ts - 1000, "startOffsetMs": 3200 + i*3900, "endOffsetMs": 4700 + i*3900, "durationMs": 1500, "vadMs": 480, "confidence": 0.91},
				"interactlyEOU": map[string]any{"turnDetectionTimeMs": 1000, "queueLatencyMs": 0},
			}
			m.Skipped = []any{}
		default:
			m.MessageID, m.Role = fmt.Sprintf("user-%d-Qx81LmZp2a-%d", i/2, ts-350), "assistant"
			m.Metrics = map[string]any{
				"timeline": map[string]any{"totalElapsedTimeMs": 7500 + i*3900},
				"audio":    map[string]any{"totalAudioReceivedMs": 7500 + i*3900},
				"llm":      map[string]any{"timestampMs": ts - 350, "queueLatencyMs": 3, "responseLatencyMs": 2140},
				"tts":      map[string]any{"audioDurationMs": 3100, "queueLatencyMs": 2, "generationTimeMs": 340, "isCachePlaying": false},
			}
		}
		msgs = append(msgs, m)
	}
	event := map[string]any{"message": map[string]any{
		"timestamp": start + n*3900,
		"type":      "conversation-update",
		"call": map[string]any{
			"id": "WC-5f0c2a8e-1b7d-4c61-9a3e-2d8b7c6e4f10", "teamId": "team-7a31c9", "assistantId": "asst-42e1b0",
			"callType": "phone", "direction": "inbound", "startAt": "2025-11-20T14:02:11.407Z",
			"userNumber": "+15550100123", "assistantNumber": "+15550100999", "status": "ongoing",
			"phoneCallStatus": "in-progress", "phoneCallStatusReason": "Call is in progress", "callEndTriggerBy": "",
			"assistantCallDuration": 0,
			"analysis":              map[string]any{"summary": "", "successEvaluation": ""},
			"recording":             map[string]any{"s3Bucket": "", "path": ""},
			"assistantOverrides":    map[string]any{"dynamicVariables": map[string]any{"clinic": "Northside"}},
			"metadata":              map[string]any{"campaign": "reminders"},
		},
		"assistant": map[string]any{},
		"messages":  msgs,
		"phone":     map[string]any{"provider": map[string]any{"name": "twilio"}},
		"customer":  map[string]any{"number": "+15550100123"},
		"analysis":  map[string]any{},
	}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if indent {
		enc.SetIndent("", "  ")
	}
	if err := enc.Encode(event); err != nil {
		panic(err)
	}
	return bytes.TrimSpace(buf.Bytes())
}

var benchInputs = []struct {
	name string
	data []byte
}{
	{"size=30KB", conversation(60, false)},
	{"size=3KB", conversation(6, false)},
	{"indent", conversation(60, true)},
}

func BenchmarkDecode(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			var ev detector.Event
			if err := Decode(&ev, in.data, DefaultLimits()); err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				if err := Decode(&ev, in.data, DefaultLimits()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeEncodingJSON measures the obvious implementation: encoding/json into
// structs of the fields that detection reads, keeping the passed-through values raw.
func BenchmarkDecodeEncodingJSON(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				var ev jsonref.Event
				if err := json.Unmarshal(in.data, &ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeEncodingJSONRaw measures encoding/json getting what Decode gets: the
// fields that detection reads and the raw values to pass through.
func BenchmarkDecodeEncodingJSONRaw(b *testing.B) {
	for _, in := range benchInputs {
		b.Run(in.name, func(b *testing.B) {
			b.SetBytes(int64(len(in.data)))
			b.ReportAllocs()
			for b.Loop() {
				var ev jsonref.Raw
				var call jsonref.Call
				var msgs []jsonref.Message
				if json.Unmarshal(in.data, &ev) != nil || json.Unmarshal(ev.Message.Call, &call) != nil ||
					json.Unmarshal(ev.Message.Messages, &msgs) != nil {
					b.Fatal("unmarshal")
				}
			}
		})
	}
}

func BenchmarkAppendOutput(b *testing.B) {
	var ev detector.Event
	data := benchInputs[0].data
	if err := Decode(&ev, data, DefaultLimits()); err != nil {
		b.Fatal(err)
	}
	out := &detector.Output{
		Kind: detector.KindHang, Reason: detector.ReasonTurnTimeout,
		UserMessageID: "user-30", FirstUserMessageID: "user-30",
		At: time.Now().UnixNano(), Wait: 5003 * time.Millisecond, Threshold: 5 * time.Second,
		Snapshot: ev.Payload, Latest: ev.Payload,
	}
	dst := AppendOutput(nil, ev.CallID, out)
	b.SetBytes(int64(len(dst)))
	b.ReportAllocs()
	for b.Loop() {
		dst = AppendOutput(dst[:0], ev.CallID, out)
	}
}
