package tasks

import (
	"context"
	"fmt"
	"github.com/redis/go-redis/v9"
	"time"
)

// EnqueueMany implements [BatchEnqueuer]: one enqueue script call per
// queue, sent alone (a script runs atomically) or, for several queues,
// in one MULTI/EXEC transaction with the scripts' source (EVAL, so that
// a script missing from Redis's cache can't fail one call of the
// transaction and not the others). On a Redis Cluster, whose
// transactions can't span hash slots, the calls are pipelined instead,
// so a batch is all or nothing per queue.
func (s *RedisStore) EnqueueMany(ctx context.Context, ts []*Task) ([]error, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var queues []string
	byQueue := map[string][]*enqReq{}
	for _, t := range ts {
		if byQueue[t.Queue] == nil {
			queues = append(queues, t.Queue)
		}
		byQueue[t.Queue] = append(byQueue[t.Queue], &enqReq{t: t})
	}
	calls := make([]*call, len(queues))
	reqs := make([][]*enqReq, len(queues))
	for i, q := range queues {
		calls[i] = &call{script: enqueueScript, keys: []string{s.base(q)}}
		calls[i].args, reqs[i] = s.enqueueArgs(byQueue[q])
	}
	var newQueues []any
	for _, q := range queues {
		if seen, _ := s.known.Load(q); seen != true {
			newQueues = append(newQueues, q)
		}
	}
	if len(newQueues) > 0 {
		if err := s.client.SAdd(ctx, s.queuesKey(), newQueues...).Err(); err != nil {
			return nil, fmt.Errorf("tasks: enqueue: registering queues: %w", err)
		}
		for _, q := range newQueues {
			s.known.Store(q, true)
		}
	}
	if _, cluster := s.client.(*redis.ClusterClient); len(calls) == 1 || cluster {
		s.runCalls(ctx, calls) // on a Cluster, queues' slots differ: atomic per queue
	} else {
		pipe := s.client.TxPipeline()
		for _, c := range calls {
			c.cmd = c.script.Eval(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	now := time.Now()
	for i, c := range calls {
		res, err := c.cmd.Result()
		if err == nil {
			err = setHolders(reqs[i], res)
		}
		if err != nil {
			return nil, fmt.Errorf("tasks: enqueue: %w", err)
		}
	}
	dups := make([]error, len(ts))
	at := make(map[*Task]int, len(ts))
	for i, t := range ts {
		at[t] = i
	}
	for _, rs := range reqs {
		for _, r := range rs {
			i := at[r.t]
			switch {
			case r.dup == r.t.ID:
				dups[i] = &DuplicateError{ID: r.dup}
			case r.dup != "":
				dups[i] = &DuplicateError{Key: r.t.UniqueKey, ID: r.dup}
			default:
				r.t.EnqueuedAt, r.t.State = now, Pending
				if r.t.RunAt.After(now) {
					r.t.State = Scheduled
				}
			}
		}
	}
	return dups, nil
}
