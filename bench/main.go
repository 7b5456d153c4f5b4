// Command bench runs rtkit's side-by-side benchmarks: each suite drives
// rtkit and its peers with the same load generator, back to back in one
// run, and prints one table (or JSON lines with -json).
//
//	cd bench && go run . -suite backplane
//
// Timings on a shared machine are noisy: compare the ratios within one run,
// not absolute numbers across runs.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"text/tabwriter"
)

// Result is one measured figure.
type Result struct {
	Suite    string  `json:"suite"`
	Server   string  `json:"server"`
	Workload string  `json:"workload"`
	Metric   string  `json:"metric"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
}

// config holds the flags every suite may use.
type config struct {
	redisAddr string
	n         int
	clients   int
}

type suite func(cfg config) ([]Result, error)

func main() {
	suites := map[string]suite{
		"backplane": backplaneSuite,
	}
	var names []string
	for name := range suites {
		names = append(names, name)
	}
	sort.Strings(names)

	name := flag.String("suite", "", fmt.Sprintf("suite to run: %v", names))
	asJSON := flag.Bool("json", false, "print JSON lines instead of a table")
	var cfg config
	flag.StringVar(&cfg.redisAddr, "redis", "127.0.0.1:6379", "Redis address for suites that need one")
	flag.IntVar(&cfg.n, "n", 200000, "messages per measurement")
	flag.IntVar(&cfg.clients, "c", 64, "concurrent publishers")
	flag.Parse()

	run, ok := suites[*name]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown suite %q; choose one of %v\n", *name, names)
		os.Exit(2)
	}
	results, err := run(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		for _, r := range results {
			_ = enc.Encode(r)
		}
		return
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "suite\tserver\tworkload\tmetric\tvalue\tunit\t")
	for _, r := range results {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.0f\t%s\t\n", r.Suite, r.Server, r.Workload, r.Metric, r.Value, r.Unit)
	}
	_ = tw.Flush()
}
