package bench

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hangwatch/hangwatch/detector"
	"github.com/hangwatch/hangwatch/wire"
)

// TestBudgetEvents checks the events of the memory scenario as hangwatch reads them: an
// armed call of the size asked for, each call its own id, and ends.
func TestBudgetEvents(t *testing.T) {
	ev := newBudgetEvents(200_000)
	seen := map[string]bool{}
	for _, i := range []int{0, 7, 15_999} {
		subject, data := ev.armed(i)
		var e detector.Event
		if err := wire.Decode(&e, data, wire.DefaultLimits()); err != nil {
			t.Fatalf("armed %d: %v", i, err)
		}
		if len(data) < 190_000 || len(data) > 210_000 || e.Type != detector.TypeConversationUpdate ||
			e.Messages[len(e.Messages)-1].Role != detector.RoleUser || seen[e.CallID] ||
			subject != "voice.events."+e.CallID+".conversation-update" {
			t.Errorf("armed %d: %d bytes, type %v, call %s on %s", i, len(data), e.Type, e.CallID, subject)
		}
		// The id aliases the event's bytes, which the next armed event overwrites.
		seen[strings.Clone(e.CallID)] = true
		_, end := ev.end(i, "mem")
		if err := wire.Decode(&e, end, wire.DefaultLimits()); err != nil || !e.Ends() || !seen[e.CallID] {
			t.Errorf("end %d: %v, ends %v, call %s", i, err, e.Ends(), e.CallID)
		}
	}
	_, data := ev.armedNew()
	var e detector.Event
	if err := wire.Decode(&e, data, wire.DefaultLimits()); err != nil || seen[e.CallID] {
		t.Errorf("new call %s: %v", e.CallID, err)
	}
}

func TestScrape(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "# HELP x\n# TYPE x gauge\nhangwatch_retained_bytes 1.5e+06\n"+
			`hangwatch_calls{state="armed"} 16000`+"\n")
	}))
	defer srv.Close()
	got, err := scrape(strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	if got["hangwatch_retained_bytes"] != 1.5e6 || got[`hangwatch_calls{state="armed"}`] != 16000 || len(got) != 2 {
		t.Errorf("scrape = %v", got)
	}
}

func TestBudgetMet(t *testing.T) {
	ok := BudgetResult{MaxRetained: 256 << 20, PeakRSS: 400e6, Returned: true, NewCallArmed: true}
	tests := []struct {
		name   string
		change func(*BudgetResult)
		want   bool
	}{
		{"met", func(*BudgetResult) {}, true},
		{"over budget + 150 MB", func(r *BudgetResult) { r.PeakRSS = 256<<20 + 150e6 + 1 }, false},
		{"not returned", func(r *BudgetResult) { r.Returned = false }, false},
		{"new call refused", func(r *BudgetResult) { r.Refused = 1 }, false},
		{"new call not armed", func(r *BudgetResult) { r.NewCallArmed = false }, false},
	}
	for _, tt := range tests {
		r := ok
		tt.change(&r)
		if got := r.Met(); got != tt.want {
			t.Errorf("%s: Met() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
