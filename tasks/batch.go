package tasks

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// MaxBatch is the most tasks one [Runner.EnqueueMany] call takes.
const MaxBatch = 10000

// NewTask is one task of a [Runner.EnqueueMany] call: what [Runner.Enqueue]
// takes as arguments.
type NewTask struct {
	Type    string
	Payload any
	Options []EnqueueOption
}

// EnqueueResult is the result of one task of a [Runner.EnqueueMany] call.
type EnqueueResult struct {
	// Task is the task as stored, or nil when it was not enqueued.
	Task *Task
	// Err is nil, or a [*DuplicateError] when the task's ID exists or its
	// unique key is held (by a task already stored, or by an earlier task
	// of the same call).
	Err error
}

// A BatchEnqueuer is a [Store] that enqueues many tasks at once: both of
// this package's stores are.
type BatchEnqueuer interface {
	// EnqueueMany adds the tasks as [Store.Enqueue] does, all or none:
	// with an error nothing was enqueued (but see [Runner.EnqueueMany] for
	// a lost reply). Otherwise dups[i] is nil if ts[i] was enqueued (its
	// State and EnqueuedAt set) or a [*DuplicateError].
	EnqueueMany(ctx context.Context, ts []*Task) (dups []error, err error)
}

var (
	_ BatchEnqueuer = (*MemoryStore)(nil)
	_ BatchEnqueuer = (*RedisStore)(nil)
)

// EnqueueMany enqueues a batch of tasks in one store operation: one
// round trip to Redis for the tasks of one queue (one MULTI/EXEC
// transaction of one script call per queue for several queues), one lock
// for the memory store. It returns one result per task, in order.
//
// All or nothing: when it returns an error, no task of the batch was
// enqueued: [ErrInvalid] (naming the task's index) when any task has a
// bad type, payload or option, or the batch has more than [MaxBatch]
// tasks; the store's errors. The one exception is the error of a call
// whose reply was lost (ctx ended, the connection broke after sending):
// then the tasks may all have been enqueued; calling again with the same
// [ID] options is safe, as duplicates are reported per task. On a Redis
// Cluster, a batch spanning queues in different hash slots is all or
// nothing per queue.
//
// Duplicates are not errors of the call: a task whose [ID] exists, or
// whose [Unique] key is held, gets a [*DuplicateError] in its result and
// the others are enqueued. An empty batch does nothing.
//
// With a store that is not a [BatchEnqueuer], the tasks are enqueued one
// by one, and a store error may leave the earlier ones enqueued.
func (r *Runner) EnqueueMany(ctx context.Context, batch []NewTask) ([]EnqueueResult, error) {
	if len(batch) > MaxBatch {
		return nil, fmt.Errorf("%w: EnqueueMany of %d tasks; at most %d a call", ErrInvalid, len(batch), MaxBatch)
	}
	ts := make([]*Task, len(batch))
	for i, nt := range batch {
		t, err := r.newTask(nt.Type, nt.Payload, nt.Options)
		if err != nil {
			return nil, fmt.Errorf("tasks: EnqueueMany: task %d: %w", i, err)
		}
		ts[i] = t
	}
	out := make([]EnqueueResult, len(ts))
	if len(ts) == 0 {
		return out, nil
	}
	be, ok := r.store.(BatchEnqueuer)
	if !ok {
		for i, t := range ts {
			err := r.store.Enqueue(ctx, t)
			if err != nil && !errors.Is(err, ErrDuplicate) {
				return nil, err
			}
			out[i] = r.result(t, err)
		}
		return out, nil
	}
	dups, err := be.EnqueueMany(ctx, ts)
	if err != nil {
		return nil, err
	}
	for i, t := range ts {
		out[i] = r.result(t, dups[i])
	}
	return out, nil
}

// result is the result of t, emitting its event if it was enqueued.
func (r *Runner) result(t *Task, dup error) EnqueueResult {
	if dup != nil {
		return EnqueueResult{Err: dup}
	}
	r.emitEnqueued(t)
	return EnqueueResult{Task: t}
}

// EnqueueMany implements [BatchEnqueuer].
func (s *MemoryStore) EnqueueMany(ctx context.Context, ts []*Task) ([]error, error) {
	mts := make([]*memTask, len(ts))
	for i, t := range ts {
		mts[i] = newMemTask(t)
	}
	dups := make([]error, len(ts))
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	for i, t := range ts {
		dups[i] = s.enqueueLocked(t, mts[i], now)
	}
	return dups, nil
}
