package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"log/slog"
	"net/http"

	"github.com/rtkit/rtkit/tasks/inspect"
)

// newInspector mounts the library's task inspector (queues, task lists and
// pages, retry, cancel, delete, pause; live over SSE) for admins. Task
// payloads name users and their addresses, so members may not even read
// it. Its form tokens are keyed from CHAT_SECRET, so that every replica
// accepts a form another replica served.
func (a *app) newInspector(log *slog.Logger) *inspect.Inspector {
	mac := hmac.New(sha256.New, a.cfg.Secret)
	mac.Write([]byte("rtkit chat: task inspector forms"))
	return inspect.New(a.tasks, inspect.Options{
		Prefix:   "/admin/tasks",
		Secret:   mac.Sum(nil),
		Logger:   log,
		BackLink: inspect.Link{URL: "/", Label: "Back to the chat"},
		// The inspector answers 403 with "forbidden: " and this error's
		// text, which people read: say why, not which option refused.
		Authorize: func(r *http.Request, _ inspect.Action) error {
			if u, _, err := a.session(r); err != nil || u.Role != roleAdmin {
				return errAdminsOnly
			}
			return nil
		},
	})
}

var errAdminsOnly = errors.New("the task inspector is for the chat's admins")

// inspectorHandler answers 401 without a session, as the outbox does
// (403 means "not yours" rather than "sign in"), and otherwise leaves
// the inspector's Authorize to decide.
func (a *app) inspectorHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, err := a.session(r); err != nil {
			http.Error(w, "sign in to the chat first, as an admin", http.StatusUnauthorized)
			return
		}
		a.inspector.ServeHTTP(w, r)
	})
}
