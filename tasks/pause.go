package tasks

import (
	"context"
	"errors"
	"fmt"
	"github.com/redis/go-redis/v9"
	"slices"
)

// A Pauser is a [Store] that can pause queues: both of this package's
// stores are. While a queue is paused it accepts tasks (Enqueue, Retry,
// scheduled tasks falling due) but Claim leases none of its tasks, on any
// node, until it is resumed; tasks already running go on.
type Pauser interface {
	// SetPaused pauses or resumes queue. Pausing a paused queue, or
	// resuming one that isn't, changes nothing. When it returns, no Claim
	// that starts later leases a task of a paused queue.
	SetPaused(ctx context.Context, queue string, paused bool) error
	// Paused returns the names of the paused queues, sorted.
	Paused(ctx context.Context) ([]string, error)
}

var (
	_ Pauser = (*MemoryStore)(nil)
	_ Pauser = (*RedisStore)(nil)
)

func (r *Runner) pauser() (Pauser, error) {
	p, ok := r.store.(Pauser)
	if !ok {
		return nil, fmt.Errorf("tasks: the store %T can't pause queues: %w", r.store, errors.ErrUnsupported)
	}
	return p, nil
}

// PauseQueue stops every runner sharing the store from claiming tasks of
// queue until [Runner.ResumeQueue]: the queue keeps accepting tasks, and
// tasks already running finish. The pause is stored (on Redis it
// survives restarts of the nodes and, with persistence, of Redis) and is
// shown by [Runner.PausedQueues]. A queue with no tasks can be paused.
// Errors: [ErrInvalid] for a bad queue name; errors.ErrUnsupported for a
// store that isn't a [Pauser]; the store's errors.
func (r *Runner) PauseQueue(ctx context.Context, queue string) error {
	return r.setPaused(ctx, queue, true)
}

// ResumeQueue lets runners claim the tasks of a paused queue again, at
// once (waiting runners are woken). Resuming a queue that isn't paused
// does nothing.
func (r *Runner) ResumeQueue(ctx context.Context, queue string) error {
	return r.setPaused(ctx, queue, false)
}

func (r *Runner) setPaused(ctx context.Context, queue string, paused bool) error {
	if err := checkName("queue", queue); err != nil {
		return err
	}
	p, err := r.pauser()
	if err != nil {
		return err
	}
	return p.SetPaused(ctx, queue, paused)
}

// PausedQueues returns the names of the paused queues, sorted (none: an
// empty slice).
func (r *Runner) PausedQueues(ctx context.Context) ([]string, error) {
	p, err := r.pauser()
	if err != nil {
		return nil, err
	}
	return p.Paused(ctx)
}

// SetPaused implements [Pauser].
func (s *MemoryStore) SetPaused(ctx context.Context, queue string, paused bool) error {
	if err := checkName("queue", queue); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	q := s.queue(queue)
	if q.paused == paused {
		return nil
	}
	q.paused = paused
	if !paused {
		s.notify()
	}
	return nil
}

// Paused implements [Pauser].
func (s *MemoryStore) Paused(ctx context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := []string{}
	for name, q := range s.queues {
		if q.paused {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out, nil
}

// SetPaused implements [Pauser]. The pause is the queue's "paused" key,
// which the claim script checks; the queue is registered so that
// inspection lists it even while it has no task.
func (s *RedisStore) SetPaused(ctx context.Context, queue string, paused bool) error {
	if err := checkName("queue", queue); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	key := s.base(queue) + "paused"
	var err error
	if paused {
		if err = s.client.Set(ctx, key, "1", 0).Err(); err == nil {
			s.known.Store(queue, true)
			err = s.client.SAdd(ctx, s.queuesKey(), queue).Err()
		}
	} else if err = s.client.Del(ctx, key).Err(); err == nil {
		err = s.client.Publish(ctx, s.base(queue)+"wake", "0").Err()
	}
	if err != nil {
		return fmt.Errorf("tasks: pausing %q: %w", queue, err)
	}
	return nil
}

// Paused implements [Pauser].
func (s *RedisStore) Paused(ctx context.Context) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	qs, err := s.queues(ctx)
	if err != nil {
		return nil, err
	}
	out := []string{}
	if len(qs) == 0 {
		return out, nil
	}
	pipe := s.client.Pipeline()
	cmds := make([]*redis.IntCmd, len(qs))
	for i, q := range qs {
		cmds[i] = pipe.Exists(ctx, s.base(q)+"paused")
	}
	_, _ = pipe.Exec(ctx)
	for i, c := range cmds {
		n, err := c.Result()
		if err != nil {
			return nil, fmt.Errorf("tasks: reading paused queues: %w", err)
		}
		if n > 0 {
			out = append(out, qs[i])
		}
	}
	slices.Sort(out)
	return out, nil
}
