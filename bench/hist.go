package main

import (
	"math"
	"math/bits"
)

// histogram counts latencies in microseconds in log-linear buckets: below
// 128 µs exactly, above with a relative error under 1/128, up to 2^32 µs
// (71 minutes). Recording is two shifts and an increment, cheap enough for
// every delivery; the zero value is empty. It is not safe for concurrent
// use: each subscriber has its own, merged once the readers have stopped.
type histogram struct {
	counts [histBuckets]uint32
}

const (
	histSubBits = 7
	histSub     = 1 << histSubBits
	histBuckets = histSub + (32-histSubBits+1)*histSub/2
)

func (h *histogram) record(micros int64) {
	h.counts[histBucket(micros)]++
}

func (h *histogram) merge(o *histogram) {
	for i, n := range o.counts {
		h.counts[i] += n
	}
}

func (h *histogram) total() uint64 {
	var t uint64
	for _, n := range h.counts {
		t += uint64(n)
	}
	return t
}

// quantile returns the q-quantile (0 < q ≤ 1) in microseconds, NaN when
// empty.
func (h *histogram) quantile(q float64) float64 {
	total := h.total()
	if total == 0 {
		return math.NaN()
	}
	rank := uint64(math.Ceil(q * float64(total)))
	rank = max(rank, 1)
	var seen uint64
	for i, n := range h.counts {
		if seen += uint64(n); seen >= rank {
			return histValue(i)
		}
	}
	return histValue(histBuckets - 1)
}

func histBucket(v int64) int {
	u := uint64(max(v, 0))
	u = min(u, math.MaxUint32)
	if u < histSub {
		return int(u)
	}
	e := bits.Len64(u) - histSubBits // ≥ 1
	m := u >> e                      // in [histSub/2, histSub)
	return histSub + (e-1)*histSub/2 + int(m-histSub/2)
}

// histValue is the middle of bucket i.
func histValue(i int) float64 {
	if i < histSub {
		return float64(i)
	}
	j := i - histSub
	e := j/(histSub/2) + 1
	m := uint64(j%(histSub/2) + histSub/2)
	return float64(m<<e) + float64(uint64(1)<<e)/2
}
