// Package smtptest runs a real SMTP server (go-smtp's) on a loopback port
// for the examples' mail tests, and records what it accepts.
//
//	srv := smtptest.Start(t, smtptest.Options{})
//	// run the app with SMTP_ADDR=srv.Addr
//	m := srv.WaitMail(t, "ada@example.com", "Welcome")
//
// Options can refuse recipients with any SMTP reply (a 451 twice, say, to
// make a sender retry) or hold mails in DATA (to see several in flight).
package smtptest

import (
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Options configure a Server. The zero value accepts every mail.
type Options struct {
	// Refuse, if set, is asked about every recipient: the n-th time (from
	// 1) the server sees to. A non-nil reply refuses it with that reply.
	Refuse func(to string, n int) *smtp.SMTPError
	// Hold, if set, runs in DATA before a mail is accepted, on the
	// session's goroutine: a mail waits while it blocks.
	Hold func()
}

// Mail is one mail the server accepted.
type Mail struct {
	From string
	To   string
	Data string // the message as received: headers, blank line, body
}

// Server is a running SMTP server. Its methods are safe for concurrent use.
type Server struct {
	// Addr is the server's address, 127.0.0.1:PORT.
	Addr string
	opts Options

	mu      sync.Mutex
	tries   map[string]int
	mails   []Mail
	arrived chan struct{}
}

// Start starts a server on a free loopback port; it stops when t ends.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	s := &Server{opts: opts, tries: map[string]int{}, arrived: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = ln.Addr().String()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{s: s}, nil }))
	srv.Domain = "localhost"
	srv.ReadTimeout, srv.WriteTimeout = 10*time.Second, 10*time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	return s
}

// MailsTo returns the mails accepted for to, in the order they came.
func (s *Server) MailsTo(to string) []Mail {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Mail
	for _, m := range s.mails {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

// Attempts returns how many times a mail to to was tried (RCPT TO seen),
// refused or not.
func (s *Server) Attempts(to string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.tries[to]
}

// WaitMail waits up to 20s for a mail to to whose text contains want, and
// fails the test without one.
func (s *Server) WaitMail(t testing.TB, to, want string) Mail {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		for _, m := range s.MailsTo(to) {
			if strings.Contains(m.Data, want) {
				return m
			}
		}
		select {
		case <-s.arrived:
		case <-timeout:
			t.Fatalf("smtptest: no mail to %s containing %q; got %v", to, want, s.MailsTo(to))
		}
	}
}

type session struct {
	s        *Server
	from, to string
}

func (ss *session) AuthMechanisms() []string { return nil }

func (ss *session) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	ss.s.tries[to]++
	n := ss.s.tries[to]
	ss.s.mu.Unlock()
	if ss.s.opts.Refuse != nil {
		if err := ss.s.opts.Refuse(to, n); err != nil {
			return err
		}
	}
	ss.to = to
	return nil
}

func (ss *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.opts.Hold != nil {
		ss.s.opts.Hold()
	}
	ss.s.mu.Lock()
	ss.s.mails = append(ss.s.mails, Mail{From: ss.from, To: ss.to, Data: string(data)})
	ss.s.mu.Unlock()
	select {
	case ss.s.arrived <- struct{}{}:
	default:
	}
	return nil
}

func (ss *session) Reset()        { ss.from, ss.to = "", "" }
func (ss *session) Logout() error { return nil }
