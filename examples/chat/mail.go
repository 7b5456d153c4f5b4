package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

// Mail: an "email.send" task carries an email; a mailer delivers it, over
// SMTP to SMTP_ADDR (smtpMailer), or else into the outbox page (outbox).

// email is one plain-text message to one recipient, as an "email.send"
// task's payload. It is complete when enqueued, so that every attempt, on
// any replica, sends the same message with the same Message-ID.
type email struct {
	MessageID string    `json:"message_id"` // without the angle brackets
	Date      time.Time `json:"date"`
	To        string    `json:"to"`
	Subject   string    `json:"subject"`
	Body      string    `json:"body"`
	// Label says what the mail is about, for the dashboard ("mail to
	// ana: mention in #general"); it is not sent.
	Label string `json:"label,omitempty"`
}

// A mailer delivers emails. Send honours ctx's deadline and cancellation.
// An error for which [permanent] holds is not worth retrying.
type mailer interface {
	Send(ctx context.Context, e *email) error
}

// errPermanent marks failures that a retry would not fix.
var errPermanent = errors.New("permanent failure")

// permanent reports whether err is errPermanent or an SMTP 5xx reply
// (a 4xx reply, a refused connection or a timeout may pass).
func permanent(err error) bool {
	var se *smtp.SMTPError
	return errors.Is(err, errPermanent) || errors.As(err, &se) && se.Code >= 500 && se.Code <= 599
}

// newMessageID returns a unique Message-ID for mail from the address from.
func newMessageID(from *mail.Address) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	domain := "localhost"
	if i := strings.LastIndexByte(from.Address, '@'); i >= 0 && !strings.ContainsAny(from.Address[i+1:], "<>[] ") {
		domain = from.Address[i+1:]
	}
	return hex.EncodeToString(b[:]) + "@" + domain
}

// format renders e from from as an RFC 5322 message: CRLF line endings,
// header values stripped of control characters (no header injection)
// and RFC 2047-encoded where they are not ASCII, the body as
// quoted-printable UTF-8 text, whatever its lines or characters.
func (e *email) format(from *mail.Address) []byte {
	var b bytes.Buffer
	header := func(k, v string) {
		b.WriteString(fold(k + ": " + headerSafe(v)))
		b.WriteString("\r\n")
	}
	date := e.Date
	if date.IsZero() {
		date = time.Now()
	}
	header("Date", date.Format(time.RFC1123Z))
	header("Message-ID", "<"+e.MessageID+">")
	header("From", from.String())
	header("To", (&mail.Address{Address: e.To}).String())
	header("Subject", mime.QEncoding.Encode("utf-8", headerSafe(e.Subject)))
	header("MIME-Version", "1.0")
	header("Content-Type", "text/plain; charset=utf-8")
	header("Content-Transfer-Encoding", "quoted-printable")
	b.WriteString("\r\n")
	qp := quotedprintable.NewWriter(&b) // text mode: line breaks become CRLF
	_, _ = qp.Write([]byte(strings.ToValidUTF8(e.Body, "\uFFFD")))
	_ = qp.Close()
	if !bytes.HasSuffix(b.Bytes(), []byte("\r\n")) {
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// fold breaks a header line longer than 78 characters before spaces
// (those between RFC 2047 words among them), where a line may go on.
func fold(line string) string {
	const limit = 78
	start := strings.IndexByte(line, ' ') + 1 // not right after the colon
	var b strings.Builder
	for len(line) > limit {
		i := strings.LastIndexByte(line[:limit+1], ' ')
		if i <= start {
			if i = strings.IndexByte(line[limit:], ' '); i < 0 {
				break
			}
			i += limit
		}
		b.WriteString(line[:i])
		b.WriteString("\r\n")
		line, start = line[i:], 1
	}
	b.WriteString(line)
	return b.String()
}

// headerSafe replaces control characters (CR and LF among them) with
// spaces and invalid UTF-8 with U+FFFD.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
}

// smtpMailer sends over SMTP to one server, a connection per email.
//
// TLS: port 465 is TLS from the start; with credentials, any other port
// must offer STARTTLS unless the server is on a loopback address (a local
// relay); without credentials the connection is plain text. PLAIN auth
// therefore never crosses a network in clear.
type smtpMailer struct {
	addr     string // host:port
	host     string
	from     *mail.Address
	user     string
	password secret
	tls      *tls.Config // nil: the system's roots, for host
}

func newSMTPMailer(cfg config, from *mail.Address) *smtpMailer {
	host, _, _ := net.SplitHostPort(cfg.SMTPAddr)
	return &smtpMailer{addr: cfg.SMTPAddr, host: host, from: from, user: cfg.SMTPUser, password: cfg.SMTPPassword}
}

type tlsMode int

const (
	plainText tlsMode = iota
	startTLS
	implicitTLS
)

func (s *smtpMailer) tlsMode() tlsMode {
	_, port, _ := net.SplitHostPort(s.addr)
	switch {
	case port == "465":
		return implicitTLS
	case s.user != "" && !isLoopback(s.host):
		return startTLS
	}
	return plainText
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func (s *smtpMailer) tlsConfig() *tls.Config {
	if s.tls != nil {
		return s.tls
	}
	return &tls.Config{ServerName: s.host, MinVersion: tls.VersionTLS12}
}

// Send delivers e in one SMTP session. An error after the server accepted
// the message (at QUIT) is ignored: a retry would send it twice.
func (s *smtpMailer) Send(ctx context.Context, e *email) (err error) {
	defer func() {
		if err != nil {
			if ctx.Err() != nil { // the error is the closed connection's
				err = fmt.Errorf("%w (%v)", ctx.Err(), err)
			}
			err = fmt.Errorf("smtp %s: %w", s.addr, err)
		}
	}()
	if _, err := mail.ParseAddress(e.To); err != nil {
		return fmt.Errorf("%w: recipient %q: %v", errPermanent, e.To, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr)
	if err != nil {
		return err
	}
	// go-smtp sets deadlines of its own on every command; closing the
	// connection is what ends a session when ctx does.
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	mode := s.tlsMode()
	if mode == implicitTLS {
		tc := tls.Client(conn, s.tlsConfig())
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = conn.Close()
			return err
		}
		conn = tc
	}
	var c *smtp.Client
	if mode == startTLS {
		if c, err = smtp.NewClientStartTLS(conn, s.tlsConfig()); err != nil {
			return err // NewClientStartTLS closed conn
		}
	} else {
		c = smtp.NewClient(conn)
	}
	defer c.Close()
	if deadline, ok := ctx.Deadline(); ok {
		c.CommandTimeout, c.SubmissionTimeout = time.Until(deadline), time.Until(deadline)
	}

	if s.user != "" {
		if _, secure := c.TLSConnectionState(); !secure && !isLoopback(s.host) {
			return fmt.Errorf("%w: refusing to send the password in clear", errPermanent)
		}
		if ok, _ := c.Extension("AUTH"); !ok {
			return fmt.Errorf("%w: the server offers no AUTH but SMTP_USER is set", errPermanent)
		}
		if err := c.Auth(sasl.NewPlainClient("", s.user, string(s.password))); err != nil {
			return err
		}
	}
	if err := c.SendMail(s.from.Address, []string{e.To}, bytes.NewReader(e.format(s.from))); err != nil {
		return err
	}
	_ = c.Quit()
	return nil
}
