package main

import (
	"context"
	"fmt"
	"net"
	"os/exec"
	"regexp"
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
// the ceiling for one command per round trip.
func backplaneSuite(cfg config) ([]Result, error) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, PoolSize: cfg.clients + 8})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("no Redis at %s: %w", cfg.redisAddr, err)
	}
	defer client.Del(ctx, "bench:{room}")
	workload := fmt.Sprintf("publish-c%d", cfg.clients)
	var out []Result
	add := func(server, metric string, v float64, unit string) {
		out = append(out, Result{Suite: "backplane", Server: server, Workload: workload, Metric: metric, Value: v, Unit: unit})
	}

	if rps, err := redisBenchmarkSET(cfg); err == nil {
		add("redis-benchmark-set", "throughput", rps, "req/s")
	} else {
		fmt.Println("# redis-benchmark SET skipped:", err)
	}

	rate, err := load(cfg, func(ctx context.Context, i int) error {
		return client.Publish(ctx, "bench:plain", "payload").Err()
	})
	if err != nil {
		return nil, err
	}
	add("go-redis-publish", "throughput", rate, "msgs/s")

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
	payload := []byte(`{"user":"ada","text":"hello, room"}`)
	start := time.Now()
	rate, err = load(cfg, func(ctx context.Context, i int) error {
		_, err := pub.Publish(ctx, "room", payload, rtkit.PublishOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	add("rtkit-redis", "throughput", rate, "msgs/s")
	for got.Load() < int64(cfg.n) && time.Since(start) < time.Minute {
		time.Sleep(time.Millisecond)
	}
	add("rtkit-redis", "delivered", float64(got.Load())/time.Since(start).Seconds(), "msgs/s")

	mem := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	defer mem.Close()
	var memGot atomic.Int64
	msub, err := mem.Subscribe(ctx, "room", rtkit.SubscribeOptions{}, countHandler{&memGot})
	if err != nil {
		return nil, err
	}
	defer msub.Close()
	rate, err = load(config{n: cfg.n * 5, clients: 1}, func(ctx context.Context, i int) error {
		_, err := mem.Publish(ctx, "room", payload, rtkit.PublishOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	out = append(out, Result{Suite: "backplane", Server: "rtkit-memory", Workload: "publish-c1", Metric: "throughput", Value: rate, Unit: "msgs/s"})
	return out, nil
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
	var firstErr atomic.Value
	start := time.Now()
	for range cfg.clients {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(cfg.n) {
					return
				}
				if err := fn(ctx, int(i)); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return 0, err
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
