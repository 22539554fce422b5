package main

import (
	"strings"
	"testing"
	"time"
)

// TestSummarizeZone: a summary line shows the time in the zone it is given, with the
// zone, so that it reads beside logs in local time.
func TestSummarizeZone(t *testing.T) {
	hang := []byte(`{"message":{"timestamp":1763647346707,"type":"hang","call":{"id":"c1","teamId":"t1"},"hang":{"reason":"turn-timeout","userMessageId":"user-2","firstUserMessageId":"user-2","waitMs":5000}}}`)
	tests := []struct {
		name string
		give *time.Location
		want string
	}{
		{name: "UTC", give: time.UTC, want: "14:02:26.707 UTC HANG"},
		{name: "a named zone", give: time.FixedZone("CET", 3600), want: "15:02:26.707 CET HANG"},
		{name: "a zone without a name", give: time.FixedZone("", 5*3600+1800), want: "19:32:26.707 +0530 HANG"},
		{name: "west of UTC", give: time.FixedZone("", -7*3600), want: "07:02:26.707 -0700 HANG"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tailLine("text", "voice.hang.t1.c1", hang, tt.give); !strings.HasPrefix(got, tt.want) {
				t.Errorf("tailLine(text) = %q, want it to start with %q", got, tt.want)
			}
		})
	}
}

// TestTailTextVapiTeam: a Vapi call has no call.teamId; its team is call.orgId (SPEC §1),
// as in the output subject and in hangevent.TeamID, and the text summary names it.
func TestTailTextVapiTeam(t *testing.T) {
	data := []byte(`{"message":{"timestamp":1772700032800,"type":"hang","call":{"id":"c1","orgId":"org-9"},"hang":{"reason":"turn-timeout","stage":"awaiting-assistant","userMessageId":"u","firstUserMessageId":"u","waitMs":5000,"thresholdMs":5000}}}`)
	if line := summarize("voice.hang.org-9.c1", data, time.UTC); !strings.Contains(line, "team=org-9 ") {
		t.Errorf("summary %q does not name the call's team org-9 (call.orgId)", line)
	}
}
