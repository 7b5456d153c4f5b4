// Package tasks runs background tasks: typed handlers, retries with
// backoff, delays, timeouts, unique tasks, periodic tasks, progress
// events, inspection and cancellation, on a memory store for one process
// or a Redis store for many nodes.
//
// It is what FastAPI's BackgroundTasks is not: a task survives a restart
// (with the Redis store), is retried when it fails, runs on any node, and
// can be watched and cancelled while it runs.
//
//	r := tasks.NewRunner(tasks.Options{})      // memory store, "default" queue, 10 workers
//	tasks.Handle(r, "email.send", func(ctx context.Context, j *tasks.Job[Email]) error {
//		return send(ctx, j.Payload)           // an error retries with backoff
//	})
//	go r.Run(ctx)                             // until ctx ends, then drains
//	r.Enqueue(ctx, "email.send", Email{To: "ada@example.com"}, tasks.Delay(time.Minute))
//
// # Life of a task
//
// [Runner.Enqueue] stores a task as [Pending] (or [Scheduled], with [Delay]
// or [RunAt]). A runner's dispatcher claims due tasks in batches and leases
// them to its workers ([Options.Concurrency]); the handler registered with
// [Handle] for the task's type runs with the decoded payload. Its outcome:
//
//   - nil: [Succeeded];
//   - an error: [Retry], due after the task's [Backoff] (exponential with
//     jitter by default) or after the delay of a [RetryAfter] error, until
//     its [MaxAttempts] are spent: then [Dead];
//   - an error wrapping [ErrSkipRetry] ([SkipRetry]): [Dead] at once;
//   - a panic: a failed attempt with a [*PanicError];
//   - running past its [Timeout]: the handler's context ends and the
//     attempt fails.
//
// Final tasks are kept for the store's retention (24h and 10,000 per queue
// and state by default) for inspection with [Runner.Get], [Runner.List] and
// [Runner.Counts]; [Runner.Retry], [Runner.Cancel] and [Runner.Delete]
// change them.
//
// # Delivery
//
// Tasks are delivered at least once. A worker holds a lease on the tasks
// it runs and renews it every LeaseTTL/4; if the worker's node dies, the
// lease expires and another node's maintenance hands its tasks back within
// about [Options.LeaseTTL] (8s by default) plus a second, counting the
// attempt. A task its living worker lost track of (its outcome could not
// be stored after 5 tries, or the reply of the Redis store's claim never
// arrived) is no longer renewed and is handed back the same way, about
// LeaseTTL after it was claimed, while the worker renews its other
// tasks; the outcome of a task is retried, and its lease renewed, for
// as long as the tries last. A fencing token rejects the late result of
// a worker that lost its lease ([ErrLeaseLost]). Handlers should therefore be idempotent, or
// use [Unique] keys and their own deduplication.
//
// An Enqueue is applied once: a task whose [ID] exists is left alone,
// and the [RedisStore] recognises a client's retry of any of its calls
// (go-redis sends a call again after a read timeout, though Redis may
// have run it) and applies it once. Callers can make their own retries
// idempotent with the [ID] option: Enqueue of an ID that exists returns
// a [*DuplicateError] (Key "", ID the existing task's) and changes
// nothing.
//
// [Runner.EnqueueMany] enqueues a batch in one store operation (one
// round trip to Redis), all or nothing, with a result per task: a
// duplicate ID or unique key is reported in its task's result and the
// rest of the batch is enqueued.
//
// [Runner.Run] never abandons work on shutdown: when its context ends it
// stops claiming, lets running tasks finish within
// [Options.ShutdownTimeout], then cancels the rest and hands them back
// without counting the attempt ([EventInterrupted]).
//
// # Middleware
//
// [Options.Middleware] wraps every attempt, of every task type, in
// functions of the shape func(next [HandlerFunc]) HandlerFunc, the first
// the outermost: for logging (see the slog example of [Middleware]),
// tracing, metrics (the histogram example) or policies of your own. A
// middleware sees the attempt as an [Attempt] (ID, type, queue, attempt
// number, raw payload), may pass the handler a derived context, and
// decides the attempt's outcome by what it returns; a panic in it fails
// the attempt like a handler's panic. Without middleware an attempt pays
// nothing for the feature.
//
// # Queues
//
// A runner serves the queues of [Options.Queues] in proportion to their
// weights, or strictly by weight with [Options.StrictPriority]. A task
// picks its queue with [Queue].
//
// [Runner.PauseQueue] stops every node from claiming a queue's tasks
// until [Runner.ResumeQueue]; the queue keeps accepting tasks, running
// ones finish, and [Runner.PausedQueues] lists the paused queues. The
// pause is kept by the store ([Pauser]): on Redis it is a key of the
// queue, checked by the claim script, so it holds for every node and
// survives their restarts.
//
// # Periodic tasks
//
// [Runner.Periodic] enqueues a task at every tick of a [Schedule]: [Every]
// for fixed intervals, [ParseCron] for cron expressions. Ticks are absolute
// instants, and the store accepts each tick once (a tick at or before the
// last one enqueued is refused), so any number of runners may register the
// same schedule: each tick fires exactly once, whichever node gets there
// first, with no double firing when nodes start, stop or disagree slightly
// about the time.
//
// # Events
//
// Every change is an [Event] (enqueued, started, progress, succeeded,
// retrying, failed, dead, interrupted, cancelled) published as JSON on a
// backplane topic ([Options.EventsTopic], default "tasks");
// [Runner.Subscribe] delivers them. With the nodes' shared
// rtkit.RedisBackplane as [Options.Backplane], events of every node reach
// every subscriber, cancellations reach the node running the task at
// once, and an sse.Broker on the same backplane streams the topic to a
// dashboard as it is.
//
// # Stores
//
// [MemoryStore] (the default) keeps tasks in memory for one process.
// [RedisStore] is durable and shared by any number of runners; see its
// documentation for how it stays consistent and fast, and for what it
// does when Redis loses its data (each process registers the queues it
// uses again, so maintenance and inspection keep seeing them). Both pass
// one conformance suite.
//
// On a Redis Cluster with replicas, a failover of a queue's primary stops
// that queue only until a replica takes over, provided the client's slot
// map is refreshed: an rtkit.RedisBackplane on the same client does so
// after connection errors (go-redis alone waits up to a minute). In
// TestRedisRunnersSurviveClusterFailover (two runners, cluster-node-timeout
// 2s, SIGKILL of the queue's primary) enqueueing worked again 4.1s after
// the kill and all 60 acknowledged tasks ran; a task acknowledged by the
// old primary but not yet replicated would be lost with it.
//
// # Performance
//
// Measured on a shared 2-vCPU cloud VM (Go 1.26, Redis 7.0 on loopback);
// bench/README.md has the side-by-side run against asynq v0.26 on the same
// Redis (ratios from one run):
//
//   - Redis store: 29,400 tasks/s processed at concurrency 50 (4.7× asynq),
//     73,500 enqueues/s from 50 goroutines (2.8×), idle pickup p50 1.6 ms
//     (asynq ~1 s: it polls), delayed tasks start 2.9 ms late at p99
//     (asynq ~4 s);
//   - EnqueueMany from one goroutine (BenchmarkEnqueueOneGoroutine,
//     batches of 100 and 1,000 against one Enqueue at a time, 6 rounds
//     alternating the binaries before and after the batch allocation
//     work, while other builds kept the load average at 25–30: ratios
//     are paired within a round, medians with their range): Redis store
//     26,400 and 45,800 tasks/s against 6,350 (5.0×, 3.3–12×, and 7.0×,
//     4.7–27×: one round trip per batch instead of per task); memory
//     store, by CPU time a task (cpu-ns/task at -cpu 1, the garbage
//     collector's included, steadier than rates under that load), 1.8
//     and 1.4 µs against 3.9 µs (2.1× and 2.6×; 2.3 µs batched, 1.8×,
//     before batches allocated their tasks 8 at a time). Rates under that
//     load say 5–6× as medians but 1.1–10× between rounds. The memory
//     store stays short of 5× because most of a task's cost is the same
//     in both: JSON-encoding the payload (38% of a batch's CPU for the
//     benchmark's two-key map), the store's 600-byte record and index
//     entry (25%), the Task returned and its ID; with the payload given
//     encoded (a json.RawMessage) it is 3.1 against 1.0 µs, 3×;
//   - memory store: BenchmarkMemoryProcess runs 540,000–650,000 no-op
//     tasks/s with the default retention and 750,000–980,000 with none,
//     one allocation (about 315 B) a task; BenchmarkMemoryThroughput
//     (enqueue and run together) 230,000–330,000/s, five allocations a
//     task, most of them the task Enqueue returns. A handler's context
//     costs nothing until the handler uses it (ctx.Done, or a derived
//     context), and short tasks run back to back on the workers already
//     awake rather than waking a goroutine each.
package tasks
