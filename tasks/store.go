package tasks

import (
	"context"
	"fmt"
	"time"
)

// A Store keeps tasks and moves them between states atomically. The
// package has two: [MemoryStore] (the default, for one process) and
// [RedisStore] (durable, for many nodes); both pass the same conformance
// suite. The runner drives a store; applications use the [Runner]'s
// methods, not the store's.
//
// Every method is safe for concurrent use. Times are the store's own
// clock: the Redis store uses the Redis server's, so that nodes with
// slightly different clocks agree.
type Store interface {
	// Enqueue adds t (its ID, Type, Queue and options set; State Pending
	// or, with a future RunAt, Scheduled). It returns a [*DuplicateError],
	// changing nothing, when a task with t.ID exists (Key "") or
	// t.UniqueKey is held by a live task of the queue.
	Enqueue(ctx context.Context, t *Task) error

	// EnqueuePeriodic enqueues t for tick of the periodic schedule name,
	// unless a tick at or after it was already enqueued: it reports
	// whether it enqueued. This is how a tick fires once across nodes.
	EnqueuePeriodic(ctx context.Context, name string, tick time.Time, t *Task) (bool, error)

	// Claim leases up to max due tasks of the queues to worker for ttl,
	// taking queues in the order given (the runner orders them by weight
	// or priority). Due scheduled and retry tasks are claimable. Claim
	// doesn't block: it returns no lease when nothing is due. With an
	// error it may also return the leases it made before the error; the
	// caller runs them.
	Claim(ctx context.Context, worker string, queues []string, max int, ttl time.Duration) ([]*Lease, error)

	// Wait blocks until a task of the queues may be claimable: one was
	// enqueued or retried, or a scheduled one fell due, or until ctx ends.
	// It may return early; callers Claim and Wait again.
	Wait(ctx context.Context, queues []string) error

	// Renew extends the leases by ttl. It returns the IDs of those that
	// were lost (expired and reclaimed, deleted) and of those whose
	// tasks were asked to cancel. A task of the same worker and queue
	// that is not among leases is not renewed: a worker that lost track
	// of a task (its Finish gave up, its Claim's reply was lost) stops
	// renewing it, and Maintain hands it back as if its lease had expired
	// (attempt counted) about ttl after it was claimed, even while the
	// worker lives and renews its other tasks. A lease of no task
	// (Task.ID "", Task.Queue and Worker set) renews nothing and is
	// reported lost: the runner sends one to a queue where it may hold
	// such a task but runs none.
	Renew(ctx context.Context, leases []*Lease, ttl time.Duration) (lost, cancel []string, err error)

	// Finish ends the lease with an outcome. It returns [ErrLeaseLost]
	// when the lease is no longer the task's.
	Finish(ctx context.Context, l *Lease, o Outcome) error

	// Progress records a running task's progress value.
	Progress(ctx context.Context, l *Lease, data []byte) error

	// Maintain does the store's periodic work: it hands back tasks whose
	// lease expired (counting the attempt), drops final tasks past
	// retention, and repairs what a crash left inconsistent. The runner
	// calls it about once a second; it returns the tasks it handed back.
	Maintain(ctx context.Context) ([]*Task, error)

	// Get returns the task with the ID, or [ErrNotFound].
	Get(ctx context.Context, id string) (*Task, error)
	// List returns a page of a queue's tasks in a state.
	List(ctx context.Context, opts ListOptions) (Page, error)
	// Counts returns the number of tasks per queue and state.
	Counts(ctx context.Context) (map[string]map[State]int, error)

	// Retry makes a dead, cancelled or waiting (scheduled, retry) task
	// pending now, with a fresh set of attempts if it had none left.
	Retry(ctx context.Context, id string) (*Task, error)
	// Cancel cancels a waiting task, or asks an active one to stop (the
	// store flags it and [Renew] reports it). It returns the task as it
	// now is.
	Cancel(ctx context.Context, id string) (*Task, error)
	// Delete removes a task that isn't active.
	Delete(ctx context.Context, id string) error

	// Close releases the store's resources. It doesn't close a client it
	// was given.
	Close() error
}

// ListOptions select the tasks [Runner.List] returns.
type ListOptions struct {
	// Queue is the queue to list (default "default").
	Queue string
	// State is the state to list (default Pending).
	State State
	// Cursor continues a listing from a previous Page's Next.
	Cursor string
	// Limit is the page size (default 50, at most 1000).
	Limit int
}

// Page is one page of a listing.
type Page struct {
	// Tasks are in the state's order: pending in pickup order; scheduled
	// and retry by due time; active by lease expiry; final ones newest
	// first.
	Tasks []*Task
	// Next is the cursor of the next page, or "" after the last one.
	Next string
}

// norm fills defaults and checks the options.
func (o ListOptions) norm() (ListOptions, error) {
	if o.Queue == "" {
		o.Queue = DefaultQueue
	}
	if o.State == "" {
		o.State = Pending
	}
	if !o.State.valid() {
		return o, fmt.Errorf("%w: unknown state %q", ErrInvalid, o.State)
	}
	if err := checkName("queue", o.Queue); err != nil {
		return o, err
	}
	if o.Limit <= 0 {
		o.Limit = 50
	}
	o.Limit = min(o.Limit, 1000)
	return o, nil
}
