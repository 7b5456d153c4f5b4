package tasks

import (
	"context"
	"encoding/json"
	"time"

	"github.com/rtkit/rtkit"
)

// EventKind names what happened to a task.
type EventKind string

// The kinds of [Event].
const (
	// EventEnqueued: the task was enqueued (also by a periodic schedule).
	EventEnqueued EventKind = "enqueued"
	// EventStarted: an attempt started.
	EventStarted EventKind = "started"
	// EventProgress: the handler reported progress.
	EventProgress EventKind = "progress"
	// EventSucceeded: the attempt succeeded; the task is done.
	EventSucceeded EventKind = "succeeded"
	// EventRetrying: the attempt failed; the task runs again at RunAt.
	EventRetrying EventKind = "retrying"
	// EventFailed: the attempt failed with [SkipRetry]; the task is dead.
	EventFailed EventKind = "failed"
	// EventDead: the last attempt failed; the task is dead.
	EventDead EventKind = "dead"
	// EventInterrupted: the runner shut down before the attempt finished
	// and handed the task back; the attempt doesn't count.
	EventInterrupted EventKind = "interrupted"
	// EventCancelled: the task was cancelled.
	EventCancelled EventKind = "cancelled"
)

// Event is one change in a task's life, as [Runner.Subscribe] delivers it.
//
// A task's events arrive in order, with two exceptions: the enqueuing
// goroutine publishes "enqueued" after the store accepted the task, so the
// events of a worker that starts it at once may come first; and the
// "retrying" (or "dead") of a task whose lease expired is published by the
// maintenance that handed it back, after the store did, so a worker that
// starts it at once may come first too. A runner publishes the "retrying"
// and "interrupted" of its own attempts just before the store records
// them, so the next attempt's events never overtake them; if the store
// then cannot record the outcome (the runner logs it), the task still runs
// again, once its lease expires, rather than at RunAt.
type Event struct {
	Kind    EventKind `json:"kind"`
	TaskID  string    `json:"task_id"`
	Type    string    `json:"type"`
	Queue   string    `json:"queue"`
	Attempt int       `json:"attempt,omitempty"`
	// Time is when the event happened, on the emitting node's clock.
	Time time.Time `json:"time"`
	// Node is the runner that emitted the event.
	Node string `json:"node"`
	// Error is the failed attempt's error (retrying, failed, dead).
	Error string `json:"error,omitempty"`
	// RunAt is when a retrying or scheduled task is due.
	RunAt time.Time `json:"run_at,omitzero"`
	// Progress is the value a handler reported (progress).
	Progress json.RawMessage `json:"progress,omitempty"`
}

func newEvent(kind EventKind, t *Task, node string) Event {
	return Event{Kind: kind, TaskID: t.ID, Type: t.Type, Queue: t.Queue, Attempt: t.Attempt, Time: time.Now(), Node: node}
}

// leaseEvent is the event of a leased attempt.
func leaseEvent(kind EventKind, l *Lease, node string) Event {
	e := newEvent(kind, l.Task, node)
	e.Attempt = l.Attempt
	return e
}

// listening reports whether events may have a listener: a runner on its
// private backplane skips the work until something subscribes.
func (r *Runner) listening() bool { return !r.ownBP || r.listeners.Load() > 0 }

// emit publishes e on the runner's events topic.
func (r *Runner) emit(e Event) {
	if !r.listening() {
		return
	}
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := r.bp.Publish(ctx, r.topic, data, rtkit.PublishOptions{}); err != nil {
		r.log.Warn("tasks: publishing an event failed", "kind", e.Kind, "task", e.TaskID, "err", err)
	}
}

// Subscribe calls fn with every event of every runner that shares this
// runner's backplane and events topic: with a Redis backplane, events of
// all nodes. fn runs on the backplane's delivery path, one event at a
// time: it must not block (queue slow work). ctx bounds only the setup;
// the subscription lasts until its Close.
//
// The events are JSON objects on the topic [Options.EventsTopic], so an
// sse.Broker on the same backplane can stream them to a browser as they
// are.
func (r *Runner) Subscribe(ctx context.Context, fn func(Event)) (*rtkit.Subscription, error) {
	r.listeners.Add(1)
	sub, err := r.bp.Subscribe(ctx, r.topic, rtkit.SubscribeOptions{}, eventHandler{r, fn})
	if err != nil {
		r.listeners.Add(-1)
		return nil, err
	}
	return sub, nil
}

type eventHandler struct {
	r  *Runner
	fn func(Event)
}

func (h eventHandler) HandleMessage(m *rtkit.Message) {
	var e Event
	if err := json.Unmarshal(m.Data, &e); err != nil {
		h.r.log.Warn("tasks: undecodable event", "topic", m.Topic, "err", err)
		return
	}
	h.fn(e)
}

func (eventHandler) HandleGap(rtkit.ID) {}
