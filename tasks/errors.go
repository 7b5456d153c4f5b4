package tasks

import (
	"errors"
	"fmt"
	"time"
)

// Errors returned by the runner and its stores. Callers branch on them with
// [errors.Is].
var (
	// ErrNotFound is returned for a task ID the store doesn't hold (never
	// enqueued, deleted, or past its retention).
	ErrNotFound = errors.New("tasks: task not found")
	// ErrDuplicate is returned by Enqueue when a task with the same ID
	// exists, or a live task holds the same unique key; the error is a
	// [*DuplicateError] naming that task.
	ErrDuplicate = errors.New("tasks: duplicate task")
	// ErrLeaseLost is returned to a worker whose lease on a task expired
	// and was taken over: its result is discarded.
	ErrLeaseLost = errors.New("tasks: lease lost")
	// ErrBadState is returned by Retry, Cancel and Delete when the task's
	// state doesn't allow the operation (retrying a running task, deleting
	// an active one).
	ErrBadState = errors.New("tasks: operation not allowed in the task's state")
	// ErrInvalid is returned for a bad task type, queue or option.
	ErrInvalid = errors.New("tasks: invalid task")
	// ErrClosed is returned after the store was closed.
	ErrClosed = errors.New("tasks: store closed")
	// ErrSkipRetry, wrapped by a handler's error (see [SkipRetry]), ends
	// the task as dead without further attempts.
	ErrSkipRetry = errors.New("tasks: skip retry")
)

// DuplicateError is the error Enqueue returns, enqueueing nothing, when
// a task with the task's [ID] exists (Key is then "") or a live task
// holds its [Unique] key. It wraps [ErrDuplicate]. ID names the existing
// task, for [Runner.Get].
type DuplicateError struct {
	Key string // the unique key, or "" for an ID that exists
	ID  string // the task that holds it
}

func (e *DuplicateError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("tasks: duplicate task: a task with ID %q exists", e.ID)
	}
	return fmt.Sprintf("tasks: duplicate task: unique key %q is held by task %s", e.Key, e.ID)
}

// Unwrap returns [ErrDuplicate].
func (e *DuplicateError) Unwrap() error { return ErrDuplicate }

// SkipRetry wraps err so that the failed task is not retried: it becomes
// dead at once (event "failed").
func SkipRetry(err error) error {
	if err == nil {
		err = errors.New("failed")
	}
	return fmt.Errorf("%w: %w", ErrSkipRetry, err)
}

// RetryAfterError asks for the next attempt after a given delay instead of
// the backoff policy's. Handlers return it through [RetryAfter]; it still
// counts as a failed attempt.
type RetryAfterError struct {
	After time.Duration
	Err   error
}

// RetryAfter wraps err to retry the task after d (for example a rate
// limit's Retry-After) instead of the backoff policy's delay.
func RetryAfter(d time.Duration, err error) error {
	if err == nil {
		err = errors.New("retry requested")
	}
	return &RetryAfterError{After: d, Err: err}
}

func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("%v (retry after %v)", e.Err, e.After)
}

// Unwrap returns the wrapped error.
func (e *RetryAfterError) Unwrap() error { return e.Err }

// PanicError is the error of an attempt whose handler panicked.
type PanicError struct {
	Value any
	Stack []byte
}

func (e *PanicError) Error() string { return fmt.Sprintf("tasks: handler panicked: %v", e.Value) }
