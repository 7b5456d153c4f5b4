package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rtkit/rtkit/examples/internal/smtpmail"
	"github.com/rtkit/rtkit/tasks"
)

// The offline mail: a task per user and batch, and the mailers.

// scheduleMail enqueues the user's offline mail, unless one is already
// waiting: the unique key makes a burst of notifications one task, due
// BATCH_WINDOW from the first (later still if the user left less than
// OFFLINE_AFTER ago). It returns 1 if it enqueued a task.
func (a *app) scheduleMail(ctx context.Context, name string) int {
	a.mu.Lock()
	delay := max(a.cfg.Window, time.Until(a.users[name].left.Add(a.cfg.OfflineAfter)))
	a.mu.Unlock()
	_, err := a.runner.Enqueue(ctx, "notify.mail", mailJob{User: name}, tasks.Delay(delay), tasks.Unique("mail:"+name, delay+time.Minute))
	switch {
	case errors.Is(err, tasks.ErrDuplicate): // already batched
		return 0
	case err != nil:
		a.log.Error("scheduling a mail", "user", name, "err", err)
		return 0
	}
	return 1
}

type mailJob struct {
	User string `json:"user"`
}

// mailOffline is the "notify.mail" task: one mail with the unread
// notifications that arrived since the user left. A user who is back
// online gets none: the page shows them.
func (a *app) mailOffline(ctx context.Context, j *tasks.Job[mailJob]) error {
	a.mu.Lock()
	u := a.user(j.Payload.User)
	var batch []*notification
	for _, n := range u.inbox {
		if !n.Read && !n.mailed && n.Time.After(u.left) {
			batch = append(batch, n)
		}
	}
	to, online := u.prefs.Email, u.online > 0
	a.mu.Unlock()
	if online || to == "" || len(batch) == 0 {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Hello %s, while you were away:\n\n", j.Payload.User)
	for _, n := range batch {
		fmt.Fprintf(&b, "- [%s] %s (%s)\n", n.Kind, n.Text, n.Time.Format(time.Kitchen))
	}
	subject := fmt.Sprintf("%d new notification(s)", len(batch))
	if err := a.send(ctx, message{To: to, Subject: subject, Body: b.String()}); err != nil {
		if permanent(err) { // a 5xx reply
			return tasks.SkipRetry(err)
		}
		return err // retried with backoff
	}
	a.mu.Lock()
	for _, n := range batch {
		n.mailed = true
	}
	a.mu.Unlock()
	return nil
}

// message is one plain-text mail (smtpmail.Message: To, Subject, Body).
type message = smtpmail.Message

// A mailer sends one message.
type mailer func(ctx context.Context, m message) error

// newMailer sends over SMTP to SMTP_ADDR, or only logs without it.
func newMailer(cfg config, log *slog.Logger) mailer {
	if cfg.SMTPAddr == "" {
		return logMailer(log)
	}
	return smtpMailer(cfg.SMTPAddr, cfg.From)
}

// smtpMailer sends each message in its own SMTP session (smtpmail.Send,
// with the go-smtp client). An SMTP reply 4xx (try later), a refused
// connection or a timeout is an error worth retrying; a 5xx reply is
// permanent.
func smtpMailer(addr, from string) mailer {
	return func(ctx context.Context, m message) error {
		return smtpmail.Send(ctx, addr, from, m)
	}
}

// permanent reports whether err is an SMTP 5xx reply.
func permanent(err error) bool { return smtpmail.Permanent(err) }

// logMailer logs messages instead of sending them.
func logMailer(log *slog.Logger) mailer {
	return func(_ context.Context, m message) error {
		log.Info("mail not sent (SMTP_ADDR is unset)", "to", m.To, "subject", m.Subject, "body", m.Body)
		return nil
	}
}
