package tasks

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rtkit/rtkit"
)

// Options configure a [Runner]. The zero value is ready to use: a memory
// store, the "default" queue, 10 workers.
type Options struct {
	// Store keeps the tasks. Default: a new [MemoryStore].
	Store Store
	// Backplane carries events and cancellations between runners. Default:
	// a private in-process backplane, so events reach only this runner's
	// subscribers and Cancel of a task running on another node takes
	// effect at that node's next lease renewal (within LeaseTTL/4). With a
	// [RedisStore], pass the nodes' shared RedisBackplane.
	Backplane rtkit.Backplane
	// EventsTopic is the backplane topic of events; cancellations use
	// EventsTopic + ":cancel". Default "tasks".
	EventsTopic string
	// Concurrency is how many tasks run at once. Default 10.
	Concurrency int
	// Queues maps the queues this runner works on to their weights: a
	// queue of weight 2 is served about twice as often as one of weight 1
	// when both have work. Default {"default": 1}.
	Queues map[string]int
	// StrictPriority serves queues in descending weight order instead: a
	// queue gets workers only when every heavier one is empty.
	StrictPriority bool
	// LeaseTTL is how long a claimed task stays leased without renewal;
	// the runner renews every LeaseTTL/4 while the task runs. A crashed
	// node's tasks are taken over within about LeaseTTL + 1s. Default 8s.
	LeaseTTL time.Duration
	// ShutdownTimeout is the drain budget of [Runner.Run]: when its
	// context ends, running tasks get this long to finish before they are
	// cancelled and handed back. Default 10s.
	ShutdownTimeout time.Duration
	// MaxPayload is the largest encoded payload Enqueue accepts. Default
	// 1 MiB.
	MaxPayload int
	// Node names this runner in leases and events. Default
	// "<hostname>-<pid>-<random>". Runners sharing a store need distinct
	// names: a node's leases are renewed together, so the tasks of a
	// crashed runner wait while another runner of its name lives, and a
	// runner gives up the tasks of its name that it doesn't run (see
	// [Store.Renew]), so two live runners of one name hand each other's
	// long tasks back.
	Node string
	// Logger receives store errors and handler panics. Default
	// slog.Default().
	Logger *slog.Logger
	// Middleware wraps every attempt of every task type, in order:
	// Middleware[0] is the outermost, the handler the innermost. See
	// [Middleware]. Default none (and no cost).
	Middleware []Middleware
}

// Runner enqueues tasks and runs them. Register handlers with [Handle] and
// periodic tasks with [Runner.Periodic], then call [Runner.Run]; a runner
// that only enqueues (a web node, say) never calls Run.
//
// All methods are safe for concurrent use. NewRunner starts no goroutine;
// Run starts its workers and ends them all before it returns.
type Runner struct {
	store    Store
	bp       rtkit.Backplane
	ownBP    bool
	topic    string
	conc     int
	queues   []weighted
	strict   bool
	leaseTTL time.Duration
	drain    time.Duration
	maxPay   int
	node     string
	log      *slog.Logger
	chain    HandlerFunc // Options.Middleware around runJob, or nil

	ids       idGen
	listeners atomic.Int32
	started   atomic.Bool
	inflight  atomic.Int64              // leases claimed and not yet finished
	slots     []atomic.Pointer[attempt] // the attempt each worker runs

	hmu      sync.RWMutex                       // serializes Handle and Periodic
	handlers atomic.Pointer[map[string]handler] // copied on write: workers read it lock-free
	periodic []*periodicTask

	want  atomic.Int64  // free slots the dispatcher waits for, or 0
	freed chan struct{} // signalled when the wanted slots are free
	skew  time.Duration // added to the scheduler's clock, in tests

	probeMu sync.Mutex
	probe   map[string]time.Time // queue → until when renewals probe it (see probeQueues)
}

type weighted struct {
	name   string
	weight int
}

// A handler makes the attempts of one task type.
type handler interface {
	newAttempt() *attempt
}

// A jobRunner runs an attempt's handler.
type jobRunner interface {
	run(ctx context.Context) error
}

// typedHandler is the handler of a type whose payloads decode into T.
type typedHandler[T any] struct {
	typ string
	fn  func(ctx context.Context, job *Job[T]) error
}

// jobAttempt is an attempt and its Job, in one allocation.
type jobAttempt[T any] struct {
	attempt
	h   *typedHandler[T]
	job Job[T]
}

func (h *typedHandler[T]) newAttempt() *attempt {
	ja := &jobAttempt[T]{h: h}
	ja.attempt.job = ja
	return &ja.attempt
}

func (ja *jobAttempt[T]) run(ctx context.Context) error {
	l, t, j := ja.lease, ja.lease.Task, &ja.job
	*j = Job[T]{ID: t.ID, Type: t.Type, Queue: t.Queue, Attempt: l.Attempt, MaxAttempts: t.MaxAttempts, a: &ja.attempt}
	if needsDecoding(t.Payload, &j.Payload) {
		if err := json.Unmarshal(t.Payload, &j.Payload); err != nil {
			return SkipRetry(fmt.Errorf("tasks: decoding the %s payload: %w", ja.h.typ, err))
		}
	}
	return ja.h.fn(ctx, j)
}

// newAttempt returns a new attempt of a task of type typ, with its Job
// if typ has a handler.
func (r *Runner) newAttempt(typ string) *attempt {
	h := (*r.handlers.Load())[typ]
	if h == nil {
		return &attempt{}
	}
	return h.newAttempt()
}

// NewRunner returns a runner configured by opts. It panics on invalid
// options (a bad queue name or weight), which are programming errors.
func NewRunner(opts Options) *Runner {
	r := &Runner{
		store:    opts.Store,
		bp:       opts.Backplane,
		topic:    cmp.Or(opts.EventsTopic, "tasks"),
		conc:     cmp.Or(max(opts.Concurrency, 0), 10),
		strict:   opts.StrictPriority,
		leaseTTL: cmp.Or(max(opts.LeaseTTL, 0), 8*time.Second),
		drain:    cmp.Or(max(opts.ShutdownTimeout, 0), 10*time.Second),
		maxPay:   cmp.Or(max(opts.MaxPayload, 0), 1<<20),
		node:     opts.Node,
		log:      opts.Logger,
		freed:    make(chan struct{}, 1),
		chain:    chain(opts.Middleware),
	}
	r.slots = make([]atomic.Pointer[attempt], r.conc)
	r.handlers.Store(&map[string]handler{})
	if r.store == nil {
		r.store = NewMemoryStore(MemoryOptions{})
	}
	if r.bp == nil {
		r.bp, r.ownBP = rtkit.NewMemoryBackplane(rtkit.MemoryOptions{}), true
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	if r.node == "" {
		host, _ := os.Hostname()
		r.node = fmt.Sprintf("%s-%d-%04x", cmp.Or(host, "node"), os.Getpid(), rand.Uint32()&0xffff)
	}
	if len(opts.Queues) == 0 {
		opts.Queues = map[string]int{DefaultQueue: 1}
	}
	for name, w := range opts.Queues {
		if err := checkName("queue", name); err != nil {
			panic(err.Error())
		}
		if w <= 0 {
			panic(fmt.Sprintf("tasks: queue %q has weight %d; weights must be positive", name, w))
		}
		r.queues = append(r.queues, weighted{name, w})
	}
	slices.SortFunc(r.queues, func(a, b weighted) int { return cmp.Or(b.weight-a.weight, cmp.Compare(a.name, b.name)) })
	return r
}

// Node returns the runner's node name.
func (r *Runner) Node() string { return r.node }

// Store returns the runner's store.
func (r *Runner) Store() Store { return r.store }

// Job is what a handler receives: the task's identity and decoded payload.
type Job[T any] struct {
	ID          string
	Type        string
	Queue       string
	Attempt     int // 1 for the first attempt
	MaxAttempts int
	Payload     T

	a *attempt
}

// Progress records v (JSON-encoded) as the task's progress and emits a
// progress event.
func (j *Job[T]) Progress(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("tasks: progress: %w", err)
	}
	r := j.a.r
	if err := r.store.Progress(ctx, j.a.lease, data); err != nil {
		return err
	}
	e := leaseEvent(EventProgress, j.a.lease, r.node)
	e.Progress = data
	r.emit(e)
	return nil
}

// Handle registers fn for tasks of type typ, whose payloads decode into T
// (from JSON). A task's attempt fails when fn returns an error: it is
// retried with the task's backoff unless the error wraps [ErrSkipRetry]
// ([SkipRetry]) or is a [RetryAfterError] ([RetryAfter]). A panic in fn
// fails the attempt with a [*PanicError]. fn's context ends at the task's
// timeout, on [Runner.Cancel], when the lease is lost, and at the end of
// the shutdown budget.
//
// Handle panics if typ is invalid or already has a handler.
func Handle[T any](r *Runner, typ string, fn func(ctx context.Context, job *Job[T]) error) {
	if err := checkName("task type", typ); err != nil {
		panic(err.Error())
	}
	h := &typedHandler[T]{typ, fn}
	r.hmu.Lock()
	defer r.hmu.Unlock()
	old := *r.handlers.Load()
	if _, ok := old[typ]; ok {
		panic(fmt.Sprintf("tasks: Handle(%q) called twice; register each task type once", typ))
	}
	m := maps.Clone(old)
	m[typ] = h
	r.handlers.Store(&m)
}

// needsDecoding reports whether decoding payload into v could change v or
// fail: not for an empty or null payload, nor for {} into a struct{}.
func needsDecoding(payload []byte, v any) bool {
	switch string(payload) {
	case "", "null":
		return false
	case "{}":
		_, empty := v.(*struct{})
		return !empty
	}
	return true
}

// Enqueue adds a task of type typ with payload (JSON-encoded;
// a json.RawMessage is used as it is) and returns it as stored. Without
// options it is due now, in the "default" queue, with 10 attempts, the
// default backoff and a 30m timeout.
//
// Errors: [ErrInvalid] for a bad type, option or payload; a
// [*DuplicateError] (wrapping [ErrDuplicate]) for a held unique key; the
// store's errors.
func (r *Runner) Enqueue(ctx context.Context, typ string, payload any, opts ...EnqueueOption) (*Task, error) {
	t, err := r.newTask(typ, payload, opts)
	if err != nil {
		return nil, err
	}
	if err := r.store.Enqueue(ctx, t); err != nil {
		return nil, err
	}
	r.emitEnqueued(t)
	return t, nil
}

func (r *Runner) emitEnqueued(t *Task) {
	if !r.listening() {
		return
	}
	e := newEvent(EventEnqueued, t, r.node)
	e.RunAt = t.RunAt
	r.emit(e)
}

func (r *Runner) newTask(typ string, payload any, opts []EnqueueOption) (*Task, error) {
	t := new(Task)
	if err := r.initTask(t, "", typ, payload, opts, nil); err != nil {
		return nil, err
	}
	return t, nil
}

// initTask makes *t a new task, validated, with id (or, for "", a new
// one). A batch passes its encoder, which keeps the payloads of many
// tasks in one buffer; nil encodes with json.Marshal.
func (r *Runner) initTask(t *Task, id, typ string, payload any, opts []EnqueueOption, enc *payloadEncoder) error {
	if err := checkName("task type", typ); err != nil {
		return err
	}
	var data []byte
	switch p := payload.(type) {
	case nil:
		data = []byte("null")
	case struct{}:
		data = []byte("{}")
	case json.RawMessage:
		if !json.Valid(p) {
			return fmt.Errorf("%w: payload is not valid JSON", ErrInvalid)
		}
		data = p
	default:
		var err error
		if enc != nil {
			data, err = enc.encode(payload)
		} else {
			data, err = json.Marshal(payload)
		}
		if err != nil {
			return fmt.Errorf("%w: encoding the payload: %w", ErrInvalid, err)
		}
	}
	if len(data) > r.maxPay {
		return fmt.Errorf("%w: payload of %d bytes exceeds MaxPayload %d", ErrInvalid, len(data), r.maxPay)
	}
	if id == "" {
		id = r.ids.next()
	}
	*t = Task{ID: id, Type: typ, Queue: DefaultQueue, Payload: data, MaxAttempts: DefaultMaxAttempts, Timeout: DefaultTimeout}
	for _, o := range opts {
		if err := o(t); err != nil {
			return err
		}
	}
	return nil
}

// idGen makes task IDs: UUIDv7 strings (RFC 9562) whose 12 bits after the
// millisecond timestamp hold the sub-millisecond time, advanced past the
// previous ID's when the clock hasn't moved, so that a runner's IDs are
// strictly increasing (github.com/google/uuid's scheme), followed by 62
// random bits from math/rand/v2 (the runtime's ChaCha8 generator, seeded
// by the OS; crypto/rand costs more than the rest of the ID). It is
// lock-free and allocates only the string.
type idGen struct {
	last atomic.Int64 // ms<<12 | sub-ms, of the latest ID
}

func (g *idGen) next() string {
	var b [36]byte
	formatID(&b, g.reserve(1))
	return string(b[:])
}

// reserve returns the first of n consecutive values for IDs: the
// clock's, or the one after the latest ID's if the clock hasn't passed it.
func (g *idGen) reserve(n int) int64 {
	nano := time.Now().UnixNano()
	ms := nano / 1e6
	v := ms<<12 | (nano-ms*1e6)>>8 // 1e6>>8 < 1<<12
	for {
		last := g.last.Load()
		if v <= last {
			v = last + 1
		}
		if g.last.CompareAndSwap(last, v+int64(n)-1) {
			return v
		}
	}
}

// fill sets the IDs of ts, in order, to new ones: one clock reading, and
// one string for each batchChunk IDs.
func (g *idGen) fill(ts []Task) {
	v := g.reserve(len(ts))
	var b [batchChunk * 36]byte
	for len(ts) > 0 {
		n := min(len(ts), batchChunk)
		for i := range n {
			formatID((*[36]byte)(b[i*36:]), v)
			v++
		}
		s := string(b[:n*36])
		for i := range n {
			ts[i].ID = s[i*36 : i*36+36]
		}
		ts = ts[n:]
	}
}

// formatID writes the ID of value v (see reserve) with fresh random bits.
func formatID(b *[36]byte, v int64) {
	var u [16]byte
	binary.BigEndian.PutUint64(u[8:], rand.Uint64())
	ms := v >> 12
	u[0], u[1], u[2], u[3], u[4], u[5] = byte(ms>>40), byte(ms>>32), byte(ms>>24), byte(ms>>16), byte(ms>>8), byte(ms)
	u[6], u[7] = 0x70|byte(v>>8&0x0f), byte(v) // version 7
	u[8] = u[8]&0x3f | 0x80                    // variant 10
	const hex = "0123456789abcdef"
	j := 0
	for i, c := range u {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			b[j] = '-'
			j++
		}
		b[j], b[j+1] = hex[c>>4], hex[c&0x0f]
		j += 2
	}
}

// Get returns the task with the ID, or [ErrNotFound].
func (r *Runner) Get(ctx context.Context, id string) (*Task, error) { return r.store.Get(ctx, id) }

// List returns a page of a queue's tasks in a state.
func (r *Runner) List(ctx context.Context, opts ListOptions) (Page, error) {
	return r.store.List(ctx, opts)
}

// Counts returns the number of tasks per queue and state.
func (r *Runner) Counts(ctx context.Context) (map[string]map[State]int, error) {
	return r.store.Counts(ctx)
}

// Retry makes a dead, cancelled, scheduled or retrying task pending now.
// A dead or cancelled task starts over with all its attempts.
func (r *Runner) Retry(ctx context.Context, id string) (*Task, error) {
	t, err := r.store.Retry(ctx, id)
	if err == nil {
		r.emitEnqueued(t)
	}
	return t, err
}

// Delete removes a task that isn't running ([ErrBadState] if it is:
// cancel it first).
func (r *Runner) Delete(ctx context.Context, id string) error { return r.store.Delete(ctx, id) }

// Cancel cancels a task. A waiting task is cancelled at once; a running
// one has its context cancelled on whichever node runs it, and is
// cancelled when its handler returns (unless it succeeded first). It
// returns the task as it is after the request.
func (r *Runner) Cancel(ctx context.Context, id string) (*Task, error) {
	t, err := r.store.Cancel(ctx, id)
	if err != nil {
		return nil, err
	}
	switch t.State {
	case Cancelled:
		r.emit(newEvent(EventCancelled, t, r.node))
	case Active:
		if !r.cancelLocal(id) && !r.ownBP {
			if _, err := r.bp.Publish(ctx, r.topic+":cancel", []byte(id), rtkit.PublishOptions{Ephemeral: true}); err != nil {
				r.log.Warn("tasks: publishing a cancellation failed; it takes effect at the next lease renewal", "task", id, "err", err)
			}
		}
	}
	return t, nil
}

// cancelLocal cancels the task's attempt if it runs here.
func (r *Runner) cancelLocal(id string) bool {
	for _, a := range r.running() {
		if a.lease.Task.ID == id {
			a.stop(stopCancel)
			return true
		}
	}
	return false
}

// order returns the queues in the order to claim from: by weight, either
// strictly or at random in proportion (a weighted shuffle). In strict
// order it returns fixed, the same slice every time.
func (r *Runner) order(fixed []string) []string {
	if r.strict || len(r.queues) == 1 {
		return fixed
	}
	type keyed struct {
		name string
		key  float64
	}
	ks := make([]keyed, len(r.queues))
	for i, q := range r.queues {
		ks[i] = keyed{q.name, math.Pow(rand.Float64(), 1/float64(q.weight))}
	}
	slices.SortFunc(ks, func(a, b keyed) int { return cmp.Compare(b.key, a.key) })
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.name
	}
	return names
}
