package tasks

import (
	"context"
	"fmt"
	"time"
)

type periodicTask struct {
	name    string
	sched   Schedule
	typ     string
	payload any
	opts    []EnqueueOption
}

// Periodic registers a task of type typ that is enqueued at every tick of
// sched (see [Every] and [ParseCron]). Every runner of a store that
// registers the same name may fire it; the store lets exactly one of them
// enqueue each tick, whatever their clocks (a tick is an absolute instant,
// and a tick at or before the last one enqueued is refused). A tick with
// no runner up is skipped, not caught up.
//
// Register before [Runner.Run]; it panics on an invalid or duplicate name
// or an invalid payload or option (programming errors).
func (r *Runner) Periodic(name string, sched Schedule, typ string, payload any, opts ...EnqueueOption) {
	if err := checkName("periodic task", name); err != nil {
		panic(err.Error())
	}
	if _, err := r.newTask(typ, payload, opts); err != nil {
		panic(fmt.Sprintf("tasks: Periodic(%q): %v", name, err))
	}
	var probe Task
	for _, o := range opts {
		_ = o(&probe)
	}
	if probe.ID != "" {
		panic(fmt.Sprintf("tasks: Periodic(%q): the ID option can't be used: every tick is a new task", name))
	}
	r.hmu.Lock()
	defer r.hmu.Unlock()
	for _, p := range r.periodic {
		if p.name == name {
			panic(fmt.Sprintf("tasks: Periodic(%q) registered twice", name))
		}
	}
	r.periodic = append(r.periodic, &periodicTask{name, sched, typ, payload, opts})
}

// clock is the scheduler's idea of now; tests skew it.
func (r *Runner) clock() time.Time { return time.Now().Add(r.skew) }

// scheduleLoop fires periodic tasks until ctx ends.
func (r *Runner) scheduleLoop(ctx context.Context) {
	r.hmu.RLock()
	ps := append([]*periodicTask(nil), r.periodic...)
	r.hmu.RUnlock()
	if len(ps) == 0 {
		return
	}
	next := make([]time.Time, len(ps))
	now := r.clock()
	for i, p := range ps {
		next[i] = p.sched.Next(now)
	}
	for {
		first := -1
		for i, t := range next {
			if !t.IsZero() && (first < 0 || t.Before(next[first])) {
				first = i
			}
		}
		if first < 0 {
			return
		}
		timer := time.NewTimer(next[first].Sub(r.clock()))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		p, tick := ps[first], next[first]
		r.fire(ctx, p, tick)
		// After a stall (a suspended process), skip to the next tick
		// from now rather than firing the missed ones.
		from := tick
		if now := r.clock(); now.After(from) {
			from = now
		}
		next[first] = p.sched.Next(from)
	}
}

func (r *Runner) fire(ctx context.Context, p *periodicTask, tick time.Time) {
	t, err := r.newTask(p.typ, p.payload, p.opts)
	if err != nil {
		r.log.Error("tasks: periodic task", "name", p.name, "err", err)
		return
	}
	t.Periodic = p.name
	ok, err := r.store.EnqueuePeriodic(ctx, p.name, tick, t)
	switch {
	case err != nil:
		r.log.Error("tasks: enqueueing a periodic task failed", "name", p.name, "tick", tick, "err", err)
	case ok:
		r.emitEnqueued(t)
	}
}
