package realtime

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

// testHub serves a hub on a loopback HTTP server; both stop when the test
// ends, and the hub's Shutdown must succeed.
func testHub(t testing.TB, opts Options) (*Hub, string) {
	t.Helper()
	return listenerHub(t, opts, nil)
}

// listenerHub is testHub whose server accepts on wrap(listener) when wrap
// is not nil (to count or shape what the server writes).
func listenerHub(t testing.TB, opts Options, wrap func(net.Listener) net.Listener) (*Hub, string) {
	t.Helper()
	h := NewHub(opts)
	srv := httptest.NewUnstartedServer(h)
	if wrap != nil {
		srv.Listener = wrap(srv.Listener)
	}
	srv.Start()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		srv.Close()
	})
	return h, "ws" + strings.TrimPrefix(srv.URL, "http")
}

// raw is a bare WebSocket client that speaks the protocol by hand.
type raw struct {
	t       testing.TB
	ws      *websocket.Conn
	pending []map[string]any
}

func dialRaw(t testing.TB, url string, header http.Header) *raw {
	t.Helper()
	return dialRawWith(t, url, &websocket.DialOptions{HTTPHeader: header})
}

// dialRawCompact dials asking for the compact subprotocol. The array
// lines it receives read as the objects compactObject makes of them.
func dialRawCompact(t testing.TB, url string, header http.Header) *raw {
	t.Helper()
	r := dialRawWith(t, url, &websocket.DialOptions{HTTPHeader: header, Subprotocols: []string{CompactSubprotocol}})
	if got := r.ws.Subprotocol(); got != CompactSubprotocol {
		t.Fatalf("subprotocol %q, want %q", got, CompactSubprotocol)
	}
	return r
}

func dialRawWith(t testing.TB, url string, opts *websocket.DialOptions) *raw {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ws, resp, err := websocket.Dial(ctx, url, opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (HTTP %d)", url, err, status)
	}
	ws.SetReadLimit(-1)
	r := &raw{t: t, ws: ws}
	t.Cleanup(func() { _ = ws.CloseNow() })
	return r
}

// welcome reads the welcome object.
func (r *raw) welcome() map[string]any {
	r.t.Helper()
	w := r.next()
	if w["op"] != "welcome" {
		r.t.Fatalf("want welcome, got %v", w)
	}
	return w
}

func (r *raw) send(obj any) {
	r.t.Helper()
	b, err := json.Marshal(obj)
	if err != nil {
		r.t.Fatal(err)
	}
	r.sendText(string(b))
}

func (r *raw) sendText(s string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := r.ws.Write(ctx, websocket.MessageText, []byte(s)); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// next returns the next server object.
func (r *raw) next() map[string]any {
	r.t.Helper()
	obj, err := r.tryNext(5 * time.Second)
	if err != nil {
		r.t.Fatalf("reading: %v", err)
	}
	return obj
}

func (r *raw) tryNext(d time.Duration) (map[string]any, error) {
	for len(r.pending) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		_, frame, err := r.ws.Read(ctx)
		cancel()
		if err != nil {
			return nil, err
		}
		if !utf8.Valid(frame) {
			r.t.Fatalf("server sent a text frame that is not UTF-8: %q", frame)
		}
		for line := range bytes.SplitSeq(frame, []byte("\n")) {
			var obj map[string]any
			if len(line) > 0 && line[0] == '[' {
				obj = compactObject(r.t, line)
			} else if err := json.Unmarshal(line, &obj); err != nil {
				r.t.Fatalf("server sent invalid JSON %q: %v", line, err)
			}
			r.pending = append(r.pending, obj)
		}
	}
	obj := r.pending[0]
	r.pending = r.pending[1:]
	return obj, nil
}

// compactObject reads the array form of a msg as PROTOCOL.md describes
// it, into the object form of the same message plus "_array": true.
func compactObject(t testing.TB, line []byte) map[string]any {
	t.Helper()
	var a []any
	d := json.NewDecoder(bytes.NewReader(line))
	d.UseNumber()
	if err := d.Decode(&a); err != nil {
		t.Fatalf("server sent invalid JSON %q: %v", line, err)
	}
	if len(a) != 3 && len(a) != 5 {
		t.Fatalf("compact msg %q has %d elements", line, len(a))
	}
	obj := map[string]any{"op": "msg", "_array": true, "room": a[0], "data": a[2]}
	switch v := a[1].(type) {
	case string:
		obj["id"] = v
	case json.Number:
		ms, err := v.Int64()
		if err != nil {
			t.Fatalf("compact msg %q: time %v is not an integer", line, v)
		}
		obj["ephemeral"], obj["time"] = true, float64(ms)
	default:
		t.Fatalf("compact msg %q: second element %v is neither an ID nor a time", line, v)
	}
	if len(a) == 5 {
		obj["from"] = map[string]any{"user": a[3], "conn": a[4]}
	}
	// data as the object form's decoding has it (numbers as float64).
	var data any
	raw, _ := json.Marshal(a[2])
	_ = json.Unmarshal(raw, &data)
	obj["data"] = data
	return obj
}

// until returns the next object with the given op; the objects before it
// stay queued for later reads.
func (r *raw) until(op string) map[string]any {
	r.t.Helper()
	return r.find(func(obj map[string]any) bool { return obj["op"] == op })
}

// reply returns the reply (ok or error) to request id; other objects stay
// queued.
func (r *raw) reply(id float64) map[string]any {
	r.t.Helper()
	return r.find(func(obj map[string]any) bool {
		return (obj["op"] == "ok" || obj["op"] == "error") && obj["id"] == id
	})
}

func (r *raw) find(match func(map[string]any) bool) map[string]any {
	r.t.Helper()
	var stash []map[string]any
	for {
		obj := r.next()
		if match(obj) {
			r.pending = append(stash, r.pending...)
			return obj
		}
		stash = append(stash, obj)
	}
}

// closeStatus waits for the connection to end and returns its close code.
func (r *raw) closeStatus() websocket.StatusCode {
	r.t.Helper()
	for {
		_, err := r.tryNext(10 * time.Second)
		if err != nil {
			return websocket.CloseStatus(err)
		}
	}
}

// bearer returns an Authenticate hook that accepts "Bearer <user>" or
// ?token=<user>, refusing "bad".
func bearer(r *http.Request) (Identity, error) {
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if tok == "" {
		tok = r.URL.Query().Get("token")
	}
	if tok == "" || tok == "bad" {
		return Identity{}, &Error{Code: CodeUnauthorized, Message: "no token"}
	}
	if tok == "banned" {
		return Identity{}, &Error{Code: CodeForbidden, Message: "banned"}
	}
	return Identity{User: tok, Meta: map[string]string{"name": strings.ToUpper(tok)}}, nil
}

func as(user string) http.Header {
	return http.Header{"Authorization": {"Bearer " + user}}
}

// waitFor polls cond until it holds or fails the test.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// httpServer serves h on loopback until the test ends.
func httpServer(t testing.TB, h http.Handler) *httptest.Server {
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// group runs functions in goroutines, at most limit at once (SetLimit),
// and Wait returns the first error: errgroup's shape, without adding
// golang.org/x/sync to the library's go.mod for tests.
type group struct {
	wg   sync.WaitGroup
	sem  chan struct{}
	once sync.Once
	err  error
}

func (g *group) SetLimit(n int) { g.sem = make(chan struct{}, n) }

func (g *group) Go(f func() error) {
	if g.sem != nil {
		g.sem <- struct{}{}
	}
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if g.sem != nil {
			defer func() { <-g.sem }()
		}
		if err := f(); err != nil {
			g.once.Do(func() { g.err = err })
		}
	}()
}

func (g *group) Wait() error {
	g.wg.Wait()
	return g.err
}
