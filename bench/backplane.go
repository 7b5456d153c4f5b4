package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit"
)

// backplaneSuite compares publishing through rtkit's Redis backplane
// (append to history + publish, batched) with an unbatched client sending
// plain PUBLISH, and with redis-benchmark's SET at the same concurrency:
// the ceiling for one command per round trip. rtkit-memory, the in-process
// backplane with one publisher, is its own workload.
func backplaneSuite(cfg config) ([]Result, error) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, PoolSize: cfg.clients + 8})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("no Redis at %s: %w", cfg.redisAddr, err)
	}
	defer client.Del(ctx, "bench:{room}")
	payload := []byte(`{"user":"ada","text":"hello, room"}`)
	workload := fmt.Sprintf("publish-c%d", cfg.clients)
	throughput := []metric{{"throughput", "msg/s"}}

	type server struct {
		workload, name string
		metrics        []metric
		run            func() ([]float64, error)
	}
	servers := []server{
		{workload, "redis-benchmark-set", []metric{{"throughput", "req/s"}}, func() ([]float64, error) {
			rps, err := redisBenchmarkSET(cfg)
			return []float64{rps}, err
		}},
		{workload, "go-redis-publish", throughput, func() ([]float64, error) {
			rate, err := load(cfg, func(ctx context.Context, i int) error {
				return client.Publish(ctx, "bench:plain", "payload").Err()
			})
			return []float64{rate}, err
		}},
		{workload, "rtkit-redis", []metric{{"throughput", "msg/s"}, {"delivered", "msg/s"}}, func() ([]float64, error) {
			return rtkitRedisRun(cfg, client, payload)
		}},
		{"publish-c1", "rtkit-memory", throughput, func() ([]float64, error) {
			rate, err := rtkitMemoryRun(cfg, payload)
			return []float64{rate}, err
		}},
	}
	var names, workloads []string
	for _, s := range servers {
		names = append(names, s.name)
		if !slices.Contains(workloads, s.workload) {
			workloads = append(workloads, s.workload)
		}
	}
	if err := checkNames(cfg, names, workloads); err != nil {
		return nil, err
	}
	var out []Result
	for _, s := range servers {
		if !want(cfg.workloads, s.workload) || !want(cfg.servers, s.name) {
			continue
		}
		res := make([]Result, len(s.metrics))
		for i, m := range s.metrics {
			res[i] = Result{Suite: "backplane", Workload: s.workload, Server: s.name, Metric: m.name, Unit: m.unit}
		}
		for range cfg.runs {
			if waited, idle := waitIdleMachine(2 * time.Minute); !idle {
				note("the machine is still busy after %s: other processes use the CPU", waited.Round(time.Second))
			}
			vals, err := s.run()
			if err != nil {
				note("backplane %s %s skipped: %v", s.workload, s.name, err)
				break
			}
			for i := range res {
				res[i].Runs = append(res[i].Runs, vals[i])
			}
		}
		out = append(out, res...)
	}
	return out, nil
}

// metric names a measured figure and its unit.
type metric struct{ name, unit string }

// rtkitRedisRun publishes cfg.n messages through a RedisBackplane with a
// subscriber on a second node; it returns the publish rate and the rate at
// which the subscriber received them all.
func rtkitRedisRun(cfg config, client *redis.Client, payload []byte) ([]float64, error) {
	ctx := context.Background()
	defer client.Del(ctx, "bench:{room}")
	pub, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: client, Prefix: "bench:"})
	if err != nil {
		return nil, err
	}
	defer pub.Close()
	subClient := redis.NewClient(&redis.Options{Addr: cfg.redisAddr})
	defer subClient.Close()
	node2, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: subClient, Prefix: "bench:"})
	if err != nil {
		return nil, err
	}
	defer node2.Close()
	var got atomic.Int64
	sub, err := node2.Subscribe(ctx, "room", rtkit.SubscribeOptions{}, countHandler{&got})
	if err != nil {
		return nil, err
	}
	defer sub.Close()
	start := time.Now()
	rate, err := load(cfg, func(ctx context.Context, i int) error {
		_, err := pub.Publish(ctx, "room", payload, rtkit.PublishOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	for got.Load() < int64(cfg.n) && time.Since(start) < time.Minute {
		time.Sleep(time.Millisecond)
	}
	if n := got.Load(); n < int64(cfg.n) {
		note("backplane rtkit-redis: the subscriber received %d of %d messages", n, cfg.n)
	}
	return []float64{rate, float64(got.Load()) / time.Since(start).Seconds()}, nil
}

// rtkitMemoryRun publishes 5×cfg.n messages from one goroutine to a
// MemoryBackplane with one subscriber.
func rtkitMemoryRun(cfg config, payload []byte) (float64, error) {
	ctx := context.Background()
	mem := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	defer mem.Close()
	var got atomic.Int64
	sub, err := mem.Subscribe(ctx, "room", rtkit.SubscribeOptions{}, countHandler{&got})
	if err != nil {
		return 0, err
	}
	defer sub.Close()
	return load(config{n: cfg.n * 5, clients: 1}, func(ctx context.Context, i int) error {
		_, err := mem.Publish(ctx, "room", payload, rtkit.PublishOptions{})
		return err
	})
}

type countHandler struct{ n *atomic.Int64 }

func (h countHandler) HandleMessage(*rtkit.Message) { h.n.Add(1) }
func (h countHandler) HandleGap(rtkit.ID)           {}

// load runs cfg.n calls of fn from cfg.clients goroutines and returns
// calls per second.
func load(cfg config, fn func(ctx context.Context, i int) error) (float64, error) {
	ctx := context.Background()
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	start := time.Now()
	for range cfg.clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(cfg.n) {
					return
				}
				if err := fn(ctx, int(i)); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := firstErr.Load(); err != nil {
		return 0, *err
	}
	return float64(cfg.n) / time.Since(start).Seconds(), nil
}

var rpsRe = regexp.MustCompile(`SET: ([0-9.]+) requests per second`)

// redisBenchmarkSET runs redis-benchmark's SET at the suite's concurrency.
func redisBenchmarkSET(cfg config) (float64, error) {
	host, port, err := net.SplitHostPort(cfg.redisAddr)
	if err != nil {
		return 0, err
	}
	outb, err := exec.Command("redis-benchmark", "-h", host, "-p", port, "-q", "-t", "set",
		"-c", strconv.Itoa(cfg.clients), "-n", strconv.Itoa(cfg.n)).Output()
	if err != nil {
		return 0, err
	}
	m := rpsRe.FindSubmatch(outb)
	if m == nil {
		return 0, fmt.Errorf("unexpected redis-benchmark output %q", outb)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}
