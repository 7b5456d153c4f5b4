// Package smtpmail sends one plain-text mail over SMTP with go-smtp's
// client: what examples/email and examples/notify share of their mailers.
// Each example keeps its own mailer type, its log-only mailer and its
// retry policy; this package is only the SMTP session and the message.
package smtpmail

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one plain-text mail. To must be a bare address checked by
// net/mail; Subject and Body are sent as they are (UTF-8), so a Subject
// must not hold user input (it is a header); Body may.
type Message struct{ To, Subject, Body string }

// Send sends m from the bare address from to the SMTP server at addr, in
// a session of its own, without authentication or TLS (a relay or
// catcher on a trusted network, as in the examples). It ends when ctx
// does: go-smtp's client takes no context, so the connection is closed.
// A 4xx reply, a refused connection or a timeout is worth retrying; a 5xx
// reply is not ([Permanent]).
func Send(ctx context.Context, addr, from string, m Message) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	c := smtp.NewClient(conn)
	defer c.Close()
	if err := c.SendMail(from, []string{m.To}, strings.NewReader(Format(m, from, time.Now()))); err != nil {
		return err
	}
	_ = c.Quit() // the server has the mail: an error now must not send it twice
	return nil
}

// Format renders m as an RFC 5322 message dated date, with CRLF line
// ends.
func Format(m Message, from string, date time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\n", from, m.To, m.Subject, date.Format(time.RFC1123Z))
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	b.WriteString(strings.ReplaceAll(m.Body, "\n", "\r\n"))
	return b.String()
}

// Permanent reports whether err is an SMTP 5xx reply: the server refuses
// the mail for good, and retrying will not help.
func Permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.As(err, &se) && se.Code >= 500
}
