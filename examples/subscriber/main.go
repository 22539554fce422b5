// Command subscriber prints one line per hangwatch output: it subscribes to the hang,
// hang-resolved and hang-unresolved subjects and parses each event with hangevent.
//
//	go run ./examples/subscriber --nats-url nats://127.0.0.1:4222
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"syscall"

	"github.com/nats-io/nats.go"

	"github.com/hangwatch/hangwatch/hangevent"
)

func main() {
	url := flag.String("nats-url", nats.DefaultURL, "NATS server URL")
	flag.Parse()

	nc, err := nats.Connect(*url, nats.Name("hangwatch example subscriber"), nats.MaxReconnects(-1))
	if err != nil {
		log.Fatalf("connect to NATS at %s: %v", *url, err)
	}
	// One channel for the three subjects, filled in the order the server sent: a call's
	// hang is printed before its resolution (a callback per subscription would run on a
	// goroutine of its own, and the two could swap).
	msgs := make(chan *nats.Msg, 1024)
	for _, subject := range hangevent.Wildcards() {
		if _, err := nc.ChanSubscribe(subject, msgs); err != nil {
			log.Fatalf("subscribe to %s: %v", subject, err)
		}
	}
	fmt.Fprintf(os.Stderr, "listening on %v\n", hangevent.Wildcards())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	for {
		select {
		case m := <-msgs:
			print(m)
		case <-ctx.Done():
			nc.Close()
			return
		}
	}
}

// print writes one line per output; a message that is not one is reported and skipped.
func print(m *nats.Msg) {
	ev, err := hangevent.Parse(m.Data)
	if err != nil {
		log.Printf("%s: %v", m.Subject, err)
		return
	}
	h := ev.Message.Hang
	switch ev.Kind() {
	case hangevent.KindHang:
		fmt.Printf("HANG       call=%s team=%s reason=%s stage=%s waited=%dms user=%s\n",
			ev.CallID(), ev.TeamID(), h.Reason, h.Stage, h.WaitMs, h.UserMessageID)
	case hangevent.KindResolved:
		fmt.Printf("RESOLVED   call=%s team=%s waited=%dms reply=%s\n", ev.CallID(), ev.TeamID(), h.WaitMs, h.ReplyMessageID)
	case hangevent.KindUnresolved:
		fmt.Printf("UNRESOLVED call=%s team=%s waited=%dms ended=%s\n", ev.CallID(), ev.TeamID(), h.WaitMs, h.EndedReason)
	}
}
