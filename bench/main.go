// Command bench runs rtkit's side-by-side benchmarks: each suite drives
// rtkit and its peers with the same load generator, back to back in one
// run, and prints one table (or JSON lines with -json).
//
//	cd bench && go run . -suite realtime
//	cd bench && go run . -suite sse
//	cd bench && go run . -suite backplane
//	cd bench && go run . -suite cache
//	cd bench && go run . -suite tasks
//
// Every measurement is repeated (-runs) and reported as the median with the
// minimum and maximum, and the ratio of the median to rtkit's. Timings on a
// shared machine are noisy: compare the ratios within one run, not absolute
// numbers across runs.
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sort"
	"strings"
	"time"
)

// Result is one measured figure of one server, with every run's value.
type Result struct {
	Suite    string
	Workload string
	Server   string
	Metric   string
	Unit     string
	Runs     []float64
}

// config holds the flags every suite may use.
type config struct {
	runs      int
	duration  time.Duration
	servers   []string // nil: all
	workloads []string // nil: all

	// backplane
	redisAddr string
	n         int
	clients   int

	// realtime and sse
	subscribers int
	idleConns   int
	window      int
	rate        int
	profiles    string
	trace       bool
	idleWait    time.Duration
	retries     int

	// tasks
	pickups int
}

// want reports whether name passes the filter list (nil passes all).
func want(list []string, name string) bool {
	return list == nil || slices.Contains(list, name)
}

// checkNames returns an error if the -servers or -workloads filters name
// something the suite does not have.
func checkNames(cfg config, servers, workloads []string) error {
	for _, f := range []struct {
		flag         string
		given, known []string
	}{{"servers", cfg.servers, servers}, {"workloads", cfg.workloads, workloads}} {
		for _, name := range f.given {
			if !slices.Contains(f.known, name) {
				return fmt.Errorf("-%s: no %q in this suite; choose from %v", f.flag, name, f.known)
			}
		}
	}
	return nil
}

// note reports something odd seen during a run (disconnects, errors) on
// stderr, so that it shows beside the table but never in -json output.
func note(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "# "+format+"\n", args...)
}

type suite func(cfg config) ([]Result, error)

func main() {
	suites := map[string]suite{
		"backplane": backplaneSuite,
		"cache":     cacheSuite,
		"realtime":  realtimeSuite.run,
		"sse":       sseSuite.run,
		"tasks":     tasksSuite,
	}
	var names []string
	for name := range suites {
		names = append(names, name)
	}
	sort.Strings(names)

	name := flag.String("suite", "", fmt.Sprintf("suite to run: %v", names))
	asJSON := flag.Bool("json", false, "print JSON lines instead of a table")
	var cfg config
	var servers, workloads string
	flag.IntVar(&cfg.runs, "runs", 3, "runs of each workload per server")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "measured time of the fanout and latency workloads (realtime, sse)")
	flag.StringVar(&servers, "servers", "", "comma-separated servers to run (default all)")
	flag.StringVar(&workloads, "workloads", "", "comma-separated workloads to run (default all)")
	flag.StringVar(&cfg.redisAddr, "redis", "127.0.0.1:6379", "Redis address for suites that need one (backplane, cache, tasks)")
	flag.IntVar(&cfg.n, "n", 200000, "backplane: messages per measurement")
	flag.IntVar(&cfg.clients, "c", 64, "backplane: concurrent publishers")
	flag.IntVar(&cfg.subscribers, "subs", 1000, "realtime, sse: subscribers in fanout and latency")
	flag.IntVar(&cfg.idleConns, "idle", 10000, "realtime, sse: connections in idle")
	flag.IntVar(&cfg.window, "window", 64, "realtime, sse: fanout messages in flight (below melody's 256-message session buffer); sse: also the most concurrent POST /publish")
	flag.IntVar(&cfg.rate, "rate", 200, "realtime, sse: latency messages per second")
	flag.StringVar(&cfg.profiles, "profiles", "profiles", "realtime, sse: directory for the servers' pprof profiles (empty: none)")
	flag.BoolVar(&cfg.trace, "trace", false, "realtime, sse: print the fanout rate every 500ms")
	flag.DurationVar(&cfg.idleWait, "idlewait", 2*time.Minute, "realtime, sse: how long to wait for other processes to leave the CPU before each run")
	flag.IntVar(&cfg.retries, "retries", 2, "realtime, sse: times a run during which other processes were busy is run again")
	flag.IntVar(&cfg.pickups, "pickups", 60, "tasks: pickup samples per run (asynq takes about 1 s each)")
	cpuProfile := flag.String("cpuprofile", "", "write the load generator's CPU profile to this file")
	serve := flag.String("serve", "", "internal: serve this server (realtime, sse/NAME) in this process")
	addr := flag.String("addr", "127.0.0.1:0", "internal: listen address for -serve")
	memProfileRate := flag.Int("memprofilerate", 0, "internal: runtime.MemProfileRate of -serve (0: Go's default)")
	flag.Parse()
	cfg.servers, cfg.workloads = splitList(servers), splitList(workloads)

	if err := raiseFileLimit(); err != nil {
		note("cannot raise RLIMIT_NOFILE: %v", err)
	}
	if *serve != "" {
		if *memProfileRate > 0 {
			runtime.MemProfileRate = *memProfileRate
		}
		if err := serveChild(*serve, *addr); err != nil {
			fmt.Fprintln(os.Stderr, "bench -serve:", err)
			os.Exit(1)
		}
		return
	}

	run, ok := suites[*name]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown suite %q; choose one of %v\n", *name, names)
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	results, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	rows := summarize(results)
	if *asJSON {
		err = printJSON(os.Stdout, rows)
	} else {
		err = printTable(os.Stdout, rows)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	note("suite %s took %s", *name, time.Since(start).Round(time.Second))
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
