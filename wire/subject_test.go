package wire

import (
	"errors"
	"runtime"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/internal/subject"
)

func TestSubjectTemplateRender(t *testing.T) {
	tests := []struct {
		give                              string
		callID, teamID, assistantID, want string
	}{
		{give: DefaultHangSubject, callID: "c1", teamID: "t1", want: "voice.hang.t1.c1"},
		{give: DefaultResolvedSubject, callID: "c1", want: "voice.hang-resolved._.c1"},
		{give: DefaultUnresolvedSubject, callID: "c1", teamID: "o.1", want: "voice.hang-unresolved.o_1.c1"},
		{give: "hang.{assistantId}.{teamId}.{callId}", callID: "c.1", teamID: "t*1", assistantID: "a>1", want: "hang.a_1.t_1.c_1"},
		{give: "x.call-{callId}-end", callID: "a b\tc\x00d\u00a0e\u3000f\x7fg\u0085h", want: "x.call-a_b_c_d_e_f_g_h-end"},
		{give: "x.{callId}", callID: "é\xff€", want: "x.é_€"},
		{give: "x.{callId}{teamId}", callID: "", teamID: "", want: "x.__"},
		{give: "$JS.hang.{callId}", callID: "c1", want: "$JS.hang.c1"},
	}
	for _, tt := range tests {
		t.Run(tt.give, func(t *testing.T) {
			tmpl, err := ParseSubjectTemplate(tt.give)
			if err != nil {
				t.Fatal(err)
			}
			if got := tmpl.Render(tt.callID, tt.teamID, tt.assistantID); got != tt.want {
				t.Errorf("Render = %q, want %q", got, tt.want)
			}
			if tmpl.String() != tt.give {
				t.Errorf("String = %q", tmpl.String())
			}
		})
	}
}

func TestParseSubjectTemplateErrors(t *testing.T) {
	tests := []string{
		"",
		"voice.hang.{teamID}",
		"voice.hang.{callId",
		"voice.hang.{{callId}}",
		"voice.hang.callId}",
		"voice..hang",
		".voice",
		"voice.",
		"voice.*.{callId}",
		"voice.>",
		"voice.hang {callId}",
		"voice.\x01",
		"voice.\xff",
		"voice.{}",
	}
	for _, give := range tests {
		t.Run(give, func(t *testing.T) {
			if _, err := ParseSubjectTemplate(give); !errors.Is(err, ErrSubjectTemplate) {
				t.Errorf("ParseSubjectTemplate(%q) = %v, want ErrSubjectTemplate", give, err)
			}
		})
	}
}

func TestSubject(t *testing.T) {
	snap := decodeFixture(t, "webhook", "06-conversation-update-user-3.json")
	vapi := decodeFixture(t, "vapi", "03-conversation-update-user-1.json")
	var latest detector.Event
	if err := Decode(&latest, []byte(ev(`{"call":{"id":"c1","assistantId":"a.2"}}`)), DefaultLimits()); err != nil {
		t.Fatal(err)
	}
	tmpl, err := ParseSubjectTemplate("hang.{teamId}.{assistantId}.{callId}")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		give detector.Output
		want string
	}{
		{name: "latest, falling back to the snapshot", give: detector.Output{Snapshot: snap.Payload, Latest: latest.Payload}, want: "hang.team-7a31c9.a_2.c1"},
		{name: "snapshot only", give: detector.Output{Snapshot: snap.Payload}, want: "hang.team-7a31c9.asst-42e1b0.c1"},
		{name: "no payload", give: detector.Output{}, want: "hang._._.c1"},
		{name: "orgId for a team", give: detector.Output{Snapshot: vapi.Payload}, want: "hang.8e1f6a3c-27d4-4b9a-9c5e-3a7d0b2e6f18.5b9d2e7a-4c1f-4e8b-a3d6-0f7c9e1a2b45.c1"},
		{name: "a retained copy", give: detector.Output{Snapshot: vapi.Payload.(*Payload).Retain(2), Latest: vapi.Payload.(*Payload).RetainCall()}, want: "hang.8e1f6a3c-27d4-4b9a-9c5e-3a7d0b2e6f18.5b9d2e7a-4c1f-4e8b-a3d6-0f7c9e1a2b45.c1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Subject(tmpl, "c1", &tt.give); got != tt.want {
				t.Errorf("Subject = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSubjectTemplateWildcard(t *testing.T) {
	tests := []struct{ give, want string }{
		{DefaultHangSubject, "voice.hang.*.*"},
		{DefaultResolvedSubject, "voice.hang-resolved.*.*"},
		{DefaultUnresolvedSubject, "voice.hang-unresolved.*.*"},
		{"alerts.hang", "alerts.hang"},
		{"t-{teamId}.x.{callId}-{assistantId}", "*.x.*"},
	}
	for _, tt := range tests {
		tmpl, err := ParseSubjectTemplate(tt.give)
		if err != nil {
			t.Fatal(err)
		}
		if got := tmpl.Wildcard(); got != tt.want {
			t.Errorf("Wildcard(%q) = %q, want %q", tt.give, got, tt.want)
		}
	}
}

func TestValidateSubject(t *testing.T) {
	tests := []struct {
		give    string
		wantErr bool
	}{
		{give: "voice.events.>"},
		{give: "voice.*.call.>"},
		{give: "a"},
		{give: "", wantErr: true},
		{give: "voice..x", wantErr: true},
		{give: "voice.>.x", wantErr: true},
		{give: "voice.ev*", wantErr: true},
		{give: "voice events", wantErr: true},
		{give: "voice.\tx", wantErr: true},
	}
	for _, tt := range tests {
		if err := ValidateSubject(tt.give); (err != nil) != tt.wantErr {
			t.Errorf("ValidateSubject(%q) = %v, want error %v", tt.give, err, tt.wantErr)
		}
	}
}

func TestRenderBoundsLongValues(t *testing.T) {
	tmpl, err := ParseSubjectTemplate(DefaultHangSubject)
	if err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é.x", 2000) // 8 KB, with runes and dots to cut through
	a := tmpl.Render(long+"a", long, "")
	b := tmpl.Render(long+"b", long, "")
	if len(a) > 300 || len(b) > 300 {
		t.Errorf("subjects of %d and %d bytes, want them bounded", len(a), len(b))
	}
	if a == b {
		t.Error("two long call ids that differ at the end render the same subject")
	}
	if !utf8.ValidString(a) || ValidateSubject(a) != nil || strings.Count(a, ".") != 3 {
		t.Errorf("rendered %q is not a valid subject of four tokens", a)
	}
	if got := tmpl.Render(strings.Repeat("c", subject.MaxValueBytes), "t", ""); got != "voice.hang.t."+strings.Repeat("c", subject.MaxValueBytes) {
		t.Errorf("a value of exactly %d bytes was changed: %q", subject.MaxValueBytes, got)
	}
}

// TestRenderHugeValueAllocs checks that a huge value costs the bounded subject, not its
// own size: the rendered string keeps its buffer alive as long as the output lives.
func TestRenderHugeValueAllocs(t *testing.T) {
	tmpl, err := ParseSubjectTemplate(DefaultHangSubject)
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("c", 1<<20)
	const runs = 16
	var before, after runtime.MemStats
	var got string
	runtime.ReadMemStats(&before)
	for range runs {
		got = tmpl.Render(huge, huge, huge)
	}
	runtime.ReadMemStats(&after)
	// The subject of two bounded tokens is under 300 bytes; allow for other allocations of
	// the process while the loop ran.
	if perRun := (after.TotalAlloc - before.TotalAlloc) / runs; perRun > 4096 {
		t.Errorf("Render of a %d-byte value allocates %d bytes, want the size of a %d-byte subject", len(huge), perRun, len(got))
	}
}
