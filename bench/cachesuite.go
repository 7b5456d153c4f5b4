package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocache "github.com/go-redis/cache/v9"
	"github.com/maypok86/otter/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/cache"
)

// cacheUser is the cached value of the cache suite: a small struct with a
// slice, as a typical cached record.
type cacheUser struct {
	Name string
	Age  int
	Tags []string
}

var cacheValue = cacheUser{Name: "Ada Lovelace", Age: 36, Tags: []string{"math", "engines", "poetry"}}

const (
	cachePrefix     = "bench:cache:"
	stampedeCallers = 1000
	stampedeSleep   = 20 * time.Millisecond
)

// cacheSuite compares rtkit's cache with go-redis/cache (v9, TinyLFU local
// cache) on a local hit, a Redis hit and a stampede of one cold key; and
// the Redis hit with a raw go-redis GET plus json.Unmarshal.
func cacheSuite(cfg config) ([]Result, error) {
	ctx := context.Background()
	client := redis.NewClient(&redis.Options{Addr: cfg.redisAddr, PoolSize: stampedeCallers + 8})
	defer client.Close()
	if err := client.Ping(ctx).Err(); err != nil {
		return nil, fmt.Errorf("no Redis at %s: %w", cfg.redisAddr, err)
	}
	defer cleanCacheKeys(client)

	hitNs := metric{"hit_ns", "ns/op"}
	type server struct {
		workload, name string
		metrics        []metric
		run            func() ([]float64, error)
	}
	servers := []server{
		{"local_hit", "rtkit", []metric{hitNs, {"allocs", "allocs/op"}}, func() ([]float64, error) {
			return rtkitHit(client, true)
		}},
		{"local_hit", "go-redis-cache", []metric{hitNs, {"allocs", "allocs/op"}}, func() ([]float64, error) {
			return goRedisCacheHit(client, true)
		}},
		{"local_hit", "otter-raw", []metric{hitNs, {"allocs", "allocs/op"}}, otterRawHit},
		{"redis_hit", "rtkit", []metric{hitNs}, func() ([]float64, error) {
			return rtkitHit(client, false)
		}},
		{"redis_hit", "go-redis-cache", []metric{hitNs}, func() ([]float64, error) {
			return goRedisCacheHit(client, false)
		}},
		{"redis_hit", "go-redis-get", []metric{hitNs}, func() ([]float64, error) {
			return rawGetHit(client)
		}},
		{"stampede", "rtkit", []metric{{"loader_calls", "calls"}, {"wall_ms", "ms"}}, func() ([]float64, error) {
			return rtkitStampede(client)
		}},
		{"stampede", "go-redis-cache", []metric{{"loader_calls", "calls"}, {"wall_ms", "ms"}}, func() ([]float64, error) {
			return goRedisCacheStampede(client)
		}},
	}
	var names, workloads []string
	for _, s := range servers {
		if !slices.Contains(names, s.name) {
			names = append(names, s.name)
		}
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
			res[i] = Result{Suite: "cache", Workload: s.workload, Server: s.name, Metric: m.name, Unit: m.unit}
		}
		for range cfg.runs {
			if waited, idle := waitIdleMachine(2 * time.Minute); !idle {
				note("the machine is still busy after %s: other processes use the CPU", waited.Round(time.Second))
			}
			vals, err := s.run()
			if err != nil {
				note("cache %s %s skipped: %v", s.workload, s.name, err)
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

// cleanCacheKeys deletes the suite's keys from Redis.
func cleanCacheKeys(client *redis.Client) {
	ctx := context.Background()
	iter := client.Scan(ctx, 0, cachePrefix+"*", 1000).Iterator()
	for iter.Next(ctx) {
		client.Del(ctx, iter.Val())
	}
}

// hitResult measures fn as a benchmark (ns per call) and, if withAllocs,
// its allocations per call; fn must already hit.
func hitResult(fn func() error, withAllocs bool) ([]float64, error) {
	if err := fn(); err != nil {
		return nil, err
	}
	var ferr atomic.Pointer[error]
	br := testing.Benchmark(func(b *testing.B) {
		for b.Loop() {
			if err := fn(); err != nil {
				ferr.CompareAndSwap(nil, &err)
				b.FailNow()
			}
		}
	})
	if err := ferr.Load(); err != nil {
		return nil, *err
	}
	if br.N == 0 {
		return nil, errors.New("benchmark did not run")
	}
	vals := []float64{float64(br.T.Nanoseconds()) / float64(br.N)}
	if withAllocs {
		vals = append(vals, testing.AllocsPerRun(100000, func() { _ = fn() }))
	}
	return vals, nil
}

// rtkitHit measures GetOrLoad of a cached key, from the local tier if
// local is set, else from Redis.
func rtkitHit(client *redis.Client, local bool) ([]float64, error) {
	ctx := context.Background()
	opts := cache.Options{Store: cache.NewRedisStore(client, cachePrefix+"rtkit:"), TTL: time.Hour}
	if local {
		opts.Local = &cache.LocalOptions{}
	}
	c := cache.New(opts)
	defer c.Shutdown(ctx)
	key := fmt.Sprintf("hit:%t:%d", local, time.Now().UnixNano())
	var loads atomic.Int64
	load := func(context.Context) (cacheUser, error) {
		loads.Add(1)
		return cacheValue, nil
	}
	fn := func() error {
		v, err := cache.GetOrLoad(ctx, c, key, load)
		if err == nil && v.Age != cacheValue.Age {
			err = errors.New("rtkit: wrong value")
		}
		return err
	}
	vals, err := hitResult(fn, local)
	if err == nil && loads.Load() != 1 {
		note("cache rtkit local=%t: %d loads instead of 1", local, loads.Load())
	}
	return vals, err
}

// otterRawHit measures otter's own GetIfPresent of the same value, as
// rtkit's local tier keeps it (decoded, size-bounded, no expiry): the
// floor of a local hit.
func otterRawHit() ([]float64, error) {
	oc, err := otter.New(&otter.Options[string, cacheUser]{MaximumSize: 10000})
	if err != nil {
		return nil, err
	}
	key := fmt.Sprintf("hit:otter:%d", time.Now().UnixNano())
	oc.Set(key, cacheValue)
	return hitResult(func() error {
		v, ok := oc.GetIfPresent(key)
		if !ok || v.Age != cacheValue.Age {
			return errors.New("otter: miss")
		}
		return nil
	}, true)
}

// goRedisCacheHit measures Once (get-or-load) of a cached key, from the
// TinyLFU local cache if local is set, else from Redis. It uses the
// library's default codec (msgpack, s2-compressed above 64 bytes).
func goRedisCacheHit(client *redis.Client, local bool) ([]float64, error) {
	ctx := context.Background()
	opts := &gocache.Options{Redis: client}
	if local {
		opts.LocalCache = gocache.NewTinyLFU(10000, time.Hour)
	}
	c := gocache.New(opts)
	key := fmt.Sprintf("%sgrc:hit:%t:%d", cachePrefix, local, time.Now().UnixNano())
	var loads atomic.Int64
	do := func(*gocache.Item) (any, error) {
		loads.Add(1)
		return cacheValue, nil
	}
	fn := func() error {
		var v cacheUser
		err := c.Once(&gocache.Item{Ctx: ctx, Key: key, Value: &v, TTL: time.Hour, Do: do})
		if err == nil && v.Age != cacheValue.Age {
			err = errors.New("go-redis-cache: wrong value")
		}
		return err
	}
	vals, err := hitResult(fn, local)
	if err == nil && loads.Load() != 1 {
		note("cache go-redis-cache local=%t: %d loads instead of 1", local, loads.Load())
	}
	return vals, err
}

// rawGetHit measures a go-redis GET of the value's JSON and its
// json.Unmarshal: the floor of a Redis hit.
func rawGetHit(client *redis.Client) ([]float64, error) {
	ctx := context.Background()
	key := cachePrefix + "raw:hit"
	data, err := json.Marshal(cacheValue)
	if err != nil {
		return nil, err
	}
	if err := client.Set(ctx, key, data, time.Hour).Err(); err != nil {
		return nil, err
	}
	return hitResult(func() error {
		b, err := client.Get(ctx, key).Bytes()
		if err != nil {
			return err
		}
		var v cacheUser
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if v.Age != cacheValue.Age {
			return errors.New("go-redis-get: wrong value")
		}
		return nil
	}, false)
}

// stampede starts stampedeCallers goroutines that wait at a barrier, then
// call get at once; it returns the loader's calls (counted by get's
// loader through calls) and the wall time until every caller had a value.
func stampede(calls *atomic.Int64, get func() error) ([]float64, error) {
	start := make(chan struct{})
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	for range stampedeCallers {
		wg.Go(func() {
			<-start
			if err := get(); err != nil {
				firstErr.CompareAndSwap(nil, &err)
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // let the goroutines reach the barrier
	t0 := time.Now()
	close(start)
	wg.Wait()
	wall := time.Since(t0)
	if err := firstErr.Load(); err != nil {
		return nil, *err
	}
	return []float64{float64(calls.Load()), float64(wall.Microseconds()) / 1000}, nil
}

// rtkitStampede: 1,000 callers of GetOrLoad on one cold key in Redis (no
// local tier), whose loader sleeps 20 ms.
func rtkitStampede(client *redis.Client) ([]float64, error) {
	ctx := context.Background()
	c := cache.New(cache.Options{Store: cache.NewRedisStore(client, cachePrefix+"rtkit:"), TTL: time.Hour})
	defer c.Shutdown(ctx)
	key := fmt.Sprintf("stampede:%d", time.Now().UnixNano())
	var calls atomic.Int64
	load := func(context.Context) (cacheUser, error) {
		calls.Add(1)
		time.Sleep(stampedeSleep)
		return cacheValue, nil
	}
	return stampede(&calls, func() error {
		v, err := cache.GetOrLoad(ctx, c, key, load)
		if err == nil && v.Age != cacheValue.Age {
			err = errors.New("rtkit: wrong value")
		}
		return err
	})
}

// goRedisCacheStampede: 1,000 callers of Once with Do on one cold key in
// Redis (no local cache), whose Do sleeps 20 ms.
func goRedisCacheStampede(client *redis.Client) ([]float64, error) {
	ctx := context.Background()
	c := gocache.New(&gocache.Options{Redis: client})
	key := fmt.Sprintf("%sgrc:stampede:%d", cachePrefix, time.Now().UnixNano())
	var calls atomic.Int64
	do := func(*gocache.Item) (any, error) {
		calls.Add(1)
		time.Sleep(stampedeSleep)
		return cacheValue, nil
	}
	return stampede(&calls, func() error {
		var v cacheUser
		err := c.Once(&gocache.Item{Ctx: ctx, Key: key, Value: &v, TTL: time.Hour, Do: do})
		if err == nil && v.Age != cacheValue.Age {
			err = errors.New("go-redis-cache: wrong value")
		}
		return err
	})
}
