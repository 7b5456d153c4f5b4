package inspect

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strings"

	"github.com/rtkit/rtkit/tasks"
)

// csrfCookie holds a random value per browser; a form's token is its
// HMAC under the inspector's secret, so a site that can set cookies for
// the domain still can't forge a token.
const csrfCookie = "rtkit_inspect_csrf"

// maxBulk bounds the tasks one bulk action ("all" of a list) changes.
const maxBulk = 1000

// csrfToken returns the token of the request's browser, giving it a
// cookie first if it has none.
func (in *Inspector) csrfToken(w http.ResponseWriter, r *http.Request) string {
	c, err := r.Cookie(csrfCookie)
	if err != nil || len(c.Value) < 20 {
		b := make([]byte, 18)
		_, _ = rand.Read(b)
		c = &http.Cookie{Name: csrfCookie, Value: base64.RawURLEncoding.EncodeToString(b),
			Path: in.prefix + "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil}
		http.SetCookie(w, c)
	}
	return in.sign(c.Value)
}

func (in *Inspector) sign(v string) string {
	m := hmac.New(sha256.New, in.secret)
	m.Write([]byte(v))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfOK reports whether the form's token matches the browser's cookie.
func (in *Inspector) csrfOK(r *http.Request) bool {
	c, err := r.Cookie(csrfCookie)
	tok := r.PostFormValue("csrf")
	return err == nil && tok != "" && hmac.Equal([]byte(tok), []byte(in.sign(c.Value)))
}

// action runs a POSTed action: on the tasks named by the "id" fields, or
// with all=1 on the first maxBulk tasks of the list of the "queue" and
// "state" fields, or (pause, resume) on the queue. It redirects (303) to
// the "back" field, a path under the prefix, or to the overview. A task
// the action doesn't apply to (a running task to delete, say) is
// skipped; when nothing was changed and something failed, the answer is
// the first failure's status (404, 409) instead.
func (in *Inspector) action(w http.ResponseWriter, r *http.Request) {
	if !in.csrfOK(r) {
		http.Error(w, "inspect: missing or invalid CSRF token (reload the page)", http.StatusForbidden)
		return
	}
	act := Action(r.PostFormValue("action"))
	ctx := r.Context()
	queue := r.PostFormValue("queue")
	var err error
	switch act {
	case ActionPause, ActionResume:
		if queue == "" {
			http.Error(w, "inspect: missing queue", http.StatusBadRequest)
			return
		}
		err = in.pause(ctx, queue, act == ActionPause)
	case ActionRun, ActionRetry, ActionCancel, ActionDelete:
		ids := r.PostForm["id"]
		if r.PostFormValue("all") == "1" {
			if ids, err = in.all(ctx, queue, tasks.State(r.PostFormValue("state"))); err != nil {
				break
			}
		}
		if len(ids) == 0 {
			http.Error(w, "inspect: no task selected", http.StatusBadRequest)
			return
		}
		err = in.apply(ctx, act, ids)
	default:
		http.Error(w, fmt.Sprintf("inspect: unknown action %q", act), http.StatusBadRequest)
		return
	}
	in.live.kick()
	if err != nil {
		in.fail(w, err)
		return
	}
	http.Redirect(w, r, in.back(r.PostFormValue("back")), http.StatusSeeOther)
}

// all returns the IDs of the first maxBulk tasks of a list.
func (in *Inspector) all(ctx context.Context, queue string, st tasks.State) ([]string, error) {
	var ids []string
	cursor := ""
	for len(ids) < maxBulk {
		p, err := in.r.List(ctx, tasks.ListOptions{Queue: queue, State: st, Cursor: cursor, Limit: min(1000, maxBulk-len(ids))})
		if err != nil {
			return nil, err
		}
		for _, t := range p.Tasks {
			ids = append(ids, t.ID)
		}
		if cursor = p.Next; cursor == "" {
			break
		}
	}
	return ids, nil
}

// apply runs act on each task; it returns the first error if no task was
// changed.
func (in *Inspector) apply(ctx context.Context, act Action, ids []string) error {
	var first error
	done := 0
	for _, id := range ids {
		var err error
		switch act {
		case ActionRun, ActionRetry:
			_, err = in.r.Retry(ctx, id)
		case ActionCancel:
			_, err = in.r.Cancel(ctx, id)
		case ActionDelete:
			err = in.r.Delete(ctx, id)
		}
		if err == nil {
			done++
		} else if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	if done == 0 {
		return first
	}
	return nil
}

// back returns where to redirect after an action: target if it is a path
// under the prefix (not another site), else the overview.
func (in *Inspector) back(target string) string {
	if strings.HasPrefix(target, in.prefix+"/") && !strings.HasPrefix(target, "//") && !strings.Contains(target, "\\") {
		return target
	}
	return in.prefix + "/"
}

// pausedQueues returns the paused queues, or nil when they can't be read
// (a store that can't pause).
func (in *Inspector) pausedQueues(ctx context.Context) map[string]bool {
	qs, err := in.r.PausedQueues(ctx)
	if err != nil {
		return nil
	}
	out := make(map[string]bool, len(qs))
	for _, q := range qs {
		out[q] = true
	}
	return out
}

// pause pauses or resumes a queue.
func (in *Inspector) pause(ctx context.Context, queue string, on bool) error {
	if on {
		return in.r.PauseQueue(ctx, queue)
	}
	return in.r.ResumeQueue(ctx, queue)
}
