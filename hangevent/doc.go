// Package hangevent is for the programs that consume hangwatch's output: the types of
// the hang, hang-resolved and hang-unresolved events (SPEC §3), Parse to read one, the
// subjects they are published on, and VerifyWebhook for a receiver of webhook
// deliveries.
//
// A NATS subscriber subscribes to Wildcards and parses each message:
//
//	for _, s := range hangevent.Wildcards() {
//		nc.Subscribe(s, func(m *nats.Msg) {
//			ev, err := hangevent.Parse(m.Data)
//			...
//		})
//	}
//
// A webhook receiver verifies the signature before it trusts the body:
//
//	body, _ := io.ReadAll(r.Body)
//	err := hangevent.VerifyWebhook(secret, r.Header, body)
//
// The package depends on the standard library and the Standard Webhooks library only.
package hangevent
