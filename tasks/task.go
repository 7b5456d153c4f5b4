package tasks

import (
	"encoding/json"
	"time"
)

// State is where a task is in its life.
type State string

// The states of a task. Pending, Scheduled, Active and Retry are live;
// Succeeded, Dead and Cancelled are final and kept for the store's
// retention period.
const (
	// Pending tasks are due and wait for a worker.
	Pending State = "pending"
	// Scheduled tasks wait for their run time (Delay, RunAt).
	Scheduled State = "scheduled"
	// Active tasks are running on a worker that holds their lease.
	Active State = "active"
	// Retry tasks failed an attempt and wait for their next one.
	Retry State = "retry"
	// Succeeded tasks finished without error.
	Succeeded State = "succeeded"
	// Dead tasks failed their last attempt, or failed with [SkipRetry].
	Dead State = "dead"
	// Cancelled tasks were cancelled with [Runner.Cancel].
	Cancelled State = "cancelled"
)

// States lists every state, live ones first.
var States = []State{Pending, Scheduled, Active, Retry, Succeeded, Dead, Cancelled}

// Final reports whether s is a final state.
func (s State) Final() bool { return s == Succeeded || s == Dead || s == Cancelled }

func (s State) valid() bool { return s.index() >= 0 }

// numStates is len(States).
const numStates = 7

// index returns the index of s in States, or -1.
func (s State) index() int {
	switch s {
	case Pending:
		return 0
	case Scheduled:
		return 1
	case Active:
		return 2
	case Retry:
		return 3
	case Succeeded:
		return 4
	case Dead:
		return 5
	case Cancelled:
		return 6
	}
	return -1
}

// Task is a snapshot of one task, as stores keep it and as [Runner.Get]
// and [Runner.List] return it. Changing a snapshot changes nothing in the
// store.
type Task struct {
	// ID is a UUIDv7, unique across the store, strictly increasing among
	// one Runner's tasks and roughly ordered by enqueue time across
	// runners; or the caller's, given with the [ID] option. It is an
	// identifier, not a secret: don't use it as a capability.
	ID string `json:"id"`
	// Type selects the handler.
	Type string `json:"type"`
	// Queue is the queue the task waits in.
	Queue string `json:"queue"`
	// Payload is the JSON-encoded payload.
	Payload json.RawMessage `json:"payload,omitempty"`
	// State is where the task is.
	State State `json:"state"`
	// Attempt counts the attempts started, including a running one.
	Attempt int `json:"attempt"`
	// MaxAttempts is how many attempts the task gets before it is dead.
	MaxAttempts int `json:"max_attempts"`
	// Timeout bounds one attempt.
	Timeout time.Duration `json:"timeout"`
	// Backoff computes the delay before each retry.
	Backoff Backoff `json:"backoff"`
	// RunAt is when a scheduled or retrying task is due.
	RunAt time.Time `json:"run_at,omitzero"`
	// EnqueuedAt, StartedAt and FinishedAt are when the task was enqueued,
	// when its latest attempt started and when it reached a final state.
	EnqueuedAt time.Time `json:"enqueued_at,omitzero"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	FinishedAt time.Time `json:"finished_at,omitzero"`
	// LastError is the error of the latest failed attempt.
	LastError string `json:"last_error,omitempty"`
	// Progress is the latest value the handler reported, JSON-encoded.
	Progress json.RawMessage `json:"progress,omitempty"`
	// UniqueKey and UniqueTTL are set by [Unique].
	UniqueKey string        `json:"unique_key,omitempty"`
	UniqueTTL time.Duration `json:"unique_ttl,omitempty"`
	// Periodic names the periodic schedule that enqueued the task, if any.
	Periodic string `json:"periodic,omitempty"`
	// Worker names the node running an active task.
	Worker string `json:"worker,omitempty"`
	// CancelRequested is set on an active task that [Runner.Cancel] asked
	// to stop.
	CancelRequested bool `json:"cancel_requested,omitempty"`
}

// Lease is a worker's claim on one attempt of a task. Its Token fences
// the worker's later calls: once the lease has expired and another worker
// has claimed the task, the store rejects them with [ErrLeaseLost].
type Lease struct {
	// Task is the task's definition, as enqueued: every store fills ID,
	// Type, Queue, Payload, MaxAttempts, Timeout, Backoff, Periodic and
	// EnqueuedAt. A store may share it among the task's leases, so it is
	// read-only; its other fields (State, Attempt, UniqueKey, the times
	// of later events) may be unset or stale and don't describe the
	// lease: the attempt is Attempt and StartedAt below, and [Runner.Get]
	// has the live task.
	Task *Task
	// Attempt is the attempt's number, 1 for the first.
	Attempt int
	// StartedAt is when the store leased the task, on its clock.
	StartedAt time.Time
	// Token fences the lease against a later claim of the task.
	Token int64
	// Worker is the node holding the lease.
	Worker string

	// mem is the MemoryStore's record of the task if it made the lease,
	// so that Finish, Renew and Progress skip the lookup by ID; other
	// stores leave it nil. It makes a Lease unfit for reflect.DeepEqual.
	mem *memTask
}

// Outcome is what a worker reports when it lets go of a task.
type Outcome struct {
	// State is the task's next state: Succeeded, Retry (due at RunAt),
	// Dead, Cancelled, or Pending for a task handed back unfinished (its
	// attempt does not count).
	State State
	// RunAt is when a Retry task is due.
	RunAt time.Time
	// Error is the attempt's error, if any.
	Error string
}
