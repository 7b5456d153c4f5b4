package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// message is one plain-text mail.
type message struct{ To, Subject, Body string }

// A mailer sends one message; attempt is the task's attempt (1, 2, ...).
type mailer func(ctx context.Context, m message, attempt int) error

// newMailer sends over SMTP to SMTP_ADDR, or only logs without it.
func newMailer(cfg config, log *slog.Logger) mailer {
	if cfg.SMTPAddr == "" {
		return logMailer(log)
	}
	return smtpMailer(cfg.SMTPAddr, cfg.From)
}

// smtpMailer sends each message in its own SMTP session with the go-smtp
// client. An SMTP reply 4xx (try later), a refused connection or a
// timeout is an error worth retrying; a 5xx reply is permanent.
func smtpMailer(addr, from string) mailer {
	return func(ctx context.Context, m message, _ int) error {
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // go-smtp takes no context: closing ends the session
		defer stop()
		c := smtp.NewClient(conn)
		defer c.Close()
		if err := c.SendMail(from, []string{m.To}, strings.NewReader(m.format(from))); err != nil {
			return err
		}
		_ = c.Quit() // the server has the mail: an error now must not send it twice
		return nil
	}
}

// format renders m as an RFC 5322 message. Only the body holds user
// input (the name); addresses were checked by net/mail.
func (m message) format(from string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n", from, m.To, m.Subject, time.Now().Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(strings.ReplaceAll(m.Body, "\n", "\r\n"))
	return b.String()
}

// permanent reports whether err is an SMTP 5xx reply.
func permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}

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
