package tasks

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtkit/rtkit"
)

// Why an attempt's context was cancelled before its handler returned.
const (
	stopNone      int32 = iota
	stopCancel          // Runner.Cancel
	stopLost            // the lease was lost
	stopInterrupt       // the shutdown budget ran out
)

// attempt is one running attempt of a task, and its handler's context.
//
// The context is lazy: most handlers of small tasks never look at their
// context, so an attempt costs no context, no timer and no channel until
// the handler calls Done (directly or by deriving a context). Until then
// Err compares the time with the deadline, and stop records the reason;
// Done then makes a real context with the deadline, cancelled at once if
// the attempt was already stopped.
type attempt struct {
	r        *Runner
	job      jobRunner // runs the handler: nil without one
	lease    *Lease
	base     context.Context // Run's ctx values, without its cancellation
	deadline time.Time
	why      atomic.Int32
	done     atomic.Bool // Finish was called (by the worker or the drain)

	mu     sync.Mutex
	err    error           // before ctx exists: Canceled or DeadlineExceeded once ended
	ctx    context.Context // made by the first Done
	cancel context.CancelFunc

	made atomic.Pointer[context.Context] // ctx, once made, for Value without the lock
}

var _ context.Context = (*attempt)(nil)

// stop cancels the attempt's context, recording why first.
func (a *attempt) stop(why int32) {
	a.why.CompareAndSwap(stopNone, why)
	a.end()
}

// end cancels the attempt's context: a timeout that came first stays the
// context's error.
func (a *attempt) end() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx != nil {
		a.cancel()
	} else if a.errLocked() == nil {
		a.err = context.Canceled
	}
}

func (a *attempt) errLocked() error {
	// time.Until reads only the monotonic clock: half the cost of Now.
	if a.err == nil && time.Until(a.deadline) <= 0 {
		a.err = context.DeadlineExceeded
	}
	return a.err
}

// Deadline implements [context.Context]: the task's timeout.
func (a *attempt) Deadline() (time.Time, bool) { return a.deadline, true }

// Done implements [context.Context].
func (a *attempt) Done() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx == nil {
		// base has no cancellation, so the new context registers
		// nowhere; its only cost is its timer.
		if a.errLocked() == context.Canceled {
			a.ctx, a.cancel = context.WithCancel(a.base)
			a.cancel()
		} else {
			a.ctx, a.cancel = context.WithDeadline(a.base, a.deadline)
		}
		a.made.Store(&a.ctx)
	}
	return a.ctx.Done()
}

// Err implements [context.Context].
func (a *attempt) Err() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.ctx != nil {
		return a.ctx.Err()
	}
	return a.errLocked()
}

// Value implements [context.Context]. Before Done, base answers: it hides
// Run's cancellation, so that context.Cause falls back to Err.
func (a *attempt) Value(key any) any {
	if p := a.made.Load(); p != nil {
		return (*p).Value(key)
	}
	return a.base.Value(key)
}

// String identifies the context in the messages of the context package.
func (a *attempt) String() string { return "tasks.attempt(" + a.lease.Task.ID + ")" }

// Run claims and runs tasks until ctx ends, then drains: it stops
// claiming, gives running tasks the rest of [Options.ShutdownTimeout] to
// finish, cancels those still running and hands them back to the store
// without counting their attempt (event "interrupted"), and waits for
// every handler to return. It returns nil after a drain, or an error if
// Run is already running. A handler that ignores its context delays Run's
// return, but not the hand-back: another node may take its task meanwhile.
//
// Besides the handlers, Run keeps a lease renewer, a maintenance loop
// (expired leases, retention) and the periodic scheduler; all end before
// it returns. Run traps no signal: cancel ctx on SIGTERM yourself.
func (r *Runner) Run(ctx context.Context) error {
	if !r.started.CompareAndSwap(false, true) {
		return errors.New("tasks: Run called while the runner is running")
	}
	defer r.started.Store(false)

	// Attempts outlive ctx by the drain budget: each attempt's context
	// ends on its own (timeout, Cancel, lease loss, interruption, return).
	base := context.WithoutCancel(ctx)
	var bg sync.WaitGroup
	bgCtx, stopBg := context.WithCancel(context.WithoutCancel(ctx))
	bg.Go(func() { r.renewLoop(bgCtx) })
	bg.Go(func() { r.maintainLoop(bgCtx) })
	bg.Go(func() { r.scheduleLoop(ctx) })
	var sub *rtkit.Subscription
	if !r.ownBP {
		var err error
		if sub, err = r.bp.Subscribe(ctx, r.topic+":cancel", rtkit.SubscribeOptions{}, cancelHandler{r}); err != nil {
			r.log.Warn("tasks: subscribing to cancellations failed; they take effect at lease renewal", "err", err)
		}
	}

	var tasks sync.WaitGroup
	jobs := newWorkQueue(r.conc)
	for i := range r.slots {
		tasks.Go(func() { r.worker(base, jobs, &r.slots[i]) })
	}
	r.dispatch(ctx, jobs)
	jobs.close()

	// Drain.
	budget := time.NewTimer(r.drain)
	drained := make(chan struct{})
	go func() { tasks.Wait(); close(drained) }()
	select {
	case <-drained:
		budget.Stop()
	case <-budget.C:
		r.interruptAll()
		<-drained
	}
	if sub != nil {
		sub.Close()
	}
	stopBg()
	bg.Wait()
	return nil
}

// claimed is a lease handed to a worker, with the time it was claimed.
type claimed struct {
	lease *Lease
	at    time.Time
}

// dispatch claims tasks while ctx lasts and hands them to the workers.
func (r *Runner) dispatch(ctx context.Context, jobs *workQueue) {
	queues := make([]string, len(r.queues))
	for i, q := range r.queues {
		queues[i] = q.name
	}
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	errs := 0
	backlog := false // the last claim filled every free slot
	for ctx.Err() == nil {
		free := r.conc - int(r.inflight.Load())
		if free <= 0 {
			r.waitFree(ctx, 1, nil)
			continue
		}
		if backlog && free < r.conc/4 {
			// With a backlog, gather freed slots for up to a millisecond
			// so that a claim takes a batch rather than one task: a claim
			// costs the store about as much for one task as for ten. Then
			// claim what is free, even if long tasks hold the rest.
			timer.Reset(time.Millisecond)
			r.waitFree(ctx, r.conc/4, timer.C)
			timer.Stop()
			if free = r.conc - int(r.inflight.Load()); ctx.Err() != nil {
				return
			}
		}
		leases, err := r.store.Claim(ctx, r.node, r.order(queues), free, r.leaseTTL)
		if len(leases) > 0 {
			// Even beside an error: a claim from several queues may fail
			// on one after leasing tasks of another, and those would sit
			// active until their lease expired, their attempt counted.
			r.inflight.Add(int64(len(leases)))
			jobs.push(leases, time.Now())
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.probeQueues(queues...) // the claim may have leased tasks we never heard of
			errs++
			r.log.Error("tasks: claiming tasks failed", "err", err, "node", r.node)
			sleep(ctx, min(time.Duration(errs)*100*time.Millisecond, 5*time.Second))
			continue
		}
		errs = 0
		backlog = len(leases) == free
		if len(leases) == 0 {
			if err := r.store.Wait(ctx, queues); err != nil && ctx.Err() == nil {
				r.log.Error("tasks: waiting for tasks failed", "err", err, "node", r.node)
				sleep(ctx, time.Second)
			}
			continue
		}
	}
}

// waitFree waits until n slots are free, or until timeout fires or ctx
// ends. Workers signal freed only when they free the n-th slot, so that a
// backlog costs one wake-up per batch rather than one per task.
func (r *Runner) waitFree(ctx context.Context, n int, timeout <-chan time.Time) {
	r.want.Store(int64(n))
	defer r.want.Store(0)
	for r.conc-int(r.inflight.Load()) < n {
		select {
		case <-r.freed:
		case <-timeout:
			return
		case <-ctx.Done():
			return
		}
	}
}

// release frees the slot of a task that ended.
func (r *Runner) release() {
	n := r.inflight.Add(-1)
	if want := r.want.Load(); want > 0 && int64(r.conc)-n >= want {
		select {
		case r.freed <- struct{}{}:
		default:
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// worker runs leased tasks until jobs is closed. Workers are long-lived,
// so a task costs no goroutine start and no stack growth.
func (r *Runner) worker(base context.Context, jobs *workQueue, slot *atomic.Pointer[attempt]) {
	for {
		c, ok := jobs.pop()
		if !ok {
			return
		}
		r.execute(base, c, slot)
	}
}

// execute runs one leased task: its attempt was counted in inflight by
// the dispatcher.
func (r *Runner) execute(base context.Context, c claimed, slot *atomic.Pointer[attempt]) {
	t := c.lease.Task
	a := r.newAttempt(t.Type)
	a.r, a.lease, a.base, a.deadline = r, c.lease, base, c.at.Add(cmp.Or(t.Timeout, DefaultTimeout))
	slot.Store(a)
	defer func() {
		a.end()
		slot.Store(nil)
		r.release()
	}()
	if r.listening() {
		r.emit(leaseEvent(EventStarted, c.lease, r.node))
	}
	err := r.call(a)
	r.finish(a, err)
}

// call runs the handler, turning a panic into an error.
func (r *Runner) call(a *attempt) (err error) {
	t := a.lease.Task
	if a.job == nil && r.chain == nil {
		return fmt.Errorf("tasks: no handler for task type %q on node %s", t.Type, r.node)
	}
	defer func() {
		if v := recover(); v != nil {
			err = &PanicError{Value: v, Stack: debug.Stack()}
			r.log.Error("tasks: handler panicked", "type", t.Type, "task", t.ID, "panic", v, "stack", string(err.(*PanicError).Stack))
		}
	}()
	if r.chain != nil {
		return r.callChain(a)
	}
	return a.job.run(a)
}

// finish reports the attempt's outcome to the store and emits its event.
func (r *Runner) finish(a *attempt, err error) {
	if !a.done.CompareAndSwap(false, true) {
		return // handed back by the drain
	}
	if err == nil {
		r.report(a, Outcome{State: Succeeded}, EventSucceeded)
		return
	}
	l, t := a.lease, a.lease.Task
	o := Outcome{Error: err.Error()}
	why := a.why.Load()
	if why == stopNone && errors.Is(a.Err(), context.DeadlineExceeded) {
		o.Error = fmt.Sprintf("tasks: attempt timed out after %v: %v", t.Timeout, err)
	}
	var kind EventKind
	switch {
	case why == stopLost:
		r.log.Warn("tasks: lease lost; the attempt's result is discarded", "task", t.ID, "type", t.Type)
		return
	case why == stopCancel:
		o.State, kind = Cancelled, EventCancelled
	case why == stopInterrupt:
		o.State, kind = Pending, EventInterrupted
	case errors.Is(err, ErrSkipRetry):
		o.State, kind = Dead, EventFailed
	case l.Attempt >= t.MaxAttempts:
		o.State, kind = Dead, EventDead
	default:
		o.State, kind, o.RunAt = Retry, EventRetrying, time.Now().Add(retryDelay(l, err))
	}
	r.report(a, o, kind)
}

// retryDelay is the delay before the next attempt of a failed one.
func retryDelay(l *Lease, err error) time.Duration {
	var ra *RetryAfterError
	if errors.As(err, &ra) {
		return max(ra.After, 0)
	}
	return l.Task.Backoff.Delay(l.Attempt)
}

// report finishes a lease, retrying store errors for a while: a task
// whose outcome can't be stored is retried by another worker once the
// lease expires (at-least-once).
//
// An outcome that makes the task runnable again (retrying, interrupted)
// is published before the store records it: from that moment another
// worker may start the next attempt, whose "started" must not overtake
// it (a task's events arrive in order, see Event). Final outcomes are
// published once stored.
func (r *Runner) report(a *attempt, o Outcome, kind EventKind) {
	t := a.lease.Task
	again := o.State == Retry || o.State == Pending
	if again {
		r.emitOutcome(a, o, kind)
	}
	var err error
	for i := range 5 {
		// No timeout of its own: the stores bound their calls.
		err = r.store.Finish(context.Background(), a.lease, o)
		if err == nil || errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrClosed) {
			break
		}
		time.Sleep(time.Duration(i+1) * 200 * time.Millisecond)
	}
	if err != nil {
		r.log.Error("tasks: reporting a task's outcome failed; the task will be handed back", "task", t.ID, "state", o.State, "err", err)
		if !errors.Is(err, ErrClosed) {
			r.probeQueues(t.Queue)
		}
		return
	}
	if !again {
		r.emitOutcome(a, o, kind)
	}
}

// emitOutcome publishes the event of an attempt's outcome.
func (r *Runner) emitOutcome(a *attempt, o Outcome, kind EventKind) {
	if !r.listening() {
		return
	}
	e := leaseEvent(kind, a.lease, r.node)
	e.Error, e.RunAt = o.Error, o.RunAt
	if o.State == Pending {
		e.Attempt--
	}
	r.emit(e)
}

// running returns the attempts running now.
func (r *Runner) running() []*attempt {
	var out []*attempt
	for i := range r.slots {
		if a := r.slots[i].Load(); a != nil {
			out = append(out, a)
		}
	}
	return out
}

// interruptAll hands back every running task: their contexts are
// cancelled and the store takes them back without counting the attempt.
func (r *Runner) interruptAll() {
	running := r.running()
	var wg sync.WaitGroup
	for _, a := range running {
		a.stop(stopInterrupt)
		if !a.done.CompareAndSwap(false, true) {
			continue
		}
		wg.Go(func() {
			r.report(a, Outcome{State: Pending, Error: "tasks: interrupted by shutdown"}, EventInterrupted)
		})
	}
	wg.Wait()
}

// renewLoop extends the leases of running tasks every LeaseTTL/4. A task
// whose handler ignores its context a lease past its timeout is given up
// as a timed-out attempt, so that it is retried (by any worker) while the
// handler runs on; its late result is discarded.
func (r *Runner) renewLoop(ctx context.Context) {
	tick := time.NewTicker(r.leaseTTL / 4)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		var leases []*Lease
		byID := make(map[string]*attempt)
		for _, a := range r.running() {
			switch {
			case !a.done.Load() && now.After(a.deadline.Add(r.leaseTTL)):
				r.finish(a, errIgnoredContext)
			default:
				// Also an attempt whose outcome is being reported: its
				// lease must last while the report is retried. Once the
				// report gives up, the lease is no longer renewed, and
				// the store hands the task back (see Store.Renew).
				leases = append(leases, a.lease)
				byID[a.lease.Task.ID] = a
			}
		}
		leases = r.probes(leases, now)
		if len(leases) == 0 {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, r.leaseTTL/4)
		lost, cancelled, err := r.store.Renew(rctx, leases, r.leaseTTL)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("tasks: renewing leases failed", "err", err, "node", r.node)
			}
			continue
		}
		for _, id := range lost {
			if a := byID[id]; a != nil { // not a probe
				a.stop(stopLost)
			}
		}
		for _, id := range cancelled {
			if a := byID[id]; a != nil {
				a.stop(stopCancel)
			}
		}
	}
}

// probeQueues makes renewals probe the queues for 3 leases: a worker
// that may hold a task it lost track of (a Finish that gave up, a Claim
// whose reply never came) renews in the queue even while it runs none of
// its tasks, so that the store gives the lost task up (see Store.Renew)
// rather than let the worker's claims keep its lease alive.
func (r *Runner) probeQueues(queues ...string) {
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	if r.probe == nil {
		r.probe = make(map[string]time.Time)
	}
	for _, q := range queues {
		r.probe[q] = time.Now().Add(3 * r.leaseTTL)
	}
}

// probes adds to leases a probe, a lease of no task (reported lost), for
// every queue being probed that none of leases is of.
func (r *Runner) probes(leases []*Lease, now time.Time) []*Lease {
	r.probeMu.Lock()
	defer r.probeMu.Unlock()
	for q, until := range r.probe {
		if now.After(until) {
			delete(r.probe, q)
			continue
		}
		if !slices.ContainsFunc(leases, func(l *Lease) bool { return l.Task.Queue == q }) {
			leases = append(leases, &Lease{Task: &Task{Queue: q}, Worker: r.node})
		}
	}
	return leases
}

// errIgnoredContext is the error of an attempt whose handler ran on a
// lease past its timeout.
var errIgnoredContext = errors.New("the handler ignored its context")

// maintainLoop runs the store's maintenance about once a second.
func (r *Runner) maintainLoop(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		back, err := r.store.Maintain(ctx)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Error("tasks: store maintenance failed", "err", err)
			}
			continue
		}
		for _, t := range back {
			kind := EventRetrying
			if t.State == Dead {
				kind = EventDead
			}
			e := newEvent(kind, t, r.node)
			e.Error = t.LastError
			r.emit(e)
		}
	}
}

type cancelHandler struct{ r *Runner }

func (h cancelHandler) HandleMessage(m *rtkit.Message) { h.r.cancelLocal(string(m.Data)) }
func (cancelHandler) HandleGap(rtkit.ID)               {}
