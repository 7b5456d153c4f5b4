package engine

import (
	"context"
	"time"
)

// DefaultRate is the tick rate of [Run] when none is given: 30 ticks a
// second.
const DefaultRate = 30

// MaxCatchUp is how many ticks [Run] may be behind before it skips the
// missed ones instead of running them back to back.
const MaxCatchUp = 5

// Run calls tick at a fixed rate (per second; DefaultRate when rate <= 0)
// until ctx ends or tick returns false. Tick n is due at start + n/rate;
// late is how long after that it started (0 on time). Run never calls tick
// concurrently and never early. When tick falls more than [MaxCatchUp]
// periods behind, the missed ticks are skipped (counted in the skipped
// argument of the next call) so that a stall does not turn into a burst.
// Run returns ctx's error, or nil when tick stopped it.
func Run(ctx context.Context, rate int, tick func(late time.Duration, skipped int) bool) error {
	if rate <= 0 {
		rate = DefaultRate
	}
	period := time.Second / time.Duration(rate)
	next := time.Now().Add(period)
	timer := time.NewTimer(period)
	defer timer.Stop()
	skipped := 0
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		now := time.Now()
		late := max(now.Sub(next), 0)
		if n := int(late / period); n > MaxCatchUp {
			skipped += n
			next = next.Add(time.Duration(n) * period)
			late -= time.Duration(n) * period
		}
		if !tick(late, skipped) {
			return nil
		}
		skipped = 0
		next = next.Add(period)
		timer.Reset(max(time.Until(next), 0))
	}
}
