package tasks

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type ctxKey struct{}

// runOne runs one task of type typ on a runner with mw and returns it
// once final.
func runOne(t *testing.T, mw []Middleware, typ string, opts ...EnqueueOption) *Task {
	t.Helper()
	r := NewRunner(Options{Logger: quiet, Middleware: mw})
	done := make(chan *Task, 1)
	sub, err := r.Subscribe(context.Background(), func(e Event) {
		switch e.Kind {
		case EventSucceeded, EventDead, EventFailed:
			task, _ := r.Get(context.Background(), e.TaskID)
			done <- task
		}
	})
	require.NoError(t, err)
	defer sub.Close()
	Handle(r, "ok", func(ctx context.Context, j *Job[string]) error {
		if v, _ := ctx.Value(ctxKey{}).(string); v != "" {
			return fmt.Errorf("saw %s", v)
		}
		return nil
	})
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error)
	go func() { ran <- r.Run(ctx) }()
	_, err = r.Enqueue(ctx, typ, "x", opts...)
	require.NoError(t, err)
	task := <-done
	cancel()
	<-ran
	return task
}

func TestMiddlewareOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var log []string
		rec := func(name string) Middleware {
			return func(next HandlerFunc) HandlerFunc {
				return func(ctx context.Context, at *Attempt) error {
					mu.Lock()
					log = append(log, name+">"+at.Type)
					mu.Unlock()
					err := next(ctx, at)
					mu.Lock()
					log = append(log, "<"+name)
					mu.Unlock()
					return err
				}
			}
		}
		task := runOne(t, []Middleware{rec("a"), nil, rec("b")}, "ok")
		assert.Equal(t, Succeeded, task.State)
		assert.Equal(t, []string{"a>ok", "b>ok", "<b", "<a"}, log)
	})
}

func TestMiddlewareContextAndOutcome(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The handler gets the middleware's context.
		withValue := func(next HandlerFunc) HandlerFunc {
			return func(ctx context.Context, at *Attempt) error {
				return next(context.WithValue(ctx, ctxKey{}, "value"), at)
			}
		}
		task := runOne(t, []Middleware{withValue}, "ok", MaxAttempts(1))
		assert.Equal(t, Dead, task.State)
		assert.Equal(t, "saw value", task.LastError)

		// A middleware that doesn't call next decides the outcome.
		refuse := func(HandlerFunc) HandlerFunc {
			return func(context.Context, *Attempt) error { return SkipRetry(errors.New("refused")) }
		}
		task = runOne(t, []Middleware{refuse}, "ok")
		assert.Equal(t, Dead, task.State)
		assert.Contains(t, task.LastError, "refused")

		// Middleware runs for a type with no handler too.
		var seen string
		peek := func(next HandlerFunc) HandlerFunc {
			return func(ctx context.Context, at *Attempt) error { seen = at.Type; return next(ctx, at) }
		}
		task = runOne(t, []Middleware{peek}, "unknown", MaxAttempts(1))
		assert.Equal(t, "unknown", seen)
		assert.Contains(t, task.LastError, `no handler for task type "unknown"`)
	})
}

func TestMiddlewarePanic(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		boom := func(next HandlerFunc) HandlerFunc {
			return func(ctx context.Context, at *Attempt) error { panic("middleware boom") }
		}
		task := runOne(t, []Middleware{boom}, "ok", MaxAttempts(1))
		assert.Equal(t, Dead, task.State)
		assert.Contains(t, task.LastError, "handler panicked: middleware boom")

		// And a panic after next returned.
		late := func(next HandlerFunc) HandlerFunc {
			return func(ctx context.Context, at *Attempt) error { _ = next(ctx, at); panic("after") }
		}
		task = runOne(t, []Middleware{late}, "ok", MaxAttempts(1))
		assert.Equal(t, Dead, task.State)
		assert.Contains(t, task.LastError, "after")
	})
}

func TestMiddlewareNilResult(t *testing.T) {
	assert.PanicsWithValue(t, "tasks: Options.Middleware[0] returned a nil HandlerFunc", func() {
		NewRunner(Options{Middleware: []Middleware{func(HandlerFunc) HandlerFunc { return nil }}})
	})
}
