package realtime_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/realtime"
)

// A hub with token authentication, a call handler and per-room
// authorization, and two Go clients chatting through it.
func Example() {
	hub := realtime.NewHub(realtime.Options{
		Authenticate: func(r *http.Request) (realtime.Identity, error) {
			user := r.URL.Query().Get("token") // use real tokens in real code
			if user == "" {
				return realtime.Identity{}, errors.New("no token")
			}
			return realtime.Identity{User: user}, nil
		},
		Authorize: func(ctx context.Context, id realtime.Identity, a realtime.Action) error {
			if a.Kind == realtime.ActionJoin && strings.HasPrefix(a.Room, "admin:") {
				return errors.New("admins only")
			}
			return nil
		},
	})
	hub.HandleCall("time", func(ctx context.Context, c *realtime.Call) (any, error) {
		return "it is always now", nil
	})
	srv := httptest.NewServer(hub)
	defer srv.Close()
	defer hub.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ada, err := realtime.Dial(ctx, srv.URL+"?token=ada", realtime.DialOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer ada.Close()
	bob, err := realtime.Dial(ctx, srv.URL+"?token=bob", realtime.DialOptions{})
	if err != nil {
		log.Fatal(err)
	}
	defer bob.Close()

	if _, err := ada.Join(ctx, "lobby", realtime.JoinOptions{}); err != nil {
		log.Fatal(err)
	}
	if _, err := bob.Join(ctx, "lobby", realtime.JoinOptions{}); err != nil {
		log.Fatal(err)
	}
	if _, err := bob.Join(ctx, "admin:ops", realtime.JoinOptions{}); err != nil {
		fmt.Println("join admin:ops:", err)
	}
	if _, err := bob.Publish(ctx, "lobby", map[string]string{"text": "hello"}); err != nil {
		log.Fatal(err)
	}
	for e := range ada.Events() {
		if e.Op == "msg" {
			fmt.Printf("%s says %s\n", e.From.User, e.Data)
			break
		}
	}
	var now string
	if err := ada.Call(ctx, "time", nil, &now); err != nil {
		log.Fatal(err)
	}
	fmt.Println(now)
	// Output:
	// join admin:ops: realtime: forbidden: not allowed to join
	// bob says {"text":"hello"}
	// it is always now
}

// The server publishes to a room from anywhere, e.g. an HTTP handler or a
// background task.
func ExampleHub_Publish() {
	hub := realtime.NewHub(realtime.Options{})
	defer hub.Shutdown(context.Background())
	ctx := context.Background()
	if _, err := hub.Publish(ctx, "news", map[string]string{"headline": "rtkit ships"}); err != nil {
		log.Fatal(err)
	}
	recent, err := hub.History(ctx, "news", 10)
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range recent {
		fmt.Printf("%s\n", m.Data)
	}
	// Output:
	// {"headline":"rtkit ships"}
}

// Code that watches a room on the backplane (to mail mentions, say)
// decodes what the hub published with DecodeMessage.
func ExampleDecodeMessage() {
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	defer bp.Close()
	hub := realtime.NewHub(realtime.Options{Backplane: bp})
	defer hub.Shutdown(context.Background())
	ctx := context.Background()
	if _, err := hub.Publish(ctx, "lobby", map[string]string{"text": "hi @ada"}); err != nil {
		panic(err)
	}
	hist, err := bp.History(ctx, "lobby", rtkit.HistoryOptions{})
	if err != nil {
		panic(err)
	}
	msg, ok := realtime.DecodeMessage(hist.Messages[0])
	fmt.Println(ok, msg.Room, string(msg.Data), msg.From.User == "")
	// Output: true lobby {"text":"hi @ada"} true
}

// Ephemeral state (a cursor, a progress bar) reaches the members connected
// now and never grows the history.
func ExampleHub_PublishEphemeral() {
	hub := realtime.NewHub(realtime.Options{})
	defer hub.Shutdown(context.Background())
	ctx := context.Background()
	if err := hub.PublishEphemeral(ctx, "build-42", map[string]int{"percent": 60}); err != nil {
		log.Fatal(err)
	}
	recent, err := hub.History(ctx, "build-42", 10)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(recent), "messages in history")
	// Output:
	// 0 messages in history
}
