package tasks_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/rtkit/rtkit/tasks"
)

type email struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
}

func Example() {
	r := tasks.NewRunner(tasks.Options{})
	done := make(chan struct{})
	tasks.Handle(r, "email.send", func(ctx context.Context, j *tasks.Job[email]) error {
		fmt.Printf("attempt %d: mailing %s about %q\n", j.Attempt, j.Payload.To, j.Payload.Subject)
		close(done)
		return nil
	})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- r.Run(ctx) }()

	task, err := r.Enqueue(ctx, "email.send", email{To: "ada@example.com", Subject: "welcome"})
	if err != nil {
		log.Fatal(err)
	}
	<-done
	stop()
	<-ran // Run drains before it returns
	task, _ = r.Get(context.Background(), task.ID)
	fmt.Println(task.State)
	// Output:
	// attempt 1: mailing ada@example.com about "welcome"
	// succeeded
}

func ExampleSkipRetry() {
	r := tasks.NewRunner(tasks.Options{})
	failed := make(chan tasks.Event, 1)
	sub, err := r.Subscribe(context.Background(), func(e tasks.Event) {
		if e.Kind == tasks.EventFailed {
			failed <- e
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	tasks.Handle(r, "charge", func(ctx context.Context, j *tasks.Job[int]) error {
		if j.Payload <= 0 {
			return tasks.SkipRetry(errors.New("amount must be positive")) // retrying won't help
		}
		return nil
	})
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- r.Run(ctx) }()
	if _, err := r.Enqueue(ctx, "charge", -5); err != nil {
		log.Fatal(err)
	}
	e := <-failed
	stop()
	<-ran
	fmt.Println(e.Kind, e.Attempt, e.Error)
	// Output: failed 1 tasks: skip retry: amount must be positive
}

func ExampleUnique() {
	r := tasks.NewRunner(tasks.Options{})
	ctx := context.Background()
	first, err := r.Enqueue(ctx, "report.build", nil, tasks.Unique("report:2026-11", time.Hour), tasks.Delay(time.Minute))
	if err != nil {
		log.Fatal(err)
	}
	_, err = r.Enqueue(ctx, "report.build", nil, tasks.Unique("report:2026-11", time.Hour))
	var dup *tasks.DuplicateError
	fmt.Println(errors.As(err, &dup), dup.ID == first.ID)
	// Output: true true
}

func ExampleParseCron() {
	s, err := tasks.ParseCron("30 9 * * mon-fri")
	if err != nil {
		log.Fatal(err)
	}
	t := time.Date(2026, 11, 27, 10, 0, 0, 0, time.UTC) // a Friday
	fmt.Println(s.Next(t))
	// Output: 2026-11-30 09:30:00 +0000 UTC
}

func ExampleRunner_Periodic() {
	r := tasks.NewRunner(tasks.Options{})
	tasks.Handle(r, "cleanup", func(ctx context.Context, j *tasks.Job[struct{}]) error { return nil })
	// Every runner of the store may register it: each tick fires once.
	r.Periodic("nightly-cleanup", tasks.Every(24*time.Hour), "cleanup", nil, tasks.Timeout(time.Hour))
	fmt.Println(r.Node() != "")
	// Output: true
}

func ExampleRunner_List() {
	r := tasks.NewRunner(tasks.Options{})
	ctx := context.Background()
	for i := range 3 {
		if _, err := r.Enqueue(ctx, "resize", i, tasks.Queue("images")); err != nil {
			log.Fatal(err)
		}
	}
	page, err := r.List(ctx, tasks.ListOptions{Queue: "images", State: tasks.Pending, Limit: 2})
	if err != nil {
		log.Fatal(err)
	}
	for _, t := range page.Tasks {
		fmt.Println(t.Type, string(t.Payload))
	}
	counts, _ := r.Counts(ctx)
	fmt.Println("pending:", counts["images"][tasks.Pending], "more:", page.Next != "")
	// Output:
	// resize 0
	// resize 1
	// pending: 3 more: true
}

// A caller-chosen ID makes enqueueing idempotent across the caller's own
// retries: the second Enqueue of "order-42-receipt" changes nothing and
// names the task that exists.
func ExampleID() {
	r := tasks.NewRunner(tasks.Options{})
	ctx := context.Background()
	for range 2 { // say, an HTTP handler retried by its client
		_, err := r.Enqueue(ctx, "email.send", email{To: "ada@example.com", Subject: "your receipt"}, tasks.ID("order-42-receipt"))
		var dup *tasks.DuplicateError
		switch {
		case errors.As(err, &dup):
			fmt.Println("already enqueued:", dup.ID)
		case err != nil:
			log.Fatal(err)
		default:
			fmt.Println("enqueued")
		}
	}
	// Output:
	// enqueued
	// already enqueued: order-42-receipt
}
