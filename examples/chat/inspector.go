package main

import (
	"crypto/hmac"
	"crypto/sha256"
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
		Prefix: "/admin/tasks",
		Secret: mac.Sum(nil),
		Logger: log,
		Authorize: func(r *http.Request, _ inspect.Action) error {
			if u, _, err := a.session(r); err != nil || u.Role != roleAdmin {
				return inspect.ErrForbidden
			}
			return nil
		},
	})
}
