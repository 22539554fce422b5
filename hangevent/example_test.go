package hangevent_test

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/hangwatch/hangwatch/hangevent"
)

func Example_parse() {
	data := []byte(`{"message":{"timestamp":1772702490138,"type":"hang",
		"call":{"id":"call-7f3a","teamId":"team-42","status":"ongoing"},
		"assistant":{},"messages":[],"phone":{},"customer":{},"analysis":{},
		"hang":{"reason":"turn-timeout","stage":"awaiting-tool","userMessageId":"user-3",
			"firstUserMessageId":"user-2","waitMs":5003,"thresholdMs":5000}}}`)
	ev, err := hangevent.Parse(data)
	if err != nil {
		fmt.Println(err)
		return
	}
	h := ev.Message.Hang
	fmt.Println(ev.Kind(), ev.CallID(), ev.TeamID(), h.Reason, h.Stage, h.WaitMs)
	// Output: hang call-7f3a team-42 turn-timeout awaiting-tool 5003
}

func ExampleSubject() {
	fmt.Println(hangevent.Subject(hangevent.KindHang, "team-42", "call-7f3a"))
	fmt.Println(hangevent.Subject(hangevent.KindResolved, "", "call.7f3a"))
	// Output:
	// voice.hang.team-42.call-7f3a
	// voice.hang-resolved._.call_7f3a
}

func ExampleWildcards() {
	for _, s := range hangevent.Wildcards() {
		fmt.Println(s)
	}
	// Output:
	// voice.hang.*.*
	// voice.hang-resolved.*.*
	// voice.hang-unresolved.*.*
}

func ExampleVerifyWebhook() {
	secret := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	body := []byte(`{"message":{"type":"hang","call":{"id":"call-7f3a"}}}`)

	// What hangwatch sends, signed with the same secret...
	wh, _ := standardwebhooks.NewWebhook(secret)
	now := time.Now()
	sig, _ := wh.Sign("call-7f3a:user-2:hang", now, body)
	headers := http.Header{}
	headers.Set("webhook-id", "call-7f3a:user-2:hang")
	headers.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	headers.Set("webhook-signature", sig)

	// ...and what a receiver does with it.
	if err := hangevent.VerifyWebhook(secret, headers, body); err != nil {
		fmt.Println("refused:", err)
		return
	}
	fmt.Println("verified")
	// Output: verified
}
