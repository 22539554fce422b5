package hangevent

import (
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

const testSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// signed returns the headers hangwatch would send with body, at ts.
func signed(t *testing.T, secret, id string, ts time.Time, body []byte) http.Header {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := wh.Sign(id, ts, body)
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(ts.Unix(), 10))
	h.Set("webhook-signature", sig)
	return h
}

func TestVerifyWebhook(t *testing.T) {
	body := []byte(`{"message":{"type":"hang","call":{"id":"c1"}}}`)
	now := time.Now()
	tests := []struct {
		name    string
		secret  string
		headers http.Header
		body    []byte
		wantErr error
	}{
		{name: "valid", secret: testSecret, headers: signed(t, testSecret, "c1:user-1:hang", now, body), body: body},
		{name: "another secret", secret: "whsec_" + "c2VjcmV0LXR3bw==", headers: signed(t, testSecret, "c1:user-1:hang", now, body), body: body,
			wantErr: standardwebhooks.ErrNoMatchingSignature},
		{name: "body changed", secret: testSecret, headers: signed(t, testSecret, "c1:user-1:hang", now, body), body: append([]byte(" "), body...),
			wantErr: standardwebhooks.ErrNoMatchingSignature},
		{name: "too old", secret: testSecret, headers: signed(t, testSecret, "c1:user-1:hang", now.Add(-10*time.Minute), body), body: body,
			wantErr: standardwebhooks.ErrMessageTooOld},
		{name: "no headers", secret: testSecret, headers: http.Header{}, body: body, wantErr: standardwebhooks.ErrRequiredHeaders},
		{name: "bad secret", secret: "whsec_!!", headers: signed(t, testSecret, "c1:user-1:hang", now, body), body: body},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := VerifyWebhook(tt.secret, tt.headers, tt.body)
			switch {
			case tt.name == "valid":
				if err != nil {
					t.Fatalf("VerifyWebhook = %v, want nil", err)
				}
			case err == nil:
				t.Fatal("VerifyWebhook = nil, want an error")
			case tt.wantErr != nil && !errors.Is(err, tt.wantErr):
				t.Errorf("VerifyWebhook = %v, want %v", err, tt.wantErr)
			}
		})
	}
}
