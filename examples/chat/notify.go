package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/mail"
	"strings"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/tasks"
)

// The "email.send" task: enqueued by a digest (digest.go), run by any
// replica's task runner, which hands the email to the app's mailer.

const (
	mailTask    = "email.send"
	mailTimeout = 30 * time.Second // one attempt: connect, talk, send
	mailUnique  = 24 * time.Hour
)

// The retries of undeliverable mail, unless the config says otherwise:
// about two minutes of attempts, for an SMTP server that restarts.
const defaultMailAttempts = 8

var defaultMailRetry = tasks.Backoff{Initial: time.Second, Max: time.Minute, Factor: 2, Jitter: 0.2}

// newMailer returns the SMTP mailer, or the outbox without SMTP_ADDR.
func newMailer(cfg config, from *mail.Address, bp rtkit.Backplane, log *slog.Logger) mailer {
	if cfg.SMTPAddr == "" {
		return &outbox{bp: bp, from: from, log: log}
	}
	return newSMTPMailer(cfg, from)
}

// sendMail is the "email.send" handler. A permanent failure (an SMTP 5xx
// reply, an invalid address) ends the task; any other is retried with
// backoff.
func (a *app) sendMail(ctx context.Context, j *tasks.Job[email]) error {
	err := a.mailer.Send(ctx, &j.Payload)
	switch {
	case err == nil:
		a.log.Info("mail sent", "to", j.Payload.To, "subject", j.Payload.Subject, "task", j.ID, "attempt", j.Attempt)
		return nil
	case permanent(err):
		a.log.Error("mail undeliverable", "to", j.Payload.To, "task", j.ID, "err", err)
		return tasks.SkipRetry(err)
	default:
		a.log.Warn("mail not sent; it will be retried", "to", j.Payload.To, "task", j.ID, "attempt", j.Attempt, "of", j.MaxAttempts, "err", err)
		return err
	}
}

// enqueueMail enqueues e once per key: a second enqueue with the key while
// the first is pending or retrying is a no-op.
func (a *app) enqueueMail(ctx context.Context, key string, e *email) error {
	t, err := a.tasks.Enqueue(ctx, mailTask, e, tasks.Unique(key, mailUnique), tasks.MaxAttempts(a.cfg.MailAttempts),
		tasks.WithBackoff(a.cfg.MailRetry), tasks.Timeout(mailTimeout))
	switch {
	case errors.Is(err, tasks.ErrDuplicate):
		a.log.Debug("mail already enqueued", "key", key)
	case err != nil:
		a.log.Error("enqueueing a mail failed", "to", e.To, "err", err)
	default:
		a.log.Info("mail enqueued", "to", e.To, "subject", e.Subject, "task", t.ID)
	}
	return err
}

// uniqueKey joins parts into a task unique key, hashed when too long for
// one (long room names).
func uniqueKey(parts ...string) string {
	k := strings.Join(parts, "/")
	if len(k) <= 200 {
		return k
	}
	sum := sha256.Sum256([]byte(k))
	return parts[0] + "/" + hex.EncodeToString(sum[:])
}
