package main

import (
	"context"
	"os/exec"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/examples/internal/readmetest"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/realtime"
)

// TestReadme checks the READMEs against the program and runs their
// commands: the program built once, started as a separate process per
// command, driven by Go clients, stopped with Ctrl-C.
func TestReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	vars, memory, shared := readmetest.Check(t, "./examples/rooms")
	require.Equal(t, []string{"ADDR", "REDIS_PREFIX", "REDIS_URL"}, vars)
	require.NotEmpty(t, memory)
	require.Len(t, shared, 2, "two processes on one Redis")

	bin := readmetest.Build(t)
	ctx := context.Background()
	t.Run("memory", func(t *testing.T) {
		for _, c := range memory {
			p := readmetest.Start(t, bin, c.Env)
			ada := dial(t, p.URL, "ada", realtime.DialOptions{})
			_, err := ada.Join(ctx, "general", realtime.JoinOptions{History: 50})
			require.NoError(t, err)
			_, err = ada.Publish(ctx, "general", map[string]string{"text": "hello"})
			require.NoError(t, err)
			assert.Equal(t, "hello", text(next(t, ada, "msg")))
		}
	})
	t.Run("bad settings", func(t *testing.T) {
		cmd := exec.Command(bin)
		cmd.Env = []string{"REDIS_URL=localhost:6379", "ADDR=127.0.0.1:0"}
		out, err := cmd.CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "REDIS_URL")
	})
	t.Run("redis", func(t *testing.T) {
		db := redistest.New(t)
		var urls []string
		for _, c := range shared {
			env := slices.Concat(c.Env, [][2]string{{"REDIS_URL", "redis://" + db.Opts.Addr}, {"REDIS_PREFIX", db.Prefix}})
			urls = append(urls, readmetest.Start(t, bin, env).URL)
		}
		ada := dial(t, urls[0], "ada", realtime.DialOptions{})
		bob := dial(t, urls[1], "bob", realtime.DialOptions{})
		_, err := ada.Join(ctx, "general", realtime.JoinOptions{})
		require.NoError(t, err)
		_, err = ada.Publish(ctx, "general", map[string]string{"text": "before bob"})
		require.NoError(t, err)
		_, err = bob.Join(ctx, "general", realtime.JoinOptions{History: 50})
		require.NoError(t, err)
		assert.Equal(t, "before bob", text(next(t, bob, "msg")), "history from the other process")
		assert.Equal(t, "join", nextPresence(t, ada, "bob"), "presence across processes")
		assert.Equal(t, []string{"ada", "bob"}, users(t, bob, "general"))
		_, err = bob.Publish(ctx, "general", map[string]string{"text": "hi from 8081"})
		require.NoError(t, err)
		for {
			if e := next(t, ada, "msg"); e.From.User == "bob" {
				assert.Equal(t, "hi from 8081", text(e))
				break
			}
		}
	})
}
