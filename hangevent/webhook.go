package hangevent

import (
	"fmt"
	"net/http"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// VerifyWebhook checks that a webhook delivery comes from hangwatch: that the
// webhook-signature header holds the HMAC-SHA256 of webhook-id, webhook-timestamp and
// body keyed by secret (hangwatch's --deliver-secret, "whsec_" and base64), and that
// webhook-timestamp is within 5 minutes of now (Standard Webhooks). The body must be
// the bytes as received. A receiver should also drop a webhook-id it has already seen:
// a delivery is retried until it is acknowledged, so it may come twice.
func VerifyWebhook(secret string, headers http.Header, body []byte) error {
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		return fmt.Errorf("verify webhook: secret: %w", err)
	}
	if err := wh.Verify(body, headers); err != nil {
		return fmt.Errorf("verify webhook: %w", err)
	}
	return nil
}
