package tasks

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzRedisDecoders feeds the Redis store's decoders of stored task data
// (definitions and state lines, which a damaged or foreign key could hold)
// arbitrary strings: they must not panic. A definition packed from valid
// fields must decode to the same fields.
func FuzzRedisDecoders(f *testing.F) {
	f.Add("email.send", `{"to":"ada@example.com"}`, 3, int64(30_000), int64(250), "nightly", "1764370000000\x00id\x00t\x003\x000\x00\x00\x000\x00{}", "succeeded|1764370000123|2|17|1764370000001|node-1|x")
	f.Add("", "", 0, int64(0), int64(0), "", "", "")
	f.Add("a", "null", 1, int64(-1), int64(1), "p", "\x00\x00\x00\x00\x00\x00\x00\x00", "active|1|2|3|w|x|y")
	f.Add("b", "[1,2]", 25, int64(1<<40), int64(0), "", "x\x00y", "pending|0")
	f.Fuzz(func(t *testing.T, typ, payload string, maxAttempts int, timeoutMS, backoffMS int64, periodic, stored, line string) {
		var got Task
		unpackStored(&got, stored) // must not panic
		parseLine(&got, line)
		_ = parseViews([]any{"id", stored, line, "", "", "", "", int64(1)}, "q")

		if strings.ContainsRune(typ, 0) || strings.ContainsRune(periodic, 0) || maxAttempts < 0 || timeoutMS < 0 || backoffMS < 0 {
			return
		}
		want := &Task{
			ID: "0193aa00-0000-7000-8000-000000000000", Type: typ, MaxAttempts: maxAttempts,
			Timeout: time.Duration(timeoutMS) * time.Millisecond, Periodic: periodic,
			UniqueTTL: time.Duration(backoffMS) * time.Millisecond,
		}
		if payload != "" {
			want.Payload = json.RawMessage(payload)
		}
		if backoffMS > 0 {
			want.Backoff = Backoff{Initial: time.Duration(backoffMS) * time.Millisecond, Max: time.Hour, Factor: 2, Jitter: 0.25}
		}
		var back Task
		unpackStored(&back, "1764370000000\x00"+packDef(want))
		require.Equal(t, want.ID, back.ID)
		require.Equal(t, want.Type, back.Type)
		require.Equal(t, want.MaxAttempts, back.MaxAttempts)
		require.Equal(t, want.Timeout, back.Timeout)
		require.Equal(t, want.Backoff, back.Backoff)
		require.Equal(t, want.Periodic, back.Periodic)
		require.Equal(t, want.UniqueTTL, back.UniqueTTL)
		require.Equal(t, string(want.Payload), string(back.Payload))
		require.Equal(t, time.UnixMilli(1764370000000), back.EnqueuedAt)
	})
}

// TestParseLine checks the state lines the scripts write.
func TestParseLine(t *testing.T) {
	var a Task
	parseLine(&a, "active|2|17|1764370000001|node-1|x")
	require.Equal(t, Active, a.State)
	require.Equal(t, 2, a.Attempt)
	require.Equal(t, "node-1|x", a.Worker)
	require.Equal(t, time.UnixMilli(1764370000001), a.StartedAt)
	var f Task
	parseLine(&f, "dead|1764370000123|3|18|1764370000002|n")
	require.Equal(t, Dead, f.State)
	require.Equal(t, time.UnixMilli(1764370000123), f.FinishedAt)
	require.Equal(t, 3, f.Attempt)
	require.Equal(t, "n", f.Worker)
	var p Task
	parseLine(&p, "pending|0")
	require.Equal(t, Pending, p.State)
	require.Zero(t, p.Attempt)
	require.True(t, p.StartedAt.IsZero())
}
