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

// vapiConversation makes a Vapi conversation-update of about n bytes, shaped like the
// fixture's: no messageIds, text in message, time and endTime, a tool call and its
// result every fourth turn, and the whole history again in messagesOpenAIFormatted, as
// Vapi sends it.
func vapiConversation(n int) []byte {
	const start = 1772700001318
	type toolCall struct {
		ID       string         `json:"id"`
		Type     string         `json:"type"`
		Function map[string]any `json:"function"`
	}
	var msgs, oai []map[string]any
	msgs = append(msgs, map[string]any{"role": "system", "message": "You are Juno, the phone assistant of Brightline Outfitters. Keep answers short.", "time": start - 180, "secondsFromStart": 0})
	oai = append(oai, map[string]any{"role": "system", "content": "You are Juno, the phone assistant of Brightline Outfitters. Keep answers short."})
	size := 6000 // the envelope, call and assistant
	for i := 0; size < n; i++ {
		t := int64(start + 640 + i*3900)
		text := benchTexts[i%len(benchTexts)]
		role, oaiRole := "bot", "assistant"
		if i%2 == 1 {
			role, oaiRole = "user", "user"
		}
		m := map[string]any{"role": role, "message": text, "time": t, "endTime": t + 2800, "secondsFromStart": float64(t-start) / 1000, "duration": 2800}
		if role == "bot" {
			m["source"] = ""
		}
		msgs = append(msgs, m)
		oai = append(oai, map[string]any{"role": oaiRole, "content": text})
		size += 2*len(text) + 150
		if i%4 == 1 {
			id := fmt.Sprintf("call_%08dT7mQ2vK9xLp4RcW8nHf3", i)
			calls := []toolCall{{ID: id, Type: "function", Function: map[string]any{"name": "lookup_order", "arguments": `{"orderNumber":"4417"}`}}}
			result := `{"orderNumber":"4417","status":"shipped","carrier":"UPS"}`
			msgs = append(msgs,
				map[string]any{"role": "tool_calls", "message": "", "toolCalls": calls, "time": t + 3000, "secondsFromStart": float64(t+3000-start) / 1000},
				map[string]any{"role": "tool_call_result", "name": "lookup_order", "toolCallId": id, "result": result, "time": t + 3400, "secondsFromStart": float64(t+3400-start) / 1000})
			oai = append(oai, map[string]any{"role": "assistant", "content": "", "tool_calls": calls}, map[string]any{"role": "tool", "tool_call_id": id, "content": result})
			size += 2*len(result) + 500
		}
	}
	var assistant map[string]any
	if err := json.Unmarshal([]byte(`{"name":"Juno - order desk","firstMessage":"Thanks for calling Brightline Outfitters, this is Juno. How can I help?",`+
		`"model":{"provider":"openai","model":"gpt-4o-mini","temperature":0.3,"maxTokens":250,"messages":[{"role":"system","content":"You are Juno."}],`+
		`"tools":[{"type":"function","async":false,"messages":[],"function":{"name":"lookup_order","description":"Find an order by its number.",`+
		`"parameters":{"type":"object","properties":{"orderNumber":{"type":"string"}},"required":["orderNumber"]}},"server":{"url":"https://orders.example.com/vapi/tools","timeoutSeconds":20}}]},`+
		`"voice":{"provider":"11labs","voiceId":"9kTq2WmZr4YbN7cLx3Hd","model":"eleven_turbo_v2_5"},"transcriber":{"provider":"deepgram","model":"nova-3","language":"en"},`+
		`"serverMessages":["conversation-update","end-of-call-report","hang","speech-update","status-update","tool-calls"],"server":{"url":"https://hooks.example.com/vapi/events","timeoutSeconds":20}}`), &assistant); err != nil {
		panic(err)
	}
	event := map[string]any{"message": map[string]any{
		"timestamp": start + len(msgs)*3900,
		"type":      "conversation-update",
		"call": map[string]any{
			"id": "c4a7e2d9-1f3b-4c8e-b5a6-9d0e7f2a1b34", "orgId": "8e1f6a3c-27d4-4b9a-9c5e-3a7d0b2e6f18", "createdAt": "2026-03-05T08:39:59.402Z",
			"updatedAt": "2026-03-05T08:40:01.346Z", "type": "inboundPhoneCall", "status": "in-progress", "startedAt": "2026-03-05T08:40:01.318Z",
			"phoneCallProvider": "twilio", "phoneCallProviderId": "CA9e2b7c4f1a6d3e8b5c0f7a2d9e4b1c6a", "phoneCallTransport": "pstn",
			"phoneNumberId": "2f6a9c3e-7b1d-4a5e-8c2f-6d0b3e9a7c12", "assistantId": "5b9d2e7a-4c1f-4e8b-a3d6-0f7c9e1a2b45",
			"customer": map[string]any{"number": "+15550100142"},
		},
		"assistant":               assistant,
		"customer":                map[string]any{"number": "+15550100142"},
		"phoneNumber":             map[string]any{"provider": "twilio", "number": "+15550100777", "name": "Brightline support"},
		"messages":                msgs,
		"messagesOpenAIFormatted": oai,
	}}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
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
	{"vapi=30KB", vapiConversation(30 << 10)},
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
		Wall: time.Now().UnixNano(), Wait: 5003 * time.Millisecond, Threshold: 5 * time.Second,
		Snapshot: ev.Payload, Latest: ev.Payload,
	}
	full := len(AppendOutput(nil, ev.CallID, out, 0))
	// fit=half leaves out half of the history to fit.
	for _, limit := range []struct {
		name string
		max  int
	}{{"fit=none", 0}, {"fit=half", full / 2}} {
		b.Run(limit.name, func(b *testing.B) {
			dst := AppendOutput(nil, ev.CallID, out, limit.max)
			b.SetBytes(int64(len(dst)))
			b.ReportAllocs()
			for b.Loop() {
				dst = AppendOutput(dst[:0], ev.CallID, out, limit.max)
			}
		})
	}
}

// BenchmarkRetain measures the compact copy a call keeps while armed: the whole
// history, or its tail.
func BenchmarkRetain(b *testing.B) {
	var ev detector.Event
	data := benchInputs[0].data
	if err := Decode(&ev, data, DefaultLimits()); err != nil {
		b.Fatal(err)
	}
	p := ev.Payload.(*Payload)
	for _, from := range []int32{0, 56} {
		b.Run(fmt.Sprintf("from=%d", from), func(b *testing.B) {
			b.SetBytes(int64(p.Retain(from).Len()))
			b.ReportAllocs()
			for b.Loop() {
				_ = p.Retain(from)
			}
		})
	}
}
