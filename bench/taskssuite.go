package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/tasks"
)

// The tasks suite compares rtkit's task runner on its Redis store with
// asynq, on the same Redis, each in this process and one at a time.
const (
	tasksN        = 20000 // tasks of enqueue and process
	tasksClients  = 50    // enqueuing goroutines, and each worker's concurrency
	tasksDelayed  = 200   // tasks of delay
	tasksAsynqDB  = 14    // asynq's Redis database, flushed before each run
	tasksPoolSize = 64    // go-redis pool of each server: above 50 callers
	tasksType     = "noop"
)

// tasksPayload is every task's payload, about 60 bytes of JSON. At is
// the enqueue call's start (pickup) or the due time (delay), in Unix ns.
type tasksPayload struct {
	User string `json:"user"`
	Seq  int    `json:"seq"`
	At   int64  `json:"at"`
}

// taskServer is one library's client and worker, on a fresh namespace.
type taskServer interface {
	// enqueue adds a noop task due after delay (now if zero).
	enqueue(ctx context.Context, p tasksPayload, delay time.Duration) error
	// start runs a worker of concurrency 50 calling h for every task.
	start(h func(tasksPayload)) error
	// stop ends the worker and waits for it.
	stop()
	// idle reports whether no task is left pending, scheduled, retrying
	// or running.
	idle(ctx context.Context) (bool, error)
	// close stops the worker if running and drops the namespace's keys.
	close()
}

// tasksSuite: enqueue rate, processing rate, idle pickup latency and the
// lateness of delayed tasks, rtkit's RedisStore against asynq.
func tasksSuite(cfg config) ([]Result, error) {
	ctx := context.Background()
	rtkitClient := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, PoolSize: tasksPoolSize})
	defer rtkitClient.Close()
	if err := rtkitClient.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("no Redis at %s: %w", cfg.redisAddr, err)
	}
	asynqClient := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, DB: tasksAsynqDB, PoolSize: tasksPoolSize})
	defer asynqClient.Close()
	defer asynqClient.FlushDB(ctx)

	factories := map[string]func() (taskServer, error){
		"rtkit": func() (taskServer, error) { return newRtkitTasks(rtkitClient) },
		"asynq": func() (taskServer, error) { return newAsynqTasks(asynqClient) },
	}
	pickups := max(cfg.pickups, 1)
	type workload struct {
		name    string
		metrics []metric
		run     func(server string, s taskServer) ([]float64, error)
	}
	workloads := []workload{
		{"enqueue", []metric{{"enqueue_per_s", "tasks/s"}}, tasksEnqueue},
		{"process", []metric{{"processed_per_s", "tasks/s"}}, tasksProcess},
		{"pickup", []metric{{"pickup_p50_ms", "ms"}, {"pickup_p99_ms", "ms"}}, func(server string, s taskServer) ([]float64, error) {
			return tasksPickup(s, pickups)
		}},
		{"delay", []metric{{"lateness_p99_ms", "ms"}, {"lateness_p50_ms", "ms"}}, func(server string, s taskServer) ([]float64, error) {
			return tasksDelay(s)
		}},
	}
	servers := []string{"rtkit", "asynq"}
	var wnames []string
	for _, w := range workloads {
		wnames = append(wnames, w.name)
	}
	if err := checkNames(cfg, servers, wnames); err != nil {
		return nil, err
	}
	var out []Result
	for _, w := range workloads {
		if !want(cfg.workloads, w.name) {
			continue
		}
		for _, name := range servers {
			if !want(cfg.servers, name) {
				continue
			}
			res := make([]Result, len(w.metrics))
			for i, m := range w.metrics {
				res[i] = Result{Suite: "tasks", Workload: w.name, Server: name, Metric: m.name, Unit: m.unit}
			}
			for run := range cfg.runs {
				if waited, idle := waitIdleMachine(2 * time.Minute); !idle {
					note("the machine is still busy after %s: other processes use the CPU", waited.Round(time.Second))
				}
				s, err := factories[name]()
				var vals []float64
				if err == nil {
					vals, err = w.run(name, s)
					s.close()
				}
				if err != nil {
					note("tasks %s %s skipped: %v", w.name, name, err)
					break
				}
				var parts []string
				for i, m := range w.metrics {
					parts = append(parts, m.name+" "+formatNum(vals[i]))
				}
				note("tasks %s %s run %d: %s", w.name, name, run+1, strings.Join(parts, ", "))
				for i := range res {
					res[i].Runs = append(res[i].Runs, vals[i])
				}
			}
			out = append(out, res...)
		}
	}
	return out, nil
}

// cpuMeter reads the CPU time of Redis (INFO cpu) and of this process,
// to tell where a throughput run's time went.
type cpuMeter struct {
	client        *redis.Client
	redis0, self0 float64
	ok            bool
}

func startCPUMeter(client *redis.Client) *cpuMeter {
	m := &cpuMeter{client: client}
	var ok1, ok2 bool
	m.redis0, ok1 = redisCPU(client)
	m.self0, ok2 = selfCPU()
	m.ok = ok1 && ok2
	return m
}

// String reports the CPU seconds used since start, or "" if unknown.
func (m *cpuMeter) String() string {
	r, ok1 := redisCPU(m.client)
	s, ok2 := selfCPU()
	if !m.ok || !ok1 || !ok2 {
		return ""
	}
	return fmt.Sprintf("; CPU: redis %.2f s, bench process %.2f s", r-m.redis0, s-m.self0)
}

func redisCPU(client *redis.Client) (float64, bool) {
	info, err := client.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0, false
	}
	var sum float64
	n := 0
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_user" || k == "used_cpu_sys") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, false
			}
			sum += f
			n++
		}
	}
	return sum, n == 2
}

// selfCPU is this process's CPU seconds (Linux; clock ticks of 10 ms).
func selfCPU() (float64, bool) {
	s := sampleCPU(os.Getpid())
	return s.procs / 100, s.ok
}

func tasksPayloadFor(i int) tasksPayload {
	return tasksPayload{User: "ada@example.com", Seq: i, At: time.Now().UnixNano()}
}

// tasksEnqueue: 20,000 tasks from 50 goroutines, no worker running.
func tasksEnqueue(server string, s taskServer) ([]float64, error) {
	cpu := startCPUMeter(meterClient(s))
	start := time.Now()
	rate, err := load(config{n: tasksN, clients: tasksClients}, func(ctx context.Context, i int) error {
		return s.enqueue(ctx, tasksPayloadFor(i), 0)
	})
	if err != nil {
		return nil, err
	}
	note("tasks enqueue %s: %d tasks in %.2f s%s", server, tasksN, time.Since(start).Seconds(), cpu)
	return []float64{rate}, nil
}

// tasksProcess: 20,000 tasks enqueued beforehand, then a worker of
// concurrency 50 with a no-op handler; timed from its start to the last
// handler's return. It then waits, untimed, for the queue to be empty.
func tasksProcess(server string, s taskServer) ([]float64, error) {
	if _, err := load(config{n: tasksN, clients: tasksClients}, func(ctx context.Context, i int) error {
		return s.enqueue(ctx, tasksPayloadFor(i), 0)
	}); err != nil {
		return nil, fmt.Errorf("filling the queue: %w", err)
	}
	var done atomic.Int64
	all := make(chan struct{})
	cpu := startCPUMeter(meterClient(s))
	start := time.Now()
	err := s.start(func(tasksPayload) {
		if done.Add(1) == tasksN {
			close(all)
		}
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-all:
	case <-time.After(3 * time.Minute):
		return nil, fmt.Errorf("%d of %d tasks ran in 3 minutes", done.Load(), tasksN)
	}
	elapsed := time.Since(start)
	cpuNote := cpu.String()
	if err := waitTasksIdle(s, 30*time.Second); err != nil {
		return nil, err
	}
	s.stop()
	if n := done.Load(); n != tasksN {
		note("tasks process %s: the handler ran %d times for %d tasks", server, n, tasksN)
	}
	note("tasks process %s: %d tasks in %.2f s%s", server, tasksN, elapsed.Seconds(), cpuNote)
	return []float64{tasksN / elapsed.Seconds()}, nil
}

func waitTasksIdle(s taskServer, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		idle, err := s.idle(context.Background())
		if err != nil {
			return err
		}
		if idle {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("tasks still queued or running %s after the last handler returned", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// tasksPickup: with the worker running and the queue idle, one task at a
// time, 20–50 ms apart; latency is the handler's start minus the start of
// the enqueue call. It returns p50 and p99 in ms.
func tasksPickup(s taskServer, samples int) ([]float64, error) {
	lat := make(chan float64, 16)
	if err := s.start(func(p tasksPayload) {
		lat <- float64(time.Now().UnixNano()-p.At) / 1e6
	}); err != nil {
		return nil, err
	}
	defer s.stop()
	ctx := context.Background()
	var ms []float64
	for i := range samples + 1 { // the first is a warm-up
		time.Sleep(20*time.Millisecond + rand.N(30*time.Millisecond))
		if err := s.enqueue(ctx, tasksPayloadFor(i), 0); err != nil {
			return nil, err
		}
		select {
		case v := <-lat:
			if i > 0 {
				ms = append(ms, v)
			}
		case <-time.After(10 * time.Second):
			return nil, fmt.Errorf("task %d not picked up in 10 s", i)
		}
	}
	return []float64{quantile(ms, 0.5), quantile(ms, 0.99)}, nil
}

// tasksDelay: 200 tasks, each due 0.5–3 s after its enqueue call starts,
// with the worker running; lateness is the handler's start minus the due
// time. It returns p99 and p50 in ms.
func tasksDelay(s taskServer) ([]float64, error) {
	late := make(chan float64, tasksDelayed+1)
	if err := s.start(func(p tasksPayload) {
		late <- float64(time.Now().UnixNano()-p.At) / 1e6
	}); err != nil {
		return nil, err
	}
	defer s.stop()
	ctx := context.Background()
	// A warm-up task, so that the worker is waiting when the others come.
	if err := s.enqueue(ctx, tasksPayloadFor(-1), 0); err != nil {
		return nil, err
	}
	select {
	case <-late:
	case <-time.After(10 * time.Second):
		return nil, errors.New("the warm-up task was not picked up in 10 s")
	}
	for i := range tasksDelayed {
		d := 500*time.Millisecond + rand.N(2500*time.Millisecond)
		p := tasksPayloadFor(i)
		p.At += int64(d)
		if err := s.enqueue(ctx, p, d); err != nil {
			return nil, err
		}
	}
	ms := make([]float64, 0, tasksDelayed)
	timeout := time.After(time.Minute)
	for len(ms) < tasksDelayed {
		select {
		case v := <-late:
			ms = append(ms, v)
		case <-timeout:
			return nil, fmt.Errorf("%d of %d delayed tasks ran within a minute", len(ms), tasksDelayed)
		}
	}
	return []float64{quantile(ms, 0.99), quantile(ms, 0.5)}, nil
}

// quantile is the nearest-rank q-quantile of v.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func meterClient(s taskServer) *redis.Client {
	switch s := s.(type) {
	case *rtkitTasks:
		return s.client
	case *asynqTasks:
		return s.client
	}
	return nil
}

var tasksLogger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

// rtkitTasks is a tasks.Runner on a RedisStore with a prefix of its own.
type rtkitTasks struct {
	client  *redis.Client
	prefix  string
	store   *tasks.RedisStore
	runner  *tasks.Runner
	handler func(tasksPayload)
	cancel  context.CancelFunc
	done    chan struct{}
}

func newRtkitTasks(client *redis.Client) (*rtkitTasks, error) {
	s := &rtkitTasks{client: client, prefix: fmt.Sprintf("bench:tasks:%d:", time.Now().UnixNano())}
	store, err := tasks.NewRedisStore(tasks.RedisOptions{Client: client, Prefix: s.prefix})
	if err != nil {
		return nil, err
	}
	s.store = store
	s.runner = tasks.NewRunner(tasks.Options{Store: store, Concurrency: tasksClients, Logger: tasksLogger})
	tasks.Handle(s.runner, tasksType, func(ctx context.Context, j *tasks.Job[tasksPayload]) error {
		s.handler(j.Payload)
		return nil
	})
	return s, nil
}

func (s *rtkitTasks) enqueue(ctx context.Context, p tasksPayload, delay time.Duration) error {
	var opts []tasks.EnqueueOption
	if delay > 0 {
		opts = append(opts, tasks.Delay(delay))
	}
	_, err := s.runner.Enqueue(ctx, tasksType, p, opts...)
	return err
}

func (s *rtkitTasks) start(h func(tasksPayload)) error {
	s.handler = h
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel, s.done = cancel, make(chan struct{})
	go func() {
		defer close(s.done)
		if err := s.runner.Run(ctx); err != nil {
			note("tasks rtkit: Run: %v", err)
		}
	}()
	return nil
}

func (s *rtkitTasks) stop() {
	if s.cancel != nil {
		s.cancel()
		<-s.done
		s.cancel = nil
	}
}

func (s *rtkitTasks) idle(ctx context.Context) (bool, error) {
	counts, err := s.runner.Counts(ctx)
	if err != nil {
		return false, err
	}
	for _, c := range counts {
		if c[tasks.Pending]+c[tasks.Scheduled]+c[tasks.Retry]+c[tasks.Active] > 0 {
			return false, nil
		}
	}
	return true, nil
}

func (s *rtkitTasks) close() {
	s.stop()
	_ = s.store.Close()
	ctx := context.Background()
	for range 5 { // until a whole scan finds nothing
		iter := s.client.Scan(ctx, 0, s.prefix+"*", 1000).Iterator()
		var keys []string
		found := 0
		for iter.Next(ctx) {
			found++
			if keys = append(keys, iter.Val()); len(keys) == 1000 {
				s.client.Unlink(ctx, keys...)
				keys = keys[:0]
			}
		}
		if len(keys) > 0 {
			s.client.Unlink(ctx, keys...)
		}
		if found == 0 {
			return
		}
	}
}

// asynqTasks is an asynq Client and Server on their own Redis database,
// flushed when created.
type asynqTasks struct {
	client *redis.Client
	ac     *asynq.Client
	srv    *asynq.Server
}

func newAsynqTasks(client *redis.Client) (*asynqTasks, error) {
	if err := client.FlushDB(context.Background()).Err(); err != nil {
		return nil, err
	}
	return &asynqTasks{client: client, ac: asynq.NewClientFromRedisClient(client)}, nil
}

func (s *asynqTasks) enqueue(ctx context.Context, p tasksPayload, delay time.Duration) error {
	data, err := json.Marshal(p)
	if err != nil {
		return err
	}
	var opts []asynq.Option
	if delay > 0 {
		opts = append(opts, asynq.ProcessIn(delay))
	}
	_, err = s.ac.EnqueueContext(ctx, asynq.NewTask(tasksType, data), opts...)
	return err
}

func (s *asynqTasks) start(h func(tasksPayload)) error {
	// asynq's defaults otherwise: an idle processor polls every 0.5–1.5 s
	// (TaskCheckInterval 1s), scheduled tasks are forwarded every 5 s
	// (DelayedTaskCheckInterval), and Retention 0 deletes done tasks.
	s.srv = asynq.NewServerFromRedisClient(s.client, asynq.Config{
		Concurrency: tasksClients,
		Queues:      map[string]int{"default": 1},
		LogLevel:    asynq.WarnLevel,
	})
	return s.srv.Start(asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		var p tasksPayload
		if err := json.Unmarshal(t.Payload(), &p); err != nil {
			return asynq.SkipRetry
		}
		h(p)
		return nil
	}))
}

func (s *asynqTasks) stop() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv = nil
	}
}

func (s *asynqTasks) idle(ctx context.Context) (bool, error) {
	info, err := asynq.NewInspectorFromRedisClient(s.client).GetQueueInfo("default")
	if err != nil {
		return false, err
	}
	return info.Pending+info.Scheduled+info.Retry+info.Active == 0, nil
}

func (s *asynqTasks) close() { s.stop() }
