package main

import (
	"io"
	"log"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// smtpSink is a real SMTP server (go-smtp's) on a loopback port that
// records the mails it accepts, for the tests.
type smtpSink struct {
	addr string
	// refuse, if set, is asked about every recipient: the n-th time (from
	// 1) it sees to. A non-nil *smtp.SMTPError is the server's reply.
	refuse func(to string, n int) *smtp.SMTPError
	// hold, if set, runs in DATA before the mail is accepted.
	hold func()

	mu      sync.Mutex
	tries   map[string]int
	mails   []sunkMail
	arrived chan struct{}
}

type sunkMail struct {
	From string
	To   string
	Data string
}

func startSMTP(t *testing.T, setup func(*smtpSink)) *smtpSink {
	t.Helper()
	s := &smtpSink{tries: map[string]int{}, arrived: make(chan struct{}, 1)}
	if setup != nil {
		setup(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.addr = ln.Addr().String()
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
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

// mailsTo returns the mails accepted for to.
func (s *smtpSink) mailsTo(to string) []sunkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []sunkMail
	for _, m := range s.mails {
		if m.To == to {
			out = append(out, m)
		}
	}
	return out
}

// waitMail waits for a mail to to whose text contains want.
func (s *smtpSink) waitMail(t *testing.T, to, want string) sunkMail {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for {
		for _, m := range s.mailsTo(to) {
			if strings.Contains(m.Data, want) {
				return m
			}
		}
		select {
		case <-s.arrived:
		case <-timeout:
			t.Fatalf("no mail to %s containing %q; got %v", to, want, s.mailsTo(to))
		}
	}
}

type sinkSession struct {
	s    *smtpSink
	from string
	to   string
}

func (ss *sinkSession) AuthMechanisms() []string { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.s.mu.Lock()
	ss.s.tries[to]++
	n := ss.s.tries[to]
	ss.s.mu.Unlock()
	if ss.s.refuse != nil {
		if err := ss.s.refuse(to, n); err != nil {
			return err
		}
	}
	ss.to = to
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	if ss.s.hold != nil {
		ss.s.hold()
	}
	ss.s.mu.Lock()
	ss.s.mails = append(ss.s.mails, sunkMail{From: ss.from, To: ss.to, Data: string(data)})
	ss.s.mu.Unlock()
	select {
	case ss.s.arrived <- struct{}{}:
	default:
	}
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", "" }
func (ss *sinkSession) Logout() error { return nil }
