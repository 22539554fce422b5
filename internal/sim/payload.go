package sim

import (
	"strconv"
	"time"
)

// The payloads are appended into a caller's buffer, field by field, in the order and
// shape of the fixtures (compact, without the indentation). Everything a call needs is
// recomputed from its seed, so that a history costs no memory between events; what is
// the same for every call (the escaped texts, the assistant objects) was rendered once
// by New.

// eventType is the type of an event of a call.
type eventType uint8

const (
	evStatus eventType = iota
	evUpdate
	evEnd
)

// The event types a simulated call publishes (message.type).
const (
	TypeStatusUpdate       = "status-update"
	TypeConversationUpdate = "conversation-update"
	TypeEndOfCallReport    = "end-of-call-report"
)

func (t eventType) String() string {
	switch t {
	case evStatus:
		return TypeStatusUpdate
	case evUpdate:
		return TypeConversationUpdate
	}
	return TypeEndOfCallReport
}

// pending returns the type and time of the event that the cursor stands on: the
// status-update before the first step, the end-of-call-report once the call has ended,
// else the conversation-update of the latest message.
func (c *cursor) pending() (eventType, int64) {
	switch c.phase {
	case phWelcome:
		return evStatus, 0
	case phDone:
		return evEnd, c.at
	}
	return evUpdate, c.at
}

// appendEvent appends the event that c stands on (see pending).
func (sc *Script) appendEvent(b []byte, c *cursor) []byte {
	switch typ, at := c.pending(); typ {
	case evStatus:
		b = sc.appendHead(b, evStatus, 0)
		b = sc.appendCall(b, 0, nil)
		b = append(b, `,"assistant":`...)
		b = append(b, sc.sim.assistantObjects[sc.assistant()]...)
	case evUpdate:
		b = sc.appendUpdate(b, c.msgs, at)
	default:
		b = sc.appendHead(b, evEnd, at)
		b = append(b, `"endedReason":"`...)
		b = append(b, sc.endedReason(c)...)
		b = append(b, `","call":`...)
		b = sc.appendCall(b, at, c)
		b = append(b, `,"assistant":{},"messages":[]`...)
	}
	return sc.appendTail(b)
}

// appendUpdate appends the body of the conversation-update that carries the first n
// messages of the call, the latest of which is at at: the whole history, regenerated
// by walking a fresh cursor.
func (sc *Script) appendUpdate(b []byte, n int32, at int64) []byte {
	b = sc.appendHead(b, evUpdate, at)
	b = sc.appendCall(b, 0, nil)
	b = append(b, `,"assistant":{},"messages":[`...)
	c := sc.cursor()
	for i := range n {
		m := c.next(&sc.sim.p)
		if i > 0 {
			b = append(b, ',')
		}
		b = sc.appendMessage(b, &m)
	}
	return append(b, ']')
}

// appendHead appends the start of an event up to its call object, which follows; an
// end-of-call-report's up to the members before it.
func (sc *Script) appendHead(b []byte, typ eventType, at int64) []byte {
	b = append(b, `{"message":{"timestamp":`...)
	b = strconv.AppendInt(b, sc.start+at, 10)
	b = append(b, `,"type":"`...)
	b = append(b, typ.String()...)
	if typ == evEnd {
		return append(b, `",`...)
	}
	return append(b, `","call":`...)
}

// The endedReason of a call's end-of-call-report.
const (
	// EndedByCustomer ends a call whose caller hung up, in silence or not.
	EndedByCustomer = "customer-ended-call"
	// EndedByAssistant ends a call that the assistant closed after its last reply.
	EndedByAssistant = "assistant-ended-call"
	// EndedByStop ends the calls still live when a Runner with HangUpOnStop stops.
	EndedByStop = "simulation-stopped"
)

// endedReason returns the endedReason of the end of the call that c stands on.
func (sc *Script) endedReason(c *cursor) string {
	switch {
	case c.stopped:
		return EndedByStop
	case c.open || draw(sc.cs, 0, saltEnd)&1 == 0:
		return EndedByCustomer // a caller left waiting is the one who hangs up
	}
	return EndedByAssistant
}

func (sc *Script) appendTail(b []byte) []byte {
	b = append(b, `,"phone":{"provider":{"name":"twilio"}},"customer":{"number":`...)
	b = sc.appendPhone(b)
	return append(b, `},"analysis":{}}}`...)
}

// appendCall appends the call object; ended is the cursor of a call that ended at at,
// nil for a live call.
func (sc *Script) appendCall(b []byte, at int64, ended *cursor) []byte {
	s := sc.sim
	b = append(b, `{"id":"`...)
	b = s.AppendCallID(b, sc.index)
	b = append(b, `","teamId":`...)
	b = append(b, s.team...)
	b = append(b, `,"assistantId":`...)
	b = append(b, s.assistants[sc.assistant()]...)
	b = append(b, `,"callType":"phone","direction":"inbound","startAt":"`...)
	b = appendISO(b, sc.start)
	b = append(b, `","userNumber":`...)
	b = sc.appendPhone(b)
	b = append(b, `,"assistantNumber":"+15550100999","status":`...)
	if ended == nil {
		b = append(b, `"ongoing","phoneCallStatus":"in-progress","phoneCallStatusReason":"Call is in progress","callEndTriggerBy":"","assistantCallDuration":0`...)
	} else {
		b = append(b, `"finished","phoneCallStatus":"completed","phoneCallStatusReason":"Call is completed","callEndTriggerBy":`...)
		if sc.endedReason(ended) == EndedByAssistant {
			b = append(b, `"assistant"`...)
		} else {
			b = append(b, `"user"`...)
		}
		b = append(b, `,"assistantCallDuration":`...)
		b = strconv.AppendInt(b, at, 10)
	}
	b = append(b, `,"analysis":{"summary":"","successEvaluation":""},"recording":{"s3Bucket":"","path":""},"assistantOverrides":{"dynamicVariables":{"clinic":`...)
	b = append(b, s.clinics[sc.clinic()]...)
	b = append(b, `}},"metadata":{"campaign":`...)
	b = append(b, s.campaigns[draw(sc.cs, 1, saltClinic)%uint64(len(s.campaigns))]...)
	b = append(b, '}')
	if ended != nil {
		b = append(b, `,"endAt":"`...)
		b = appendISO(b, sc.start+at)
		b = append(b, `","cost":{"totalCost":`...)
		b = strconv.AppendFloat(b, float64(at)/1000*0.001, 'f', 4, 64)
		b = append(b, `},"metrics":{"turns":{"user":`...)
		b = strconv.AppendInt(b, int64(ended.users), 10)
		b = append(b, `,"bot":`...)
		b = strconv.AppendInt(b, int64(ended.replies), 10)
		b = append(b, `}}`...)
	}
	return append(b, '}')
}

func (sc *Script) assistant() int {
	return int(draw(sc.cs, 0, saltAssistant) % uint64(len(sc.sim.assistants)))
}

func (sc *Script) clinic() int { return int(draw(sc.cs, 0, saltClinic) % uint64(len(sc.sim.clinics))) }

// appendPhone appends the caller's number as a JSON string.
func (sc *Script) appendPhone(b []byte) []byte {
	b = append(b, `"+1555`...)
	b = strconv.AppendInt(b, between(draw(sc.cs, 0, saltPhone), 1_000_000, 9_999_999), 10)
	return append(b, '"')
}

// appendISO appends a Unix millisecond time as the wire's ISO 8601 UTC form.
func appendISO(b []byte, ms int64) []byte {
	return time.UnixMilli(ms).UTC().AppendFormat(b, "2006-01-02T15:04:05.000Z")
}

// layout is how messages are rendered to come near Config.PayloadBytes: the richness of
// their metrics (0: {}, 3: every metric of the fixtures) and the target length of their
// texts (0: one phrase), for user turns and for replies.
type layout struct {
	userLevel, replyLevel int
	userText, replyText   int
}

// appendMessage appends message m of the call.
func (sc *Script) appendMessage(b []byte, m *message) []byte {
	b, _ = sc.appendMessageText(b, m, &sc.sim.lay)
	return b
}

// appendMessageText appends message m rendered with lay, and returns the length of its
// text as escaped.
func (sc *Script) appendMessageText(b []byte, m *message, lay *layout) ([]byte, int) {
	s := sc.sim
	h := draw(sc.cs, uint64(m.index), saltText)
	hm := draw(sc.cs, uint64(m.index), saltMetrics)
	ts := sc.start + m.at
	var text int
	switch m.kind {
	case msgUser, msgHello:
		b = append(b, `{"messageId":"user-`...)
		b = strconv.AppendInt(b, int64(m.user), 10)
		b = append(b, `","role":"user","text":"`...)
		n := len(b)
		if m.kind == msgUser {
			b = appendText(b, s.users[h%uint64(len(s.users))], s.userFillers, vary(lay.userText, h), h)
		} else {
			b = append(b, s.hellos[h%uint64(len(s.hellos))]...)
		}
		text = len(b) - n
		b = append(b, `","timestamp":`...)
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, `,"metrics":`...)
		b = appendUserMetrics(b, lay.userLevel, m, ts, hm)
		return append(b, `,"skippedAssistantMessages":[]}`...), text
	case msgToolCall, msgToolResult:
		return sc.appendTool(b, m, ts), 0
	case msgWelcome:
		b = append(b, `{"messageId":"welcome-1","role":"assistant","text":"`...)
		n := len(b)
		b = append(b, s.welcomes[sc.clinic()*len(welcomePhrases)+int(h%uint64(len(welcomePhrases)))]...)
		text = len(b) - n
	default:
		gen := sc.gen(m.index)
		b = append(b, `{"messageId":`...)
		b = sc.appendReplyID(b, m, gen)
		b = append(b, `,"role":"assistant","text":"`...)
		n := len(b)
		if m.kind == msgReply {
			b = appendText(b, s.replies[h%uint64(len(s.replies))], s.replyFillers, vary(lay.replyText, h), h)
		}
		text = len(b) - n
		b = append(b, `","timestamp":`...)
		b = strconv.AppendInt(b, ts, 10)
		b = append(b, `,"metrics":`...)
		b = appendAssistantMetrics(b, lay.replyLevel, m, ts, hm, gen, text)
		return append(b, '}'), text
	}
	b = append(b, `","timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	b = append(b, `,"metrics":`...)
	b = appendAssistantMetrics(b, lay.replyLevel, m, ts, hm, -1, text)
	return append(b, '}'), text
}

// appendTool appends a tool call (role tool_calls, its toolCalls naming the call's id)
// or its result (role tool_call_result, toolCallId naming the same id) at ts.
func (sc *Script) appendTool(b []byte, m *message, ts int64) []byte {
	tool := &tools[draw(sc.cs, uint64(m.tool), saltToolName)%uint64(len(tools))]
	if m.kind == msgToolCall {
		b = append(b, `{"messageId":"tool-call-`...)
		b = strconv.AppendInt(b, int64(m.index), 10)
		b = append(b, `","role":"tool_calls","text":"","toolCalls":[{"id":`...)
		b = sc.appendToolCallID(b, m.tool)
		b = append(b, `,"type":"function","function":{"name":"`...)
		b = append(b, tool.name...)
		b = append(b, `","arguments":`...)
		b = appendQuoted(b, tool.arguments)
		b = append(b, `}}]`...)
	} else {
		b = append(b, `{"messageId":"tool-result-`...)
		b = strconv.AppendInt(b, int64(m.index), 10)
		b = append(b, `","role":"tool_call_result","name":"`...)
		b = append(b, tool.name...)
		b = append(b, `","toolCallId":`...)
		b = sc.appendToolCallID(b, m.tool)
		b = append(b, `,"result":`...)
		b = appendQuoted(b, tool.result)
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, ts, 10)
	return append(b, `,"metrics":{}}`...)
}

// appendToolCallID appends the id of the tool call made by message index, as a JSON
// string: call_ and 24 characters.
func (sc *Script) appendToolCallID(b []byte, index int32) []byte {
	b = append(b, `"call_`...)
	for i := range uint64(4) {
		r := draw(sc.cs, uint64(index)<<2|i, saltToolID)
		for range 6 {
			b = append(b, idAlphabet[(r&63)%uint64(len(idAlphabet))])
			r >>= 6
		}
	}
	return append(b, '"')
}

// gen returns the speech generation time of assistant message index: the time from the
// start of its completion, which its messageId carries, to its timestamp.
func (sc *Script) gen(index int32) int64 {
	return between(draw(sc.cs, uint64(index), saltGen), 150, 500)
}

const idAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// appendReplyID appends the messageId of an assistant message as a JSON string: the
// id of the user turn it follows, ten random characters and the time the completion
// started, like user-3-Qx81LmZp2a-1772702495604.
func (sc *Script) appendReplyID(b []byte, m *message, gen int64) []byte {
	b = append(b, `"user-`...)
	b = strconv.AppendInt(b, int64(m.user), 10)
	b = append(b, '-')
	r := draw(sc.cs, uint64(m.index), saltRandID)
	for range 10 {
		b = append(b, idAlphabet[(r&63)%uint64(len(idAlphabet))])
		r >>= 6
	}
	b = append(b, '-')
	b = strconv.AppendInt(b, sc.start+m.at-gen, 10)
	return append(b, '"')
}

// vary spreads a target text length over ±25 % from message to message.
func vary(target int, h uint64) int {
	return target * int(768+(h>>40)%512) / 1024
}

// appendText appends base, then whole filler sentences while that brings the text
// nearer to target bytes.
func appendText(b, base []byte, fillers [][]byte, target int, h uint64) []byte {
	b = append(b, base...)
	n := len(base)
	for i := h >> 16; ; i++ {
		f := fillers[i%uint64(len(fillers))]
		if n+1+len(f)/2 > target {
			return b
		}
		b = append(b, ' ')
		b = append(b, f...)
		n += 1 + len(f)
	}
}

// appendUserMetrics appends the metrics of a user turn at the given level of detail.
func appendUserMetrics(b []byte, level int, m *message, ts int64, hm uint64) []byte {
	if level == 0 {
		return append(b, "{}"...)
	}
	elapsed := m.at
	eou := 300 + int64(hm>>8%900)
	b = append(b, `{"timeline":{"offsetFromPreviousTurnMs":`...)
	b = strconv.AppendInt(b, m.at-m.prev, 10)
	b = append(b, `,"totalElapsedTimeMs":`...)
	b = strconv.AppendInt(b, elapsed, 10)
	b = append(b, '}')
	if level >= 3 {
		b = append(b, `,"audio":{"delayedPacketsPerTurnCount":`...)
		b = strconv.AppendInt(b, int64(hm%4), 10)
		b = append(b, `,"audioDelayPerTurnMs":`...)
		b = strconv.AppendInt(b, int64(hm>>2%40), 10)
		b = append(b, `,"totalAudioReceivedMs":`...)
		b = strconv.AppendInt(b, elapsed, 10)
		b = append(b, '}')
	}
	if level >= 2 {
		dur := min(800+int64(hm>>20%2700), elapsed)
		b = append(b, `,"stt":{"timestampMs":`...)
		b = strconv.AppendInt(b, ts-eou, 10)
		b = append(b, `,"startOffsetMs":`...)
		b = strconv.AppendInt(b, elapsed-dur, 10)
		b = append(b, `,"endOffsetMs":`...)
		b = strconv.AppendInt(b, elapsed, 10)
		b = append(b, `,"durationMs":`...)
		b = strconv.AppendInt(b, dur, 10)
		b = append(b, `,"vadMs":`...)
		b = strconv.AppendInt(b, 200+int64(hm>>32%400), 10)
		conf := 80 + hm>>44%20
		b = append(b, `,"confidence":0.`...)
		b = append(b, byte('0'+conf/10), byte('0'+conf%10), '}')
	}
	if level >= 3 {
		b = append(b, `,"interactlyEOU":{"turnDetectionTimeMs":`...)
		b = strconv.AppendInt(b, eou, 10)
		b = append(b, `,"queueLatencyMs":0}`...)
	}
	return append(b, '}')
}

// appendAssistantMetrics appends the metrics of an assistant message at the given level
// of detail; gen is the speech generation time, -1 for the greeting, which is played
// from a cache and involves no completion.
func appendAssistantMetrics(b []byte, level int, m *message, ts int64, hm uint64, gen int64, text int) []byte {
	if level == 0 {
		return append(b, "{}"...)
	}
	elapsed := m.at
	b = append(b, `{"timeline":{"totalElapsedTimeMs":`...)
	b = strconv.AppendInt(b, elapsed, 10)
	b = append(b, '}')
	if level >= 3 {
		b = append(b, `,"audio":{"totalAudioReceivedMs":`...)
		b = strconv.AppendInt(b, elapsed, 10)
		b = append(b, '}')
	}
	if gen < 0 {
		b = append(b, `,"llm":{}`...)
	} else {
		b = append(b, `,"llm":{`...)
		if level >= 3 {
			b = append(b, `"timestampMs":`...)
			b = strconv.AppendInt(b, ts-gen, 10)
			b = append(b, `,"queueLatencyMs":`...)
			b = strconv.AppendInt(b, 1+int64(hm%5), 10)
			b = append(b, ',')
		}
		b = append(b, `"responseLatencyMs":`...)
		b = strconv.AppendInt(b, max(m.at-m.prev-gen, 0), 10)
		b = append(b, '}')
	}
	if level >= 2 {
		b = append(b, `,"tts":{"audioDurationMs":`...)
		b = strconv.AppendInt(b, 200+55*int64(text), 10)
		b = append(b, `,"queueLatencyMs":2,"generationTimeMs":`...)
		b = strconv.AppendInt(b, max(gen, 6), 10)
		if gen < 0 {
			b = append(b, `,"isCachePlaying":true}`...)
		} else {
			b = append(b, `,"isCachePlaying":false}`...)
		}
	}
	return append(b, '}')
}

// sampleStart is the start of the call that fitLayout measures.
const sampleStart = 1_763_647_331_000

// fitLayout chooses the layout that brings a conversation-update of PayloadTurns turns
// near PayloadBytes: it measures the envelope and a typical message at each level,
// splits the bytes of a turn 45/55 between the user turn and the reply, takes the
// richest metrics that leave room for some text, and fills the rest with text.
func (s *Sim) fitLayout() layout {
	full := layout{userLevel: 3, replyLevel: 3}
	if s.cfg.TextBytes > 0 {
		full.userText, full.replyText = s.cfg.TextBytes, s.cfg.TextBytes
		return full
	}
	if s.cfg.PayloadBytes == 0 {
		return full
	}
	s.lay = full
	sc := s.Script(0, time.UnixMilli(sampleStart))
	envelope := len(sc.appendTail(sc.appendUpdate(nil, 0, 0)))
	welcome, _ := sc.appendMessageText(nil, &message{kind: msgWelcome, at: 300}, &full)
	perTurn := (s.cfg.PayloadBytes - envelope - len(welcome)) / s.cfg.PayloadTurns
	// The turns that call a tool carry its call and result too: take their share out.
	call, _ := sc.appendMessageText(nil, &message{kind: msgToolCall, index: 40, at: 300_000}, &full)
	result, _ := sc.appendMessageText(nil, &message{kind: msgToolResult, index: 41, tool: 40, at: 300_500}, &full)
	c := s.cfg
	toolTurns := c.ToolShare*(1-c.StallShare-c.HelloShare-c.ToolStallShare-c.AfterToolShare) + c.ToolStallShare + c.AfterToolShare
	perTurn -= int(toolTurns * float64(len(call)+len(result)+2))
	userBudget := perTurn*45/100 - 1 // a comma before each message
	replyBudget := perTurn - userBudget - 2

	// A message well into a call, so that its numbers have their usual widths.
	user := message{kind: msgUser, index: 40, user: 20, at: 300_000, prev: 296_000}
	reply := message{kind: msgReply, index: 41, user: 20, at: 301_500, prev: 300_000}
	var lay layout
	lay.userLevel, lay.userText = fit(userBudget, average(s.users), func(level int) int {
		b, text := sc.appendMessageText(nil, &user, &layout{userLevel: level})
		return len(b) - text
	})
	lay.replyLevel, lay.replyText = fit(replyBudget, average(s.replies), func(level int) int {
		b, text := sc.appendMessageText(nil, &reply, &layout{replyLevel: level})
		return len(b) - text
	})
	return lay
}

// fit returns the richest level whose overhead leaves room for half a phrase of the
// average length within budget (metrics make up most of a real payload, so they are
// preferred to padding), and the text length that fills the budget at that level.
func fit(budget, phrase int, overhead func(level int) int) (level, text int) {
	level = 3
	for level > 0 && overhead(level)+phrase/2 > budget {
		level--
	}
	return level, max(budget-overhead(level), 0)
}

func average(texts [][]byte) int {
	n := 0
	for _, t := range texts {
		n += len(t)
	}
	return n / len(texts)
}

// assistantObject returns the full assistant object that a status-update carries, the
// one of fixture 01 with the given id.
func assistantObject(id string) []byte {
	b := append([]byte(`{"_id":`), quoted(id)...)
	return append(b, `,"name":"Front desk","welcomeMessage":"Thanks for calling.","welcomeMessageMode":"automatic",`+
		`"welcomeMessageInterruptionsEnabled":false,"endCallMessage":"","endCallPhrases":["Goodbye","Bye"],"bargeInEnabled":true,`+
		`"assistantProvider":"openai","assistantModel":"gpt-4o-mini",`+
		`"assistantSystemPrompt":"You are the front desk assistant of a clinic. Keep answers short.",`+
		`"assistantTemperature":0.2,"assistantMaxTokens":256,"assistantAnalysis":{"summary":{"enabled":true}},`+
		`"assistantServer":{"enabled":true,"url":"https://hooks.example.com/events","timeoutSeconds":20,`+
		`"messages":["status-update","conversation-update","end-of-call-report","hang"]},`+
		`"config":{"speech":{"stt":{"vendor":"deepgram","language":"en-US"},`+
		`"ttsData":[{"vendor":"eleven-labs","language":"en-US","default":true}]}}}`...)
}
