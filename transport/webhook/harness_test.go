package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hangwatch/hangwatch/internal/natstest"
)

const (
	testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	waitFor    = natstest.WaitFor
)

// delivery is a request a receiver got.
type delivery struct {
	id        string
	timestamp int64
	body      []byte
	header    http.Header
	verifyErr error // the library's Verify of the signature
	status    int   // what the receiver answered; 0 while it has not, or when it hung
}

// answer is what a receiver answers a request; hang makes it wait until the client
// gives up.
type answer struct {
	status     int
	retryAfter string
	hang       bool
}

// receiver is a real HTTP endpoint that verifies every delivery with the Standard
// Webhooks library and answers as its script says.
type receiver struct {
	*httptest.Server
	wh *standardwebhooks.Webhook

	mu     sync.Mutex
	got    []delivery
	tries  map[string]int
	script func(id string, try int) answer // try counts from 1 per id
	notify chan struct{}
}

func newReceiver(t *testing.T, script func(id string, try int) answer) *receiver {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{wh: wh, tries: map[string]int{}, script: script, notify: make(chan struct{}, 1)}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	d := delivery{id: req.Header.Get("webhook-id"), body: body, header: req.Header.Clone()}
	d.timestamp, _ = strconv.ParseInt(req.Header.Get("webhook-timestamp"), 10, 64)
	d.verifyErr = r.wh.Verify(body, req.Header)
	r.mu.Lock()
	r.tries[d.id]++
	a := answer{status: http.StatusOK}
	if r.script != nil {
		a = r.script(d.id, r.tries[d.id])
	}
	i := len(r.got)
	r.got = append(r.got, d) // in the order they arrive; the status once answered
	r.mu.Unlock()
	if a.hang {
		<-req.Context().Done()
	} else {
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
		r.mu.Lock()
		r.got[i].status = a.status
		r.mu.Unlock()
	}
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

// setScript replaces the script.
func (r *receiver) setScript(script func(id string, try int) answer) {
	r.mu.Lock()
	r.script = script
	r.mu.Unlock()
}

// deliveries returns what the receiver got so far.
func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

// delivered returns the ids answered 2xx whose signature verified, with how many times.
func (r *receiver) delivered() map[string]int {
	out := map[string]int{}
	for _, d := range r.deliveries() {
		if d.status >= 200 && d.status < 300 && d.verifyErr == nil {
			out[d.id]++
		}
	}
	return out
}

// waitUntil polls cond until it holds; it only sleeps in the tests that run on the
// real clock (JetStream mode).
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// observed collects the attempts a deliverer reports.
type observed chan Attempt

func (o observed) observe(a Attempt) { o <- a }

func (o observed) next(t *testing.T) Attempt {
	t.Helper()
	select {
	case a := <-o:
		return a
	case <-time.After(waitFor):
		t.Fatal("no attempt")
		return Attempt{}
	}
}

// run runs a deliverer until the test ends, checking that Run returns nil.
func run(t *testing.T, runner interface{ Run(context.Context) error }) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx) }()
	stopped := false
	t.Cleanup(func() {
		cancel()
		if stopped {
			return
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return")
		}
	})
	return func() {
		cancel()
		stopped = true
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v, want nil", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not return")
		}
	}
}
