package tasks

import (
	"container/heap"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Defaults of the retention options of both stores.
const (
	DefaultRetention      = 24 * time.Hour
	DefaultRetentionCount = 10_000
)

// MemoryOptions configure a [MemoryStore]. The zero value is ready to use.
type MemoryOptions struct {
	// Retention is how long final tasks (succeeded, dead, cancelled) are
	// kept. Default 24h; negative drops them at once.
	Retention time.Duration
	// RetentionCount is how many final tasks are kept per queue and
	// state, newest first. Default 10,000.
	RetentionCount int
}

// MemoryStore is the [Store] for one process: tasks live in memory and
// are lost when it exits. It is the default store of a [Runner]. All
// methods are safe for concurrent use; times are the process's clock, so
// tests can drive it with testing/synctest.
//
// The records of tasks enqueued together by [Runner.EnqueueMany] are
// allocated 8 at a time (600 bytes each on 64-bit platforms, payload and
// ID apart), which saves about 40% of a batch's CPU time; the memory of
// such a block is freed when the last of its 8 tasks is dropped, so a
// task kept long (a dead one, a scheduled one) keeps up to 4.2 KB of its
// batch neighbours' records with it.
type MemoryStore struct {
	retention time.Duration
	keep      int

	mu       sync.Mutex
	closed   bool
	tasks    memIndex
	queues   map[string]*memQueue
	unique   map[string]memUnique // queue + "\x00" + key
	periodic map[string]time.Time // schedule name → last tick
	wake     chan struct{}        // closed when a task may have become claimable
	waiting  int                  // Wait calls holding wake
}

var _ Store = (*MemoryStore)(nil)

// memTask is the store's record of a task: its definition (the embedded
// Task, never written after Enqueue and shared read-only with its leases,
// so that a claim copies nothing) and its live state, in fields of the
// same names that shadow the definition's.
type memTask struct {
	Task

	State           State
	Attempt         int
	RunAt           time.Time
	StartedAt       time.Time
	FinishedAt      time.Time
	LastError       string
	Progress        []byte
	Worker          string
	CancelRequested bool

	q          *memQueue
	prev, next *memTask // in q.pending while the task is pending
	token      int64
	gen        int64 // bumped on every move, to skip stale queue entries
	deadline   time.Time
	active     int   // index in q.active while the task is active
	finalSeq   int64 // position in its q.final list while the task is final
	key        memID // the ID's halves, if it is a UUIDv7 (see memIndex)
}

type memEntry struct {
	t   *memTask
	gen int64
	at  time.Time // RunAt when queued, the heap's order
}

type memQueue struct {
	s       *MemoryStore
	pending memList
	due     dueHeap             // scheduled and retry tasks by RunAt
	active  []*memTask          // unordered; memTask.active indexes it
	final   [numStates]memFinal // by finish time, oldest first
	counts  [numStates]int      // live and final tasks by state
	paused  bool                // see Pauser
}

type memUnique struct {
	id      string
	expires time.Time
}

// NewMemoryStore returns an empty MemoryStore. It starts no goroutines.
func NewMemoryStore(opts MemoryOptions) *MemoryStore {
	if opts.Retention == 0 {
		opts.Retention = DefaultRetention
	}
	if opts.RetentionCount <= 0 {
		opts.RetentionCount = DefaultRetentionCount
	}
	return &MemoryStore{
		retention: opts.Retention,
		keep:      opts.RetentionCount,
		tasks:     memIndex{v7: make(map[int64]*memSpan), other: make(map[string]*memTask)},
		queues:    make(map[string]*memQueue),
		unique:    make(map[string]memUnique),
		periodic:  make(map[string]time.Time),
		wake:      make(chan struct{}),
	}
}

func (s *MemoryStore) queue(name string) *memQueue {
	q := s.queues[name]
	if q == nil {
		q = &memQueue{s: s}
		s.queues[name] = q
	}
	return q
}

// notify wakes every Wait.
func (s *MemoryStore) notify() {
	if s.waiting > 0 {
		close(s.wake)
		s.wake = make(chan struct{})
		s.waiting = 0
	}
}

// move puts t in state st and into the matching structure of its queue.
func (s *MemoryStore) move(t *memTask, st State, now time.Time) {
	q := t.q
	if t.State != "" {
		q.counts[t.State.index()]--
		q.leave(t)
	}
	t.gen++
	t.State = st
	q.counts[st.index()]++
	switch st {
	case Pending:
		t.RunAt = time.Time{}
		q.pending.push(t)
		s.notify()
	case Scheduled, Retry:
		heap.Push(&q.due, memEntry{t, t.gen, t.RunAt})
		s.notify()
	case Active:
		t.active = len(q.active)
		q.active = append(q.active, t)
	default: // final
		t.FinishedAt = now
		if s.retention < 0 {
			s.remove(t)
			return
		}
		i := st.index()
		t.finalSeq = q.final[i].push(memEntry{t: t, gen: t.gen})
		s.releaseUnique(&t.Task)
		s.trim(q, st, now)
	}
}

// leave takes t out of the pending list, the active tasks or its final
// list, as its state says; scheduled and retry tasks keep heap entries
// that its gen makes stale.
func (q *memQueue) leave(t *memTask) {
	switch t.State {
	case Pending:
		q.pending.remove(t)
	case Active:
		last := len(q.active) - 1
		moved := q.active[last]
		q.active[t.active], moved.active = moved, t.active
		q.active[last] = nil
		q.active = q.active[:last]
	case Succeeded, Dead, Cancelled:
		q.final[t.State.index()].drop(t)
	}
}

func (s *MemoryStore) releaseUnique(t *Task) {
	if t.UniqueKey == "" {
		return
	}
	k := t.Queue + "\x00" + t.UniqueKey
	if u, ok := s.unique[k]; ok && u.id == t.ID {
		delete(s.unique, k)
	}
}

// trim drops final tasks of a state past retention, oldest first.
func (s *MemoryStore) trim(q *memQueue, st State, now time.Time) {
	si := st.index()
	f := &q.final[si]
	for f.head < len(f.buf) {
		e := f.buf[f.head]
		if e.t != nil && e.t.gen == e.gen { // else dropped since (retried, deleted)
			if q.counts[si] <= s.keep && now.Sub(e.t.FinishedAt) < s.retention {
				break
			}
			s.remove(e.t)
		}
		f.buf[f.head] = memEntry{}
		f.head++
	}
	f.shrink()
}

// memFinal is a list of final tasks, oldest first, in buf[head:]. A
// steady stream of finishes pushes at the end and trims at the head; the
// live entries move down to the start of the array when it is full, so
// that the list costs no allocation and O(1) a finish once it holds
// RetentionCount tasks. (It was a slice resliced or copied on each trim:
// at the default 10,000 tasks a copy cost 100 times the task.)
//
// A task that leaves the list before its turn (retried, deleted) has its
// entry emptied through its position, so that the list doesn't keep it
// for the retention period; positions count from the list's first push,
// and base is the position of buf[0].
type memFinal struct {
	buf  []memEntry
	head int
	base int64
}

func (f *memFinal) entries() []memEntry { return f.buf[f.head:] }

// push appends e and returns its position.
func (f *memFinal) push(e memEntry) int64 {
	if len(f.buf) == cap(f.buf) && f.head >= len(f.buf)-f.head {
		// At least half the array is trimmed: move the rest down.
		n := copy(f.buf, f.buf[f.head:])
		clear(f.buf[n:])
		f.rebase(f.buf[:n])
	}
	f.buf = append(f.buf, e)
	return f.base + int64(len(f.buf)-1)
}

// drop empties t's entry.
func (f *memFinal) drop(t *memTask) {
	i := t.finalSeq - f.base
	if i >= int64(f.head) && i < int64(len(f.buf)) && f.buf[i].t == t {
		f.buf[i] = memEntry{}
	}
}

// rebase makes buf, holding the entries from head on, the list's array.
func (f *memFinal) rebase(buf []memEntry) {
	f.base += int64(f.head)
	f.buf, f.head = buf, 0
}

// shrink moves the entries to a smaller array after a large drop.
func (f *memFinal) shrink() {
	live := len(f.buf) - f.head
	if live == 0 {
		f.rebase(f.buf[:0])
	}
	if cap(f.buf) > 4*live+256 {
		f.rebase(append(make([]memEntry, 0, 2*live+64), f.buf[f.head:]...))
	}
}

// remove forgets t.
func (s *MemoryStore) remove(t *memTask) {
	q := t.q
	q.counts[t.State.index()]--
	q.leave(t)
	s.tasks.remove(t)
	s.releaseUnique(&t.Task)
	t.gen++
}

func (s *MemoryStore) check(ctx context.Context) error {
	if s.closed {
		return ErrClosed
	}
	return ctx.Err()
}

// Enqueue implements [Store].
func (s *MemoryStore) Enqueue(ctx context.Context, t *Task) error {
	mt := newMemTask(t)
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.enqueueLocked(t, mt, now)
}

// newMemTask copies t for enqueueLocked, before the lock is taken.
func newMemTask(t *Task) *memTask {
	mt := new(memTask)
	mt.init(t)
	return mt
}

// init makes the zero record mt t's.
func (mt *memTask) init(t *Task) {
	mt.Task, mt.RunAt = *t, t.RunAt
	mt.Task.State = ""
}

// snapshot returns a copy of the task as it is now.
func (t *memTask) snapshot() *Task {
	snap := t.Task
	snap.State, snap.Attempt, snap.RunAt = t.State, t.Attempt, t.RunAt
	snap.StartedAt, snap.FinishedAt, snap.Worker = t.StartedAt, t.FinishedAt, t.Worker
	snap.LastError, snap.Progress, snap.CancelRequested = t.LastError, t.Progress, t.CancelRequested
	return &snap
}

func (s *MemoryStore) enqueueLocked(t *Task, mt *memTask, now time.Time) error {
	if !s.tasks.add(mt) {
		return &DuplicateError{ID: t.ID}
	}
	if t.UniqueKey != "" {
		k := t.Queue + "\x00" + t.UniqueKey
		if u, ok := s.unique[k]; ok && now.Before(u.expires) {
			s.tasks.remove(mt)
			return &DuplicateError{Key: t.UniqueKey, ID: u.id}
		}
		s.unique[k] = memUnique{t.ID, now.Add(t.UniqueTTL)}
	}
	mt.q = s.queue(t.Queue)
	mt.EnqueuedAt = now
	st := Pending
	if t.RunAt.After(now) {
		st = Scheduled
	}
	s.move(mt, st, now)
	t.State, t.EnqueuedAt = st, now
	return nil
}

// EnqueuePeriodic implements [Store].
func (s *MemoryStore) EnqueuePeriodic(ctx context.Context, name string, tick time.Time, t *Task) (bool, error) {
	mt := newMemTask(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return false, err
	}
	if last, ok := s.periodic[name]; ok && !tick.After(last) {
		return false, nil
	}
	if err := s.enqueueLocked(t, mt, time.Now()); err != nil {
		return false, err
	}
	s.periodic[name] = tick
	return true, nil
}

// Claim implements [Store].
func (s *MemoryStore) Claim(ctx context.Context, worker string, queues []string, max int, ttl time.Duration) ([]*Lease, error) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []*Lease
	var slab []Lease // the leases, allocated together
	for _, name := range queues {
		q := s.queues[name]
		if q == nil || q.paused {
			continue
		}
		s.promote(q, now)
		if q.pending.first != nil {
			n := min(max-len(out), q.counts[0])
			if out == nil {
				out = make([]*Lease, 0, n)
			}
			slab = make([]Lease, n)
		}
		for len(out) < max && q.pending.first != nil {
			t := q.pending.first
			t.token++
			t.Attempt++
			t.StartedAt = now
			t.Worker = worker
			t.deadline = now.Add(ttl)
			s.move(t, Active, now)
			l := &slab[0]
			slab = slab[1:]
			*l = Lease{Task: &t.Task, Attempt: t.Attempt, StartedAt: now, Token: t.token, Worker: worker, mem: t}
			out = append(out, l)
		}
		if len(out) == max {
			break
		}
	}
	return out, nil
}

// promote makes due scheduled and retry tasks pending.
func (s *MemoryStore) promote(q *memQueue, now time.Time) {
	for len(q.due) > 0 {
		e := q.due[0]
		if e.t.gen != e.gen {
			heap.Pop(&q.due)
			continue
		}
		if e.at.After(now) {
			return
		}
		heap.Pop(&q.due)
		s.move(e.t, Pending, now)
	}
}

// Wait implements [Store].
func (s *MemoryStore) Wait(ctx context.Context, queues []string) error {
	s.mu.Lock()
	if err := s.check(ctx); err != nil {
		s.mu.Unlock()
		return err
	}
	var next time.Time
	for _, name := range queues {
		q := s.queues[name]
		if q == nil || q.paused {
			continue
		}
		if q.pending.first != nil {
			s.mu.Unlock()
			return nil
		}
		for len(q.due) > 0 && q.due[0].t.gen != q.due[0].gen {
			heap.Pop(&q.due)
		}
		if len(q.due) > 0 && (next.IsZero() || q.due[0].at.Before(next)) {
			next = q.due[0].at
		}
	}
	wake := s.wake
	s.waiting++
	s.mu.Unlock()
	var timer <-chan time.Time
	if !next.IsZero() {
		t := time.NewTimer(time.Until(next))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-wake:
	case <-timer:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// lease returns the task of l if l still holds it.
func (s *MemoryStore) lease(l *Lease) (*memTask, error) {
	t := l.mem
	if t == nil || t.q.s != s {
		t = s.tasks.get(l.Task.ID)
	}
	if t == nil || t.State != Active || t.token != l.Token {
		return nil, ErrLeaseLost
	}
	return t, nil
}

// Renew implements [Store].
func (s *MemoryStore) Renew(ctx context.Context, leases []*Lease, ttl time.Duration) (lost, cancel []string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, nil, err
	}
	now := time.Now()
	for _, l := range leases {
		t, err := s.lease(l)
		if err != nil {
			lost = append(lost, l.Task.ID)
			continue
		}
		t.deadline = now.Add(ttl)
		if t.CancelRequested {
			cancel = append(cancel, t.ID)
		}
	}
	return lost, cancel, nil
}

// Finish implements [Store].
func (s *MemoryStore) Finish(ctx context.Context, l *Lease, o Outcome) error {
	var now time.Time // the finish time, kept only by a final task kept
	if o.State.Final() && s.retention >= 0 {
		now = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	t, err := s.lease(l)
	if err != nil {
		return err
	}
	if o.Error != "" {
		t.LastError = o.Error
	}
	switch o.State {
	case Pending:
		t.Attempt--
	case Retry:
		t.RunAt = o.RunAt
	case Succeeded, Dead, Cancelled:
	default:
		return fmt.Errorf("%w: outcome state %q", ErrInvalid, o.State)
	}
	t.CancelRequested = false
	s.move(t, o.State, now)
	return nil
}

// Progress implements [Store].
func (s *MemoryStore) Progress(ctx context.Context, l *Lease, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return err
	}
	t, err := s.lease(l)
	if err != nil {
		return err
	}
	t.Progress = slices.Clone(data)
	return nil
}

// Maintain implements [Store].
func (s *MemoryStore) Maintain(ctx context.Context) ([]*Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	now := time.Now()
	var back []*Task
	for _, q := range s.queues {
		// Backwards, as move swaps the last active task into the place of
		// the one it takes out.
		for i := len(q.active) - 1; i >= 0; i-- {
			t := q.active[i]
			if now.Before(t.deadline) {
				continue
			}
			t.LastError = errLeaseExpired
			t.CancelRequested = false
			st := Pending
			if t.Attempt >= t.MaxAttempts {
				st = Dead
			}
			s.move(t, st, now)
			back = append(back, t.snapshot())
		}
		for _, st := range []State{Succeeded, Dead, Cancelled} {
			s.trim(q, st, now)
		}
	}
	for k, u := range s.unique {
		if !now.Before(u.expires) {
			delete(s.unique, k)
		}
	}
	return back, nil
}

// errLeaseExpired is the LastError of a task whose worker stopped renewing
// its lease (crashed, or lost its store).
const errLeaseExpired = "tasks: lease expired: the worker stopped renewing it"

// Get implements [Store].
func (s *MemoryStore) Get(ctx context.Context, id string) (*Task, error) {
	return s.change(ctx, id, nil)
}

// List implements [Store]. Its cursor is an offset.
func (s *MemoryStore) List(ctx context.Context, opts ListOptions) (Page, error) {
	opts, err := opts.norm()
	if err != nil {
		return Page{}, err
	}
	skip := 0
	if opts.Cursor != "" {
		if skip, err = strconv.Atoi(opts.Cursor); err != nil || skip < 0 {
			return Page{}, fmt.Errorf("%w: bad cursor %q", ErrInvalid, opts.Cursor)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return Page{}, err
	}
	q := s.queues[opts.Queue]
	if q == nil {
		return Page{}, nil
	}
	var all []*memTask
	live := func(e memEntry) {
		if e.t != nil && e.t.gen == e.gen && e.t.State == opts.State {
			all = append(all, e.t)
		}
	}
	switch opts.State {
	case Pending:
		for t := q.pending.first; t != nil; t = t.next {
			all = append(all, t)
		}
	case Scheduled, Retry:
		due := slices.Clone(q.due)
		slices.SortFunc(due, func(a, b memEntry) int { return a.at.Compare(b.at) })
		for _, e := range due {
			live(e)
		}
	case Active:
		all = slices.Clone(q.active)
		slices.SortFunc(all, func(a, b *memTask) int { return a.deadline.Compare(b.deadline) })
	default:
		l := q.final[opts.State.index()].entries()
		for i := len(l) - 1; i >= 0; i-- {
			live(l[i])
		}
	}
	var p Page
	if skip < len(all) {
		end := min(skip+opts.Limit, len(all))
		for _, t := range all[skip:end] {
			p.Tasks = append(p.Tasks, t.snapshot())
		}
		if end < len(all) {
			p.Next = strconv.Itoa(end)
		}
	}
	return p, nil
}

// Counts implements [Store].
func (s *MemoryStore) Counts(ctx context.Context) (map[string]map[State]int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]map[State]int, len(s.queues))
	for name, q := range s.queues {
		m := make(map[State]int, len(States))
		for i, st := range States {
			m[st] = q.counts[i]
		}
		out[name] = m
	}
	return out, nil
}

// Retry implements [Store].
func (s *MemoryStore) Retry(ctx context.Context, id string) (*Task, error) {
	return s.change(ctx, id, func(t *memTask, now time.Time) error {
		switch t.State {
		case Dead, Cancelled:
			t.Attempt = 0
			t.FinishedAt = time.Time{}
		case Scheduled, Retry:
		default:
			return fmt.Errorf("%w: retry a %s task", ErrBadState, t.State)
		}
		s.move(t, Pending, now)
		return nil
	})
}

// Cancel implements [Store].
func (s *MemoryStore) Cancel(ctx context.Context, id string) (*Task, error) {
	return s.change(ctx, id, func(t *memTask, now time.Time) error {
		switch t.State {
		case Pending, Scheduled, Retry:
			s.move(t, Cancelled, now)
		case Active:
			t.CancelRequested = true
		default:
			return fmt.Errorf("%w: cancel a %s task", ErrBadState, t.State)
		}
		return nil
	})
}

// Delete implements [Store].
func (s *MemoryStore) Delete(ctx context.Context, id string) error {
	_, err := s.change(ctx, id, func(t *memTask, now time.Time) error {
		if t.State == Active {
			return fmt.Errorf("%w: delete an active task (cancel it first)", ErrBadState)
		}
		s.remove(t)
		return nil
	})
	return err
}

// change applies fn (if not nil) to the task with the ID and returns a
// snapshot of it.
func (s *MemoryStore) change(ctx context.Context, id string, fn func(*memTask, time.Time) error) (*Task, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	t := s.tasks.get(id)
	if t == nil {
		return nil, ErrNotFound
	}
	if fn != nil {
		if err := fn(t, time.Now()); err != nil {
			return nil, err
		}
	}
	return t.snapshot(), nil
}

// Close implements [Store]: later calls return [ErrClosed]. The tasks are
// dropped.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.wake)
	}
	return nil
}

// dueHeap orders entries by RunAt.
type dueHeap []memEntry

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(memEntry)) }
func (h *dueHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// memList is a FIFO list of tasks linked through their prev and next.
type memList struct{ first, last *memTask }

func (l *memList) push(t *memTask) {
	t.prev, t.next = l.last, nil
	if l.last == nil {
		l.first = t
	} else {
		l.last.next = t
	}
	l.last = t
}

func (l *memList) remove(t *memTask) {
	if t.prev == nil {
		l.first = t.next
	} else {
		t.prev.next = t.next
	}
	if t.next == nil {
		l.last = t.prev
	} else {
		t.next.prev = t.prev
	}
	t.prev, t.next = nil, nil
}
