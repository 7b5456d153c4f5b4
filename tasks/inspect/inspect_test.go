package inspect_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/sse"
	"github.com/rtkit/rtkit/tasks"
	"github.com/rtkit/rtkit/tasks/inspect"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/redis/go-redis/v9/internal/pool.(*ConnPool).tryDial"))
}

var quiet = slog.New(slog.DiscardHandler)

// stores are the stores every test runs against.
var stores = map[string]func(t *testing.T) tasks.Store{
	"memory": func(t *testing.T) tasks.Store { return tasks.NewMemoryStore(tasks.MemoryOptions{}) },
	"redis": func(t *testing.T) tasks.Store {
		db := redistest.New(t)
		s, err := tasks.NewRedisStore(tasks.RedisOptions{Client: db.Client(t), Prefix: db.Prefix})
		require.NoError(t, err)
		t.Cleanup(func() { s.Close() })
		return s
	},
}

func forEachStore(t *testing.T, f func(t *testing.T, store tasks.Store)) {
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			f(t, mk(t))
		})
	}
}

// app is a runner with an inspector mounted under /admin/tasks, and a
// browser-like client (cookies, no redirects followed).
type app struct {
	r      *tasks.Runner
	in     *inspect.Inspector
	srv    *httptest.Server
	client *http.Client
}

const prefix = "/admin/tasks"

func newApp(t *testing.T, store tasks.Store, o inspect.Options, run bool) *app {
	t.Helper()
	r := tasks.NewRunner(tasks.Options{Store: store, Logger: quiet, Concurrency: 4, Queues: map[string]int{"default": 1, "mail": 1}})
	tasks.Handle(r, "fail", func(ctx context.Context, j *tasks.Job[any]) error { return tasks.SkipRetry(errors.New("boom <b>")) })
	tasks.Handle(r, "ok", func(ctx context.Context, j *tasks.Job[any]) error { return nil })
	if run {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = r.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	o.Prefix, o.Logger = prefix, quiet
	in := inspect.New(r, o)
	mux := http.NewServeMux()
	mux.Handle(prefix+"/", in)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		assert.NoError(t, in.Shutdown(ctx))
		srv.Close()
	})
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &app{r: r, in: in, srv: srv, client: c}
}

func allowAll(*http.Request, inspect.Action) error { return nil }

func (a *app) get(t *testing.T, path string) (int, string) {
	t.Helper()
	res, err := a.client.Get(a.srv.URL + prefix + path)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

var csrfRE = regexp.MustCompile(`<meta name="csrf" content="([^"]+)">`)

// token reads the CSRF token from a page.
func (a *app) token(t *testing.T) string {
	t.Helper()
	code, body := a.get(t, "/")
	require.Equal(t, http.StatusOK, code)
	m := csrfRE.FindStringSubmatch(body)
	require.NotNil(t, m, "no csrf field in the overview")
	return m[1]
}

func (a *app) post(t *testing.T, form url.Values) (int, string) {
	t.Helper()
	res, err := a.client.PostForm(a.srv.URL+prefix+"/action", form)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

func enqueue(t *testing.T, r *tasks.Runner, typ string, payload any, opts ...tasks.EnqueueOption) *tasks.Task {
	t.Helper()
	task, err := r.Enqueue(context.Background(), typ, payload, opts...)
	require.NoError(t, err)
	return task
}

func waitState(t *testing.T, r *tasks.Runner, id string, st tasks.State) {
	t.Helper()
	require.Eventually(t, func() bool {
		task, err := r.Get(context.Background(), id)
		return err == nil && task.State == st
	}, 10*time.Second, 10*time.Millisecond, "task %s never became %s", id, st)
}

func TestOverviewAndAssets(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tasks.Store) {
		a := newApp(t, store, inspect.Options{}, false)
		enqueue(t, a.r, "ok", 1, tasks.Queue("mail"))
		enqueue(t, a.r, "ok", 1, tasks.Delay(time.Hour))
		code, body := a.get(t, "/")
		require.Equal(t, http.StatusOK, code)
		assert.Contains(t, body, `data-count="mail|pending">1<`)
		assert.Contains(t, body, `data-count="default|scheduled">1<`)
		assert.Contains(t, body, prefix+"/queues/mail/pending")
		for path, want := range map[string]string{
			"/static/inspect.js":       "EventSource",
			"/static/inspect.css":      "@media",
			"/uplot/uPlot.iife.min.js": "uPlot",
			"/uplot/uPlot.min.css":     ".uplot",
		} {
			code, body := a.get(t, path)
			assert.Equal(t, http.StatusOK, code, path)
			assert.Contains(t, body, want, path)
		}
		for _, path := range []string{"/nope", "/static/overview.html", "/queues/mail/nostate", "/task?id=missing"} {
			code, _ := a.get(t, path)
			assert.Equal(t, http.StatusNotFound, code, path)
		}
		code, _ = a.get(t, "/task")
		assert.Equal(t, http.StatusBadRequest, code)
	})
}

func TestListPages(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tasks.Store) {
		a := newApp(t, store, inspect.Options{}, false)
		want := map[string]bool{}
		for i := range 120 {
			typ := "ok"
			if i == 77 {
				typ = "special"
			}
			want[enqueue(t, a.r, typ, i, tasks.Queue("mail")).ID] = true
		}
		idRE := regexp.MustCompile(`name="id" value="([^"]+)"`)
		nextRE := regexp.MustCompile(`rel="next" href="([^"]+)"`)
		seen := map[string]bool{}
		path, pages := "/queues/mail/pending", 0
		for path != "" {
			code, body := a.get(t, path)
			require.Equal(t, http.StatusOK, code)
			ids := idRE.FindAllStringSubmatch(body, -1)
			assert.LessOrEqual(t, len(ids), 50)
			for _, m := range ids {
				assert.True(t, want[m[1]], "unexpected task %s", m[1])
				assert.False(t, seen[m[1]], "task %s listed twice", m[1])
				seen[m[1]] = true
			}
			pages++
			path = ""
			if m := nextRE.FindStringSubmatch(body); m != nil {
				path = strings.TrimPrefix(strings.ReplaceAll(m[1], "&amp;", "&"), prefix)
			}
		}
		assert.Equal(t, 3, pages)
		assert.Len(t, seen, 120)

		// Search by type, and by ID.
		_, body := a.get(t, "/queues/mail/pending?q=special")
		assert.Len(t, idRE.FindAllString(body, -1), 1)
		var one string
		for id := range want {
			one = id
			break
		}
		_, body = a.get(t, "/queues/mail/pending?q="+url.QueryEscape(one))
		ids := idRE.FindAllStringSubmatch(body, -1)
		require.Len(t, ids, 1)
		assert.Equal(t, one, ids[0][1])
		_, body = a.get(t, "/queues/mail/pending?q=nothing")
		assert.Contains(t, body, "No tasks match")
	})
}

func TestTaskPageEscapes(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tasks.Store) {
		a := newApp(t, store, inspect.Options{}, true)
		evil := `<script>alert("x")</script>`
		task := enqueue(t, a.r, "fail", map[string]string{"html": evil}, tasks.Unique(evil, time.Hour))
		waitState(t, a.r, task.ID, tasks.Dead)
		code, body := a.get(t, "/task?id="+url.QueryEscape(task.ID))
		require.Equal(t, http.StatusOK, code)
		assert.NotContains(t, body, "<script>alert")
		// The page marks event kinds up with <b> itself: look for the
		// error's own tag.
		assert.NotContains(t, body, "boom <b>")
		assert.Contains(t, body, "&lt;script&gt;alert")
		assert.Contains(t, body, "boom &lt;b&gt;")   // the error
		assert.Contains(t, body, "&#34;html&#34;: ") // pretty JSON
		_, body = a.get(t, "/queues/default/dead")
		assert.NotContains(t, body, "<script>alert")
		assert.Contains(t, body, "boom &lt;b&gt;")
	})
}

func TestPayloadCapped(t *testing.T) {
	a := newApp(t, tasks.NewMemoryStore(tasks.MemoryOptions{}), inspect.Options{MaxPayload: 100}, false)
	task := enqueue(t, a.r, "ok", strings.Repeat("x", 500))
	_, body := a.get(t, "/task?id="+task.ID)
	assert.Contains(t, body, "402 more bytes not shown")
	assert.NotContains(t, body, strings.Repeat("x", 101))
}

func TestActionsForbidden(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tasks.Store) {
		// Default: read-only.
		a := newApp(t, store, inspect.Options{}, false)
		task := enqueue(t, a.r, "ok", 1, tasks.Delay(time.Hour))
		tok := a.token(t)
		code, _ := a.post(t, url.Values{"action": {"delete"}, "id": {task.ID}, "csrf": {tok}})
		assert.Equal(t, http.StatusForbidden, code)

		// Allowed, but without or with a wrong token.
		b := newApp(t, store, inspect.Options{Authorize: allowAll}, false)
		b.token(t) // gets the cookie
		code, _ = b.post(t, url.Values{"action": {"delete"}, "id": {task.ID}})
		assert.Equal(t, http.StatusForbidden, code)
		code, _ = b.post(t, url.Values{"action": {"delete"}, "id": {task.ID}, "csrf": {tok}}) // another browser's
		assert.Equal(t, http.StatusForbidden, code)

		// A hook that refuses reading refuses pages too.
		c := newApp(t, store, inspect.Options{Authorize: func(r *http.Request, act inspect.Action) error {
			if r.Header.Get("X-Admin") == "" {
				return inspect.ErrForbidden
			}
			return nil
		}}, false)
		code, _ = c.get(t, "/")
		assert.Equal(t, http.StatusForbidden, code)

		got, err := a.r.Get(context.Background(), task.ID)
		require.NoError(t, err)
		assert.Equal(t, tasks.Scheduled, got.State)
	})
}

func TestActions(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tasks.Store) {
		a := newApp(t, store, inspect.Options{Authorize: allowAll}, true)
		ctx := context.Background()
		tok := a.token(t)
		act := func(action string, extra url.Values) {
			t.Helper()
			form := url.Values{"action": {action}, "csrf": {tok}, "back": {prefix + "/queues/default/dead"}}
			for k, v := range extra {
				form[k] = v
			}
			code, body := a.post(t, form)
			require.Equal(t, http.StatusSeeOther, code, body)
		}

		// Retry a dead task: it runs again (and dies again).
		dead := enqueue(t, a.r, "fail", nil)
		waitState(t, a.r, dead.ID, tasks.Dead)
		var events atomic.Int32
		sub, err := a.r.Subscribe(ctx, func(e tasks.Event) {
			if e.TaskID == dead.ID && e.Kind == tasks.EventStarted {
				events.Add(1)
			}
		})
		require.NoError(t, err)
		defer sub.Close()
		act("retry", url.Values{"id": {dead.ID}})
		require.Eventually(t, func() bool { return events.Load() > 0 }, 10*time.Second, 10*time.Millisecond)
		waitState(t, a.r, dead.ID, tasks.Dead)

		// Run a scheduled task now.
		later := enqueue(t, a.r, "ok", nil, tasks.Delay(time.Hour))
		act("run", url.Values{"id": {later.ID}})
		waitState(t, a.r, later.ID, tasks.Succeeded)

		// Cancel a scheduled one; delete it.
		c := enqueue(t, a.r, "ok", nil, tasks.Delay(time.Hour))
		act("cancel", url.Values{"id": {c.ID}})
		waitState(t, a.r, c.ID, tasks.Cancelled)
		act("delete", url.Values{"id": {c.ID}})
		_, err = a.r.Get(ctx, c.ID)
		assert.ErrorIs(t, err, tasks.ErrNotFound)

		// Bulk: delete the whole dead list.
		for range 3 {
			waitState(t, a.r, enqueue(t, a.r, "fail", nil).ID, tasks.Dead)
		}
		act("delete", url.Values{"all": {"1"}, "queue": {"default"}, "state": {"dead"}})
		counts, err := a.r.Counts(ctx)
		require.NoError(t, err)
		assert.Zero(t, counts["default"][tasks.Dead])

		// Errors: an unknown task, nothing selected, an unknown action, a
		// redirect elsewhere.
		code, _ := a.post(t, url.Values{"action": {"retry"}, "csrf": {tok}, "id": {"missing"}})
		assert.Equal(t, http.StatusNotFound, code)
		code, _ = a.post(t, url.Values{"action": {"retry"}, "csrf": {tok}})
		assert.Equal(t, http.StatusBadRequest, code)
		code, _ = a.post(t, url.Values{"action": {"explode"}, "csrf": {tok}})
		assert.Equal(t, http.StatusBadRequest, code)
		x := enqueue(t, a.r, "ok", nil, tasks.Delay(time.Hour))
		res, err := a.client.PostForm(a.srv.URL+prefix+"/action", url.Values{"action": {"cancel"}, "csrf": {tok}, "id": {x.ID}, "back": {"//evil.example/"}})
		require.NoError(t, err)
		res.Body.Close()
		assert.Equal(t, prefix+"/", res.Header.Get("Location"))
	})
}

func TestLiveCounts(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tasks.Store) {
		a := newApp(t, store, inspect.Options{}, false)
		a.token(t) // the first request subscribes to the runner's events
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		got := make(chan string, 16)
		go func() {
			_ = sse.Subscribe(ctx, a.srv.URL+prefix+"/events", sse.ClientOptions{}, func(e sse.Event) error {
				if e.Type == "counts" {
					select {
					case got <- string(e.Data):
					default:
					}
				}
				return nil
			})
		}()
		<-got // the snapshot sent when the stream opens
		enqueue(t, a.r, "ok", 1, tasks.Queue("mail"))
		enqueue(t, a.r, "ok", 1, tasks.Queue("mail"))
		for {
			select {
			case data := <-got:
				if strings.Contains(data, `"name":"mail","paused":false,"counts":{`) && strings.Contains(data, `"pending":2`) {
					cancel()
					return
				}
			case <-ctx.Done():
				t.Fatal("no counts event with the two tasks")
			}
		}
	})
}

func ExampleNew() {
	r := tasks.NewRunner(tasks.Options{})
	mux := http.NewServeMux()
	in := inspect.New(r, inspect.Options{
		Prefix: "/admin/tasks",
		// Without Authorize the inspector is read-only; this allows every
		// action to whoever reaches it: put it behind your auth.
		Authorize: func(r *http.Request, a inspect.Action) error { return nil },
	})
	mux.Handle("/admin/tasks/", in)
	defer in.Shutdown(context.Background())

	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, _ := http.Get(srv.URL + "/admin/tasks/")
	fmt.Println(res.StatusCode, res.Header.Get("Content-Type"))
	res.Body.Close()
	// Output: 200 text/html; charset=utf-8
}

func TestPauseResume(t *testing.T) {
	forEachStore(t, func(t *testing.T, store tasks.Store) {
		a := newApp(t, store, inspect.Options{Authorize: allowAll}, true)
		ctx := context.Background()
		tok := a.token(t)
		code, _ := a.post(t, url.Values{"action": {"pause"}, "csrf": {tok}, "queue": {"mail"}})
		require.Equal(t, http.StatusSeeOther, code)
		task := enqueue(t, a.r, "ok", nil, tasks.Queue("mail"))
		_, body := a.get(t, "/")
		assert.Contains(t, body, `<span class="badge paused">paused</span>`)
		assert.Contains(t, body, `value="resume">Resume`)
		_, body = a.get(t, "/queues/mail/pending")
		assert.Contains(t, body, "paused")
		got, err := a.r.Get(ctx, task.ID)
		require.NoError(t, err)
		assert.Equal(t, tasks.Pending, got.State)

		code, _ = a.post(t, url.Values{"action": {"resume"}, "csrf": {tok}, "queue": {"mail"}})
		require.Equal(t, http.StatusSeeOther, code)
		waitState(t, a.r, task.ID, tasks.Succeeded)
		paused, err := a.r.PausedQueues(ctx)
		require.NoError(t, err)
		assert.Empty(t, paused)

		code, _ = a.post(t, url.Values{"action": {"pause"}, "csrf": {tok}})
		assert.Equal(t, http.StatusBadRequest, code)
		code, _ = a.post(t, url.Values{"action": {"pause"}, "csrf": {tok}, "queue": {"bad queue"}})
		assert.Equal(t, http.StatusBadRequest, code)
	})
}

// A payload is its JSON text, escaped once for HTML: what encoding/json
// wrote as \u003c shows as "<", as text, never as markup; a backslash the
// payload itself holds stays.
func TestPayloadShowsHTMLAsTextOnce(t *testing.T) {
	a := newApp(t, tasks.NewMemoryStore(tasks.MemoryOptions{}), inspect.Options{}, false)
	task := enqueue(t, a.r, "ok", map[string]string{"html": "<b>bold</b> & co", "typed": `\u003c`})
	_, body := a.get(t, "/task?id="+task.ID)
	assert.Contains(t, body, `&#34;html&#34;: &#34;&lt;b&gt;bold&lt;/b&gt; &amp; co&#34;`)
	assert.NotContains(t, body, "<b>bold")
	assert.NotContains(t, body, `\u003c`+"b")
	assert.NotContains(t, body, `&amp;lt;`, "escaped twice")
	assert.Contains(t, body, `&#34;typed&#34;: &#34;\\u003c&#34;`, "the payload's own backslash stays")
}

func TestBackLink(t *testing.T) {
	a := newApp(t, tasks.NewMemoryStore(tasks.MemoryOptions{}), inspect.Options{
		BackLink: inspect.Link{URL: `/chat?room="x"&y=<1>`, Label: `<i>Back</i> to "chat"`},
	}, false)
	for _, path := range []string{"/", "/queues/default/pending"} {
		_, body := a.get(t, path)
		assert.Contains(t, body, `<a class="back" id="back" href="/chat?room=%22x%22&amp;y=%3c1%3e">‹ &lt;i&gt;Back&lt;/i&gt; to &#34;chat&#34;</a>`, path)
	}

	// No link by default; "Back" when only the URL is set.
	a = newApp(t, tasks.NewMemoryStore(tasks.MemoryOptions{}), inspect.Options{}, false)
	_, body := a.get(t, "/")
	assert.NotContains(t, body, `class="back"`)
	a = newApp(t, tasks.NewMemoryStore(tasks.MemoryOptions{}), inspect.Options{BackLink: inspect.Link{URL: "https://app.example/"}}, false)
	_, body = a.get(t, "/")
	assert.Contains(t, body, `href="https://app.example/">‹ Back</a>`)

	r := tasks.NewRunner(tasks.Options{Store: tasks.NewMemoryStore(tasks.MemoryOptions{}), Logger: quiet})
	for _, u := range []string{"/", "../app", "?tab=2", "http://app.example/x", "HTTPS://app.example/", "//app.example/"} {
		assert.NotPanics(t, func() { inspect.New(r, inspect.Options{BackLink: inspect.Link{URL: u}}) }, u)
	}
	for _, u := range []string{"javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<b>x</b>", "mailto:a@b", "ftp://x/", " javascript:x", "http://[::1"} {
		assert.Panics(t, func() { inspect.New(r, inspect.Options{BackLink: inspect.Link{URL: u}}) }, u)
	}
}

// A task whose events this inspector never received says why, and points
// at what the store keeps, rather than a bare "none".
func TestTaskWithoutEventsSaysWhy(t *testing.T) {
	a := newApp(t, tasks.NewMemoryStore(tasks.MemoryOptions{}), inspect.Options{}, false)
	task := enqueue(t, a.r, "ok", 1)
	_, body := a.get(t, "/task?id="+task.ID)
	assert.Contains(t, body, `id="no-events"`)
	assert.Contains(t, body, "Events are not stored with tasks: this inspector keeps the ones it receives from when it starts listening")
	assert.Contains(t, body, "The store's own count is above: 0 of ")
	assert.NotContains(t, body, "None seen by this inspector")
}
