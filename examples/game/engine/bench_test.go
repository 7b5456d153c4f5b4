package engine_test

import (
	"strconv"
	"testing"
)

// BenchmarkTick8 is one tick of an 8-player snake match as the server
// runs it: inputs, Step, and a delta for each of 8 viewers who acknowledge
// three ticks late (as pages acknowledging every 100 ms do). It reports
// the share of one core a match takes at 30 ticks a second.
func BenchmarkTick8(b *testing.B) {
	m, _ := newMatch(11, 8)
	play := script(11)
	viewers := make([]string, 8)
	for i := range viewers {
		viewers[i] = "viewer" + strconv.Itoa(i)
	}
	bytes := 0
	b.ReportAllocs()
	for i := range b.N {
		tick := uint64(i + 1)
		play(m, tick)
		m.Step()
		for _, v := range viewers {
			bytes += len(m.DeltaFor(v))
			if tick > 3 && tick%3 == 0 {
				_ = m.Ack(v, tick-3)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)*30/1e9*100, "%core@30Hz")
	b.ReportMetric(float64(bytes)/float64(b.N)/8, "B/viewer/tick")
}
