package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
)

// maxJitter makes the jitter draw its longest wait, the backoff itself (1 is just
// outside what rand draws, and gives whole waits).
func maxJitter() float64 { return 1 }

// newCore returns a Deliverer to the receivers on a fake clock, and what it observes.
func newCore(t *testing.T, o Options, receivers ...*receiver) (*Deliverer, *clockwork.FakeClock, observed) {
	t.Helper()
	clk := clockwork.NewFakeClockAt(time.Now().Truncate(time.Second))
	obs := make(observed, 1000)
	for _, r := range receivers {
		o.URLs = append(o.URLs, r.URL)
	}
	o.Secret, o.Clock, o.Rand, o.Observe = testSecret, clk, maxJitter, obs.observe
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return d, clk, obs
}

func TestDeliverSigned(t *testing.T) {
	a, b := newReceiver(t, nil), newReceiver(t, nil)
	d, clk, obs := newCore(t, Options{}, a, b)
	run(t, d)
	outputs := map[string][]byte{}
	for i := range 3 {
		id := fmt.Sprintf("call-%d:user-1:hang", i)
		outputs[id] = fmt.Appendf(nil, `{"message":{"type":"hang","call":{"id":"call-%d"}}}`, i)
		d.Deliver(id, outputs[id])
	}
	for range 6 {
		if at := obs.next(t); at.Outcome != Delivered || at.Status != 200 || at.Attempts != 1 {
			t.Errorf("attempt %+v, want delivered at once", at)
		}
	}
	for _, r := range []*receiver{a, b} {
		got := r.deliveries()
		if len(got) != 3 {
			t.Fatalf("%d deliveries, want 3", len(got))
		}
		for _, dl := range got {
			if dl.verifyErr != nil {
				t.Errorf("%s: signature: %v", dl.id, dl.verifyErr)
			}
			if !bytes.Equal(dl.body, outputs[dl.id]) {
				t.Errorf("%s: body %q, want the output unchanged", dl.id, dl.body)
			}
			if dl.timestamp != clk.Now().Unix() {
				t.Errorf("%s: webhook-timestamp %d, want the attempt's %d", dl.id, dl.timestamp, clk.Now().Unix())
			}
			if ct := dl.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
		}
	}
	if st := d.Stats(); st.Outcomes[Delivered] != 6 || st.Held != 0 || st.Attempts != 6 {
		t.Errorf("stats %+v", st)
	}
}

// Each failure that may pass is retried after its wait, with a fresh timestamp, and
// then delivered; a final refusal is given up at once.
func TestDeliverRetries(t *testing.T) {
	tests := []struct {
		name      string
		first     answer
		wantWait  time.Duration // 0: given up
		wantError bool
	}{
		{name: "500", first: answer{status: 500}, wantWait: time.Second},
		{name: "502", first: answer{status: 502}, wantWait: time.Second},
		{name: "timeout", first: answer{hang: true}, wantWait: time.Second, wantError: true},
		{name: "408", first: answer{status: 408}, wantWait: time.Second},
		{name: "429", first: answer{status: 429}, wantWait: time.Second},
		{name: "429 with Retry-After", first: answer{status: 429, retryAfter: "7"}, wantWait: 7 * time.Second},
		{name: "503 with Retry-After over the cap", first: answer{status: 503, retryAfter: "3600"}, wantWait: time.Minute},
		{name: "302", first: answer{status: 302}, wantWait: time.Second},
		{name: "400", first: answer{status: 400}},
		{name: "401", first: answer{status: 401}},
		{name: "404", first: answer{status: 404}},
		{name: "422", first: answer{status: 422}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, func(_ string, try int) answer {
				if try == 1 {
					return tt.first
				}
				return answer{status: 204}
			})
			o := Options{} // the default timeout, 5 s: only a hang may time out
			if tt.first.hang {
				o.Timeout = 100 * time.Millisecond
			}
			d, clk, obs := newCore(t, o, r)
			run(t, d)
			d.Deliver("c1:user-1:hang", []byte(`{"message":{"type":"hang"}}`))

			first := obs.next(t)
			if tt.wantWait == 0 {
				if first.Outcome != GaveUp || first.Status != tt.first.status {
					t.Fatalf("attempt %+v, want given up", first)
				}
				if st := d.Stats(); st.Held != 0 || st.Outcomes[GaveUp] != 1 {
					t.Errorf("stats %+v, want the output let go", st) // so no retry can come
				}
				return
			}
			if first.Outcome != Retried || first.Wait != tt.wantWait || (first.Err != nil) != tt.wantError {
				t.Fatalf("attempt %+v, want retried after %v", first, tt.wantWait)
			}
			if err := clk.BlockUntilContext(context.Background(), 1); err != nil {
				t.Fatal(err)
			}
			clk.Advance(tt.wantWait - time.Millisecond)
			clk.Advance(time.Millisecond) // due only now
			second := obs.next(t)
			if second.Outcome != Delivered || second.Attempts != 2 || second.Status != 204 {
				t.Fatalf("second attempt %+v, want delivered", second)
			}
			got := r.deliveries()
			if len(got) != 2 {
				t.Fatalf("%d requests, want 2", len(got))
			}
			for _, dl := range got {
				if dl.id != "c1:user-1:hang" || dl.verifyErr != nil {
					t.Errorf("delivery %s: %v", dl.id, dl.verifyErr)
				}
			}
			if got[1].timestamp-got[0].timestamp != int64(tt.wantWait/time.Second) {
				t.Errorf("timestamps %d then %d: want the retry's own, %v later", got[0].timestamp, got[1].timestamp, tt.wantWait)
			}
			if st := d.Stats(); st.Outcomes[Retried] != 1 || st.Outcomes[Delivered] != 1 || st.Held != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// The retry is not made before the receiver's Retry-After: the output is still
// waiting a moment before it.
func TestDeliverHonoursRetryAfter(t *testing.T) {
	r := newReceiver(t, func(_ string, try int) answer {
		if try == 1 {
			return answer{status: 503, retryAfter: "20"}
		}
		return answer{status: 200}
	})
	d, clk, obs := newCore(t, Options{}, r)
	run(t, d)
	d.Deliver("c1:user-1:hang", []byte(`{}`))
	if a := obs.next(t); a.Outcome != Retried || a.Wait != 20*time.Second {
		t.Fatalf("attempt %+v, want a retry after 20 s", a)
	}
	if err := clk.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	clk.Advance(19 * time.Second)
	if err := clk.BlockUntilContext(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	d.eps[0].mu.Lock()
	waiting := len(d.eps[0].waiting)
	d.eps[0].mu.Unlock()
	if waiting != 1 || len(r.deliveries()) != 1 {
		t.Fatalf("19 s after a Retry-After of 20 s: %d waiting, %d requests; want the output still waiting", waiting, len(r.deliveries()))
	}
	clk.Advance(time.Second)
	if a := obs.next(t); a.Outcome != Delivered {
		t.Fatalf("attempt %+v, want delivered", a)
	}
}

// An output that keeps failing is retried with growing waits until its max age, then
// given up.
func TestDeliverGivesUpAtMaxAge(t *testing.T) {
	r := newReceiver(t, func(string, int) answer { return answer{status: 500} })
	d, clk, obs := newCore(t, Options{MaxAge: 30 * time.Second}, r)
	run(t, d)
	d.Deliver("c1:user-1:hang", []byte(`{}`))
	var waits []time.Duration
	for {
		a := obs.next(t)
		if a.Outcome == GaveUp {
			if a.Attempts != len(waits)+1 {
				t.Errorf("given up after %d attempts, want %d", a.Attempts, len(waits)+1)
			}
			break
		}
		waits = append(waits, a.Wait)
		if err := clk.BlockUntilContext(context.Background(), 1); err != nil {
			t.Fatal(err)
		}
		clk.Advance(a.Wait)
	}
	// 1 + 2 + 4 + 8 = 15 s; the next wait, 16 s, would end past 30 s.
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Errorf("waits %v, want %v", waits, want)
	}
	if st := d.Stats(); st.Held != 0 || st.Outcomes[GaveUp] != 1 || st.Outcomes[Retried] != 4 || st.Attempts != 5 {
		t.Errorf("stats %+v", st)
	}
}

// Past its queue, a URL drops outputs rather than block the caller.
func TestDeliverQueueFull(t *testing.T) {
	r := newReceiver(t, nil)
	d, _, obs := newCore(t, Options{Queue: 2}, r)
	for i := range 3 {
		d.Deliver(fmt.Sprintf("c%d:user-1:hang", i), []byte(`{}`))
	}
	if st := d.Stats(); st.Dropped != 1 || st.Held != 2 {
		t.Errorf("stats %+v, want 1 dropped and 2 held", st)
	}
	run(t, d) // outputs handed in before Run are delivered once it runs
	obs.next(t)
	obs.next(t)
	if got := r.delivered(); len(got) != 2 {
		t.Errorf("delivered %v, want 2 outputs", got)
	}
}

// A stop leaves the undelivered outputs held, and Run returns nil without waiting for
// the retries.
func TestDeliverStops(t *testing.T) {
	r := newReceiver(t, func(string, int) answer { return answer{status: 500} })
	d, _, obs := newCore(t, Options{}, r)
	stop := run(t, d)
	d.Deliver("c1:user-1:hang", []byte(`{}`))
	obs.next(t)
	stop()
	if st := d.Stats(); st.Held != 1 {
		t.Errorf("held %d after the stop, want 1", st.Held)
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name string
		give Options
	}{
		{name: "no URL", give: Options{Secret: testSecret}},
		{name: "no secret", give: Options{URLs: []string{"http://x"}}},
		{name: "a secret not base64", give: Options{URLs: []string{"http://x"}, Secret: "whsec_!!"}},
		{name: "a URL without a scheme", give: Options{URLs: []string{"example.com/hook"}, Secret: testSecret}},
		{name: "ftp", give: Options{URLs: []string{"ftp://example.com/hook"}, Secret: testSecret}},
		{name: "a URL twice", give: Options{URLs: []string{"http://x/a", "http://x/a"}, Secret: testSecret}},
		{name: "max backoff under the initial", give: Options{URLs: []string{"http://x"}, Secret: testSecret, InitialBackoff: time.Minute, MaxBackoff: time.Second}},
	}
	for _, tt := range tests {
		if _, err := New(tt.give); !errors.Is(err, ErrOptions) {
			t.Errorf("%s: New = %v, want ErrOptions", tt.name, err)
		}
	}
	// A URL's credentials never show in an error.
	_, err := New(Options{URLs: []string{"http://user:pa55@x/a?token=t0k", "http://user:pa55@x/a?token=t0k"}, Secret: testSecret})
	if err == nil || bytes.Contains([]byte(err.Error()), []byte("pa55")) || bytes.Contains([]byte(err.Error()), []byte("t0k")) {
		t.Errorf("error %v shows a credential", err)
	}
}

// An attempt's error, which is logged, shows no credential of the URL.
func TestAttemptErrorRedacted(t *testing.T) {
	r := newReceiver(t, nil)
	r.Close() // nothing listens: the attempt fails with the URL in its error
	clk := clockwork.NewFakeClockAt(time.Now())
	obs := make(observed, 10)
	d, err := New(Options{URLs: []string{"http://user:pa55@" + r.Listener.Addr().String() + "/hook?token=t0k"}, Secret: testSecret, Clock: clk, Observe: obs.observe})
	if err != nil {
		t.Fatal(err)
	}
	run(t, d)
	d.Deliver("c1:user-1:hang", []byte(`{}`))
	a := obs.next(t)
	if a.Err == nil || a.Outcome != Retried {
		t.Fatalf("attempt %+v, want a retried error", a)
	}
	if msg := a.Err.Error(); bytes.Contains([]byte(msg), []byte("t0k")) || bytes.Contains([]byte(msg), []byte("pa55")) {
		t.Errorf("error %q shows a credential", msg)
	}
}

// TestDeliverWait: Wait returns once the outputs held are delivered or given up, and
// with ctx's error while one still waits for its retry (a shutdown's deadline).
func TestDeliverWait(t *testing.T) {
	r := newReceiver(t, func(id string, try int) answer {
		if id == "c2:user-1:hang" && try == 1 {
			return answer{status: 503}
		}
		return answer{status: 204}
	})
	d, clk, obs := newCore(t, Options{}, r)
	if err := d.Wait(context.Background()); err != nil {
		t.Fatalf("Wait with nothing held: %v", err)
	}
	run(t, d)
	d.Deliver("c1:user-1:hang", []byte(`{}`))
	d.Deliver("c2:user-1:hang", []byte(`{}`))
	obs.next(t)
	obs.next(t) // c1 delivered, c2 waits for its retry
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with an output waiting for its retry = %v, want the context's error", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- d.Wait(context.Background()) }()
	clk.BlockUntilContext(context.Background(), 1) // the retry's timer
	clk.Advance(time.Hour)
	if a := obs.next(t); a.Outcome != Delivered || a.Attempts != 2 {
		t.Errorf("the retry: %+v, want delivered at the second attempt", a)
	}
	if err := <-waited; err != nil {
		t.Errorf("Wait = %v after every output was delivered", err)
	}
	if st := d.Stats(); st.Outcomes[Delivered] != 2 || st.Held != 0 {
		t.Errorf("stats %+v, want 2 delivered, none held", st)
	}
}
