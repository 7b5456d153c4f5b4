package sse_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http/httptest"
	"os"
	"time"

	"github.com/rtkit/rtkit/sse"
)

// A broker streaming a topic, and the Go client reading it.
func Example() {
	broker := sse.NewBroker(sse.Options{})
	srv := httptest.NewServer(broker)
	defer srv.Close()
	defer broker.Shutdown(context.Background())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	received := make(chan sse.Event)
	go func() {
		_ = sse.Subscribe(ctx, srv.URL+"?topic=orders", sse.ClientOptions{}, func(e sse.Event) error {
			received <- e
			return nil
		})
	}()
	for broker.Stats().Streams == 0 {
		time.Sleep(time.Millisecond)
	}
	if _, err := broker.Publish(ctx, "orders", sse.Event{Type: "created", Data: []byte(`{"id":42}`)}); err != nil {
		log.Fatal(err)
	}
	e := <-received
	fmt.Printf("%s: %s\n", e.Type, e.Data)
	cancel()
	// Output:
	// created: {"id":42}
}

// AppendEvent writes the wire format, splitting data on line breaks.
func ExampleAppendEvent() {
	b, err := sse.AppendEvent(nil, sse.Event{ID: "7", Type: "note", Data: []byte("two\nlines"), Retry: 3 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.Write(b)
	_, err = sse.AppendEvent(nil, sse.Event{ID: "bad\nid"})
	fmt.Println(errors.Is(err, sse.ErrInvalidEvent))
	// Output:
	// id: 7
	// event: note
	// data: two
	// data: lines
	// retry: 3000
	//
	// true
}
