package main

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rtkit/rtkit/examples/internal/readmetest"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/sse"
)

// TestReadme checks the READMEs against the program and runs their
// commands and URLs: the program built once, started as a separate process
// per command, driven by the Go SSE client and net/http, stopped with Ctrl-C.
func TestReadme(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the program")
	}
	vars, memory, shared := readmetest.Check(t, "./examples/live")
	require.Equal(t, []string{"ADDR", "ORDER_EVERY", "REDIS_PREFIX", "REDIS_URL", "REPORT_COST"}, vars)
	// Every URL the READMEs show on this machine answers.
	var paths []string
	for _, file := range []string{"README.md", "README.es.md"} {
		text, err := os.ReadFile(file)
		require.NoError(t, err)
		for _, m := range regexp.MustCompile("http://127\\.0\\.0\\.1:8080(/[^\\s)>`'\"]*)").FindAllStringSubmatch(string(text), -1) {
			paths = append(paths, m[1])
		}
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	require.NotEmpty(t, paths)
	require.NotEmpty(t, memory)
	require.Len(t, shared, 2, "two processes on one Redis")

	bin := readmetest.Build(t)
	t.Run("memory", func(t *testing.T) {
		for i, c := range memory {
			p := readmetest.Start(t, bin, c.Env)
			events := subscribe(t, p.URL+"/events?topic=orders", sse.ClientOptions{})
			o, _ := nextOrder(t, events)
			assert.Contains(t, o.Shop, strings.TrimPrefix(p.URL, "http://"))
			if i > 0 {
				continue
			}
			for _, path := range paths { // every URL the READMEs show answers
				resp, err := http.Get(p.URL + path)
				require.NoError(t, err)
				resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode, path)
			}
		}
	})
	t.Run("redis", func(t *testing.T) {
		db := redistest.New(t)
		var urls []string
		for _, c := range shared {
			env := slices.Concat(c.Env, [][2]string{{"REDIS_URL", "redis://" + db.Opts.Addr}, {"REDIS_PREFIX", db.Prefix}})
			urls = append(urls, readmetest.Start(t, bin, env).URL)
		}
		// A page on the second process sees the first one's orders.
		events := subscribe(t, urls[1]+"/events?topic=orders", sse.ClientOptions{})
		for {
			if o, _ := nextOrder(t, events); strings.Contains(o.Shop, strings.TrimPrefix(urls[0], "http://")) {
				break
			}
		}
		// A report computed by the first is a cache hit on the second.
		var r1, r2 report
		getJSON(t, urls[0]+"/api/report", nil, &r1)
		getJSON(t, urls[1]+"/api/report", nil, &r2)
		assert.Equal(t, r1, r2)
		var s statsReply
		getJSON(t, urls[1]+"/api/stats", nil, &s)
		assert.Equal(t, statsReply{Hits: 1, HitRatio: 1}, s)
	})
	t.Run("bad settings", func(t *testing.T) {
		for _, v := range []string{"ORDER_EVERY=soon", "ORDER_EVERY=-1s", "REPORT_COST=slow", "REDIS_URL=localhost:6379"} {
			cmd := exec.CommandContext(context.Background(), bin)
			cmd.Env = []string{v, "ADDR=127.0.0.1:0"}
			out, err := cmd.CombinedOutput()
			require.Error(t, err, v)
			name, _, _ := strings.Cut(v, "=")
			assert.Contains(t, string(out), name, v)
		}
	})
}
