package tasks

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Attempt describes the attempt of a task that a [Middleware] wraps. It
// is valid while the attempt runs; middleware must not change it.
type Attempt struct {
	ID          string
	Type        string
	Queue       string
	Attempt     int // 1 for the first attempt
	MaxAttempts int
	// Payload is the task's JSON payload, not yet decoded; read-only.
	Payload json.RawMessage
	// StartedAt is when the store leased the attempt (on its clock).
	StartedAt time.Time
	// Node is the runner running the attempt.
	Node string

	a *attempt
}

// HandlerFunc runs one attempt of a task: the innermost one decodes the
// payload and calls the handler registered with [Handle] for the task's
// type, with ctx as its context.
type HandlerFunc func(ctx context.Context, at *Attempt) error

// Middleware wraps every attempt's handler, for logging, tracing,
// metrics or recovering panics in a way of your own. It gets the next
// HandlerFunc and returns one that calls it (or not: the attempt's
// outcome is what the returned function returns). It may pass next a
// context derived from the one it got (with values, a span); the
// handler's context then is that one. A panic anywhere in the chain,
// middleware included, fails the attempt with a [*PanicError], as a
// handler's panic does.
type Middleware func(next HandlerFunc) HandlerFunc

// chain composes mw around the innermost handler: mw[0] is the outermost.
func chain(mw []Middleware) HandlerFunc {
	if len(mw) == 0 {
		return nil
	}
	h := HandlerFunc(runJob)
	for i := len(mw) - 1; i >= 0; i-- {
		if mw[i] == nil {
			continue
		}
		h = mw[i](h)
		if h == nil {
			panic(fmt.Sprintf("tasks: Options.Middleware[%d] returned a nil HandlerFunc", i))
		}
	}
	return h
}

// runJob is the innermost HandlerFunc: the attempt's handler.
func runJob(ctx context.Context, at *Attempt) error {
	a := at.a
	if a == nil {
		return fmt.Errorf("tasks: HandlerFunc called with an Attempt the runner did not make")
	}
	if a.job == nil {
		return fmt.Errorf("tasks: no handler for task type %q on node %s", at.Type, at.Node)
	}
	return a.job.run(ctx)
}

// callChain runs the attempt through the runner's middleware.
func (r *Runner) callChain(a *attempt) error {
	l, t := a.lease, a.lease.Task
	at := &Attempt{ID: t.ID, Type: t.Type, Queue: t.Queue, Attempt: l.Attempt, MaxAttempts: t.MaxAttempts,
		Payload: t.Payload, StartedAt: l.StartedAt, Node: r.node, a: a}
	return r.chain(a, at)
}
