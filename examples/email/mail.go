package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/rtkit/rtkit/examples/internal/smtpmail"
)

// message is one plain-text mail (smtpmail.Message: To, Subject, Body).
type message = smtpmail.Message

// A mailer sends one message; attempt is the task's attempt (1, 2, ...).
type mailer func(ctx context.Context, m message, attempt int) error

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
	return func(ctx context.Context, m message, _ int) error {
		return smtpmail.Send(ctx, addr, from, m)
	}
}

// permanent reports whether err is an SMTP 5xx reply.
func permanent(err error) bool { return smtpmail.Permanent(err) }

// logMailer logs messages instead of sending them, taking half a second so
// that /tasks shows them running. To see retries and the dead-letter list
// without a mail server, sign up an address starting with "flaky" (its
// first two attempts fail) or "fail" (every attempt fails).
func logMailer(log *slog.Logger) mailer {
	return func(ctx context.Context, m message, attempt int) error {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
		local, _, _ := strings.Cut(m.To, "@")
		switch {
		case strings.HasPrefix(local, "fail"):
			return errors.New(`pretend failure: the address starts with "fail"`)
		case strings.HasPrefix(local, "flaky") && attempt <= 2:
			return fmt.Errorf(`pretend failure %d of 2: the address starts with "flaky"`, attempt)
		}
		log.Info("mail not sent (SMTP_ADDR is unset)", "to", m.To, "subject", m.Subject, "body", m.Body)
		return nil
	}
}
