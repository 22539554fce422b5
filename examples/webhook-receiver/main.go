// Command webhook-receiver is an endpoint for hangwatch's --deliver-url: it verifies
// each delivery's Standard Webhooks signature with hangevent.VerifyWebhook, drops the
// deliveries it has already seen (a delivery is retried until it gets a 2xx, so it may
// come twice), and prints one line per output.
//
//	HANGWATCH_DELIVER_SECRET=whsec_... go run ./examples/webhook-receiver --listen 127.0.0.1:8080
package main

import (
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/hangwatch/hangwatch/hangevent"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "host:port to listen on")
	flag.Parse()
	secret := os.Getenv("HANGWATCH_DELIVER_SECRET") // the same secret as hangwatch's --deliver-secret
	if secret == "" {
		log.Fatal("set HANGWATCH_DELIVER_SECRET to hangwatch's --deliver-secret (whsec_...)")
	}

	var mu sync.Mutex
	seen := map[string]bool{} // a real receiver keeps the ids for a while, in its store
	http.HandleFunc("POST /hangs", func(w http.ResponseWriter, r *http.Request) {
		// The two lines that matter: the body as received, then the signature.
		body, _ := io.ReadAll(io.LimitReader(r.Body, 16<<20))
		if err := hangevent.VerifyWebhook(secret, r.Header, body); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized) // a 4xx: hangwatch does not retry
			return
		}
		id := r.Header.Get("webhook-id")
		mu.Lock()
		dup := seen[id]
		seen[id] = true
		mu.Unlock()
		if !dup {
			if ev, err := hangevent.Parse(body); err == nil {
				h := ev.Message.Hang
				fmt.Printf("%s call=%s team=%s reason=%s stage=%s waited=%dms\n", ev.Kind(), ev.CallID(), ev.TeamID(), h.Reason, h.Stage, h.WaitMs)
			}
		}
		w.WriteHeader(http.StatusNoContent) // 2xx: delivered, duplicate or not
	})
	srv := &http.Server{Addr: *listen, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second}
	log.Printf("receiving hangwatch deliveries on http://%s/hangs", *listen)
	log.Fatal(srv.ListenAndServe())
}
