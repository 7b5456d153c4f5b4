package realtime

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBrowserClient runs the browser client's tests (js/rtkit.test.mjs) on
// Node against a real hub: the same module browsers load, over real
// WebSockets.
func TestBrowserClient(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed; the browser client's tests need Node 20+ (apt-get install nodejs)")
	}
	// Rooms named "flaky*" refuse every other join with a transient error;
	// rooms locked by POST /lock refuse joins for good.
	var (
		mu     sync.Mutex
		flaky  = map[string]int{}
		locked = map[string]bool{}
	)
	h := NewHub(Options{Authenticate: bearer, Authorize: func(ctx context.Context, id Identity, a Action) error {
		if a.Kind != ActionJoin {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		if locked[a.Room] {
			return &Error{Code: CodeForbidden, Message: "locked"}
		}
		if strings.HasPrefix(a.Room, "flaky") {
			if flaky[a.Room]++; flaky[a.Room]%2 == 0 {
				return &Error{Code: CodeInternal, Message: "try again"}
			}
		}
		return nil
	}})
	h.HandleCall("echo", func(ctx context.Context, c *Call) (any, error) { return string(c.Data), nil })
	mux := http.NewServeMux()
	mux.Handle("GET /ws", h)
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		id, err := h.Publish(r.Context(), r.URL.Query().Get("room"), r.URL.Query().Get("n"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprint(w, id.String())
	})
	mux.HandleFunc("POST /drop", func(w http.ResponseWriter, r *http.Request) { dropConnections(h) })
	mux.HandleFunc("POST /lock", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		locked[r.URL.Query().Get("room")] = true
		mu.Unlock()
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
		srv.Close()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--experimental-websocket", "--test", "--test-force-exit", "--test-reporter=spec", "js/rtkit.test.mjs")
	cmd.Env = append(os.Environ(), "RTKIT_URL="+srv.URL)
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), "bad option: --experimental-websocket") {
		t.Skipf("node %s has no WebSocket; the browser client's tests need Node 20.10+", nodeVersion(node))
	}
	t.Logf("node --test:\n%s", out)
	require.NoError(t, err, "the browser client's tests failed")
}

func nodeVersion(node string) string {
	out, _ := exec.Command(node, "--version").Output()
	return strings.TrimSpace(string(out))
}

func TestClientHandler(t *testing.T) {
	t.Parallel()
	srv := httpServer(t, ClientHandler())
	resp, err := http.Get(srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, "text/javascript; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Contains(t, string(body), "export function connect")
	etag := resp.Header.Get("ETag")
	require.NotEmpty(t, etag)
	req, _ := http.NewRequest("GET", srv.URL, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
}
