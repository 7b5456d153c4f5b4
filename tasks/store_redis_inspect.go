package tasks

// The Redis store's inspection and changes by ID: Get, List, Counts,
// Retry, Cancel and Delete, and the decoding of the scripts' task views.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// viewFields is the number of values in a script's view of a task (see
// views in luaPrelude): the ID, the fields def, st, runat, ukey, err and
// prog, and the cancel flag.
const viewFields = 8

// parseViews decodes the tasks of a script's reply made of views.
func parseViews(v any, queue string) []*Task {
	l, _ := v.([]any)
	var out []*Task
	for i := 0; i+viewFields <= len(l); i += viewFields {
		str := func(k int) string { s, _ := l[i+k].(string); return s }
		t := &Task{Queue: queue}
		unpackStored(t, str(1))
		t.ID = str(0)
		parseLine(t, str(2))
		if t.State == Scheduled || t.State == Retry {
			t.RunAt = msTime(str(3))
		}
		t.UniqueKey, t.LastError = str(4), str(5)
		if p := str(6); p != "" {
			t.Progress = json.RawMessage(p)
		}
		t.CancelRequested = l[i+7] == int64(1)
		out = append(out, t)
	}
	return out
}

// parseLine fills t from a state line (see redis_lua.go):
// "state[|finished]|attempt[|token|started|worker]".
func parseLine(t *Task, line string) {
	st, rest, _ := strings.Cut(line, "|")
	t.State = State(st)
	var f string
	if t.State.Final() {
		f, rest, _ = strings.Cut(rest, "|")
		t.FinishedAt = msTime(f)
	}
	f, rest, _ = strings.Cut(rest, "|")
	t.Attempt, _ = strconv.Atoi(f)
	if rest == "" {
		return
	}
	_, rest, _ = strings.Cut(rest, "|") // token
	f, t.Worker, _ = strings.Cut(rest, "|")
	t.StartedAt = msTime(f)
}

// msTime converts a time in ms to a time, "0" or "" to the zero time.
func msTime(s string) time.Time {
	n, _ := strconv.ParseInt(s, 10, 64)
	if n <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

// find returns the queue holding the task with the ID.
func (s *RedisStore) find(ctx context.Context, id string) (string, *Task, error) {
	if err := s.check(ctx); err != nil {
		return "", nil, err
	}
	if id == "" || strings.ContainsAny(id, "{}*?[") {
		return "", nil, ErrNotFound
	}
	qs, err := s.queues(ctx)
	if err != nil {
		return "", nil, err
	}
	calls := make([]*call, len(qs))
	for i, q := range qs {
		calls[i] = &call{script: viewScript, keys: []string{s.base(q)}, args: []any{id}}
	}
	s.runCalls(ctx, calls)
	for i, c := range calls {
		res, err := c.cmd.Result()
		if err != nil {
			return "", nil, fmt.Errorf("tasks: get: %w", err)
		}
		if ts := parseViews(res, qs[i]); len(ts) > 0 {
			return qs[i], ts[0], nil
		}
	}
	return "", nil, ErrNotFound
}

// Get implements [Store].
func (s *RedisStore) Get(ctx context.Context, id string) (*Task, error) {
	_, t, err := s.find(ctx, id)
	return t, err
}

// List implements [Store]. Its cursor is an offset.
func (s *RedisStore) List(ctx context.Context, opts ListOptions) (Page, error) {
	opts, err := opts.norm()
	if err != nil {
		return Page{}, err
	}
	if err := s.check(ctx); err != nil {
		return Page{}, err
	}
	off := int64(0)
	if opts.Cursor != "" {
		if off, err = strconv.ParseInt(opts.Cursor, 10, 64); err != nil || off < 0 {
			return Page{}, fmt.Errorf("%w: bad cursor %q", ErrInvalid, opts.Cursor)
		}
	}
	base := s.base(opts.Queue)
	key := base + string(opts.State)
	stop := off + int64(opts.Limit) // one more, to know if there is a next page
	var ids []string
	switch opts.State {
	case Pending:
		ids, err = s.client.LRange(ctx, key, off, stop).Result()
	case Active: // a set: its IDs are sorted, and UUIDv7s sort by enqueue time
		if ids, err = s.client.SMembers(ctx, key).Result(); err == nil {
			slices.Sort(ids)
			ids = ids[min(off, int64(len(ids))):min(stop+1, int64(len(ids)))]
		}
	case Scheduled, Retry:
		ids, err = s.client.ZRange(ctx, key, off, stop).Result()
	default: // a list, oldest first: pages go from its tail
		if ids, err = s.client.LRange(ctx, key, -stop-1, -off-1).Result(); err == nil {
			slices.Reverse(ids)
		}
	}
	if err != nil {
		return Page{}, fmt.Errorf("tasks: list: %w", err)
	}
	var p Page
	if len(ids) > opts.Limit {
		ids = ids[:opts.Limit]
		p.Next = strconv.FormatInt(off+int64(opts.Limit), 10)
	}
	if len(ids) > 0 {
		args := make([]any, len(ids))
		for i, id := range ids {
			args[i] = id
		}
		res, err := s.run(ctx, viewScript, opts.Queue, args...).Result()
		if err != nil {
			return Page{}, fmt.Errorf("tasks: list: %w", err)
		}
		p.Tasks = parseViews(res, opts.Queue) // tasks gone since (retention) are left out
	}
	return p, nil
}

// Counts implements [Store].
func (s *RedisStore) Counts(ctx context.Context) (map[string]map[State]int, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	qs, err := s.queues(ctx)
	if err != nil {
		return nil, err
	}
	pipe := s.client.Pipeline()
	cmds := make(map[string][]*redis.IntCmd, len(qs))
	for _, q := range qs {
		base := s.base(q)
		for _, st := range States {
			switch st {
			case Pending, Succeeded, Dead, Cancelled:
				cmds[q] = append(cmds[q], pipe.LLen(ctx, base+string(st)))
			case Active:
				cmds[q] = append(cmds[q], pipe.SCard(ctx, base+string(st)))
			default:
				cmds[q] = append(cmds[q], pipe.ZCard(ctx, base+string(st)))
			}
		}
	}
	if len(qs) > 0 {
		_, _ = pipe.Exec(ctx)
	}
	out := make(map[string]map[State]int, len(qs))
	for q, cs := range cmds {
		m := make(map[State]int, len(States))
		for i, c := range cs {
			n, err := c.Result()
			if err != nil {
				return nil, fmt.Errorf("tasks: counts: %w", err)
			}
			m[States[i]] = int(n)
		}
		out[q] = m
	}
	return out, nil
}

func (s *RedisStore) change(ctx context.Context, op, id string) (*Task, error) {
	q, _, err := s.find(ctx, id)
	if err != nil {
		return nil, err
	}
	res, err := s.run(ctx, changeScript, q, op, id, s.retMS(), s.keep, s.nonce()).Result()
	switch {
	case redis.HasErrorPrefix(err, "NOTFOUND"):
		return nil, ErrNotFound
	case redis.HasErrorPrefix(err, "BADSTATE"):
		return nil, fmt.Errorf("%w: %s a %s task", ErrBadState, op, strings.TrimPrefix(err.Error(), "BADSTATE "))
	case err != nil:
		return nil, fmt.Errorf("tasks: %s: %w", op, err)
	}
	ts := parseViews(res, q)
	if len(ts) == 0 {
		return nil, nil // deleted
	}
	return ts[0], nil
}

// Retry implements [Store].
func (s *RedisStore) Retry(ctx context.Context, id string) (*Task, error) {
	return s.change(ctx, "retry", id)
}

// Cancel implements [Store].
func (s *RedisStore) Cancel(ctx context.Context, id string) (*Task, error) {
	return s.change(ctx, "cancel", id)
}

// Delete implements [Store].
func (s *RedisStore) Delete(ctx context.Context, id string) error {
	_, err := s.change(ctx, "delete", id)
	return err
}
