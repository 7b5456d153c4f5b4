package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// row is a Result summarized for printing.
type row struct {
	Result
	median, min, max float64
	ratio            float64 // median / rtkit's median; NaN without an rtkit figure
}

// summarize computes each result's median, range and ratio to rtkit's
// median for the same suite, workload and metric. rtkit is the server named
// "rtkit", or else the first whose name starts with "rtkit" (the backplane
// suite has rtkit-redis and rtkit-memory, never in the same workload).
func summarize(results []Result) []row {
	rows := make([]row, 0, len(results))
	for _, r := range results {
		if len(r.Runs) == 0 {
			continue
		}
		s := slices.Clone(r.Runs)
		slices.Sort(s)
		med := s[len(s)/2]
		if len(s)%2 == 0 {
			med = (s[len(s)/2-1] + s[len(s)/2]) / 2
		}
		rows = append(rows, row{Result: r, median: med, min: s[0], max: s[len(s)-1]})
	}
	for i := range rows {
		rows[i].ratio = math.NaN()
		if base, ok := baseline(rows, rows[i].Result); ok && base != 0 {
			rows[i].ratio = rows[i].median / base
		}
	}
	return rows
}

func baseline(rows []row, r Result) (float64, bool) {
	var found *row
	for i := range rows {
		b := &rows[i]
		if b.Suite != r.Suite || b.Workload != r.Workload || b.Metric != r.Metric || !strings.HasPrefix(b.Server, "rtkit") {
			continue
		}
		if b.Server == "rtkit" {
			return b.median, true
		}
		if found == nil {
			found = b
		}
	}
	if found == nil {
		return 0, false
	}
	return found.median, true
}

func printTable(w io.Writer, rows []row) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "suite\tworkload\tserver\tmetric\tmedian\tmin–max\tunit\tvs rtkit\t")
	for _, r := range rows {
		ratio := "—"
		if !math.IsNaN(r.ratio) {
			ratio = strconv.FormatFloat(r.ratio, 'f', 2, 64)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s–%s\t%s\t%s\t\n", r.Suite, r.Workload, r.Server, r.Metric,
			formatNum(r.median), formatNum(r.min), formatNum(r.max), r.Unit, ratio)
	}
	return tw.Flush()
}

// jsonRow fixes the keys and their order of -json output.
type jsonRow struct {
	Suite    string    `json:"suite"`
	Workload string    `json:"workload"`
	Server   string    `json:"server"`
	Metric   string    `json:"metric"`
	Unit     string    `json:"unit"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Runs     []float64 `json:"runs"`
}

func printJSON(w io.Writer, rows []row) error {
	enc := json.NewEncoder(w)
	for _, r := range rows {
		err := enc.Encode(jsonRow{Suite: r.Suite, Workload: r.Workload, Server: r.Server, Metric: r.Metric,
			Unit: r.Unit, Median: r.median, Min: r.min, Max: r.max, Runs: r.Runs})
		if err != nil {
			return err
		}
	}
	return nil
}

// formatNum prints v with about three significant digits, and large values
// as integers with thousands separators.
func formatNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1000:
		s := strconv.FormatFloat(math.Round(v), 'f', 0, 64)
		neg := strings.HasPrefix(s, "-")
		s = strings.TrimPrefix(s, "-")
		var b strings.Builder
		for i, c := range s {
			if i > 0 && (len(s)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		if neg {
			return "-" + b.String()
		}
		return b.String()
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}
