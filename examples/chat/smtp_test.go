package main

import (
	"errors"
	"io"
	"log"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// smtpSink is a real SMTP server (go-smtp's) on a loopback port that
// records what it receives, for the mail tests.
type smtpSink struct {
	addr string
	srv  *smtp.Server
	done chan struct{} // closed when Serve returned

	// rcptErr, when set, refuses every recipient.
	rcptErr *smtp.SMTPError
	// user and password, when set, are the credentials AUTH PLAIN accepts.
	user, password string

	mu      sync.Mutex
	mails   []sunkMail
	arrived chan struct{} // signalled on every mail
}

// sunkMail is one message the sink accepted.
type sunkMail struct {
	From string
	To   []string
	User string // the authenticated user, if any
	Data []byte
}

// startSMTP starts a sink on addr ("127.0.0.1:0" for any port), configured
// by setup (may be nil), and stops it when the test ends.
func startSMTP(t *testing.T, addr string, setup func(*smtpSink)) *smtpSink {
	t.Helper()
	s := &smtpSink{done: make(chan struct{}), arrived: make(chan struct{}, 100)}
	if setup != nil {
		setup(s)
	}
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; { // a just-freed port may take a moment
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.NoError(t, err)
	s.addr = ln.Addr().String()
	s.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }))
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true // loopback only
	s.srv.ReadTimeout, s.srv.WriteTimeout = 10*time.Second, 10*time.Second
	s.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	t.Cleanup(s.stop)
	return s
}

// stop closes the server and its connections and waits for it.
func (s *smtpSink) stop() {
	_ = s.srv.Close()
	<-s.done
}

func (s *smtpSink) received() []sunkMail {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sunkMail(nil), s.mails...)
}

// waitMails waits until the sink has n mails and returns them.
func (s *smtpSink) waitMails(t *testing.T, n int) []sunkMail {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		if m := s.received(); len(m) >= n {
			return m
		}
		select {
		case <-s.arrived:
		case <-timeout:
			t.Fatalf("the SMTP server has %d mails, want %d", len(s.received()), n)
		}
	}
}

// freeAddr returns a loopback address nothing listens on (for now).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

type sinkSession struct {
	s    *smtpSink
	user string
	from string
	to   []string
}

var _ smtp.AuthSession = (*sinkSession)(nil)

func (ss *sinkSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (ss *sinkSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, user, password string) error {
		if ss.s.user == "" || user != ss.s.user || password != ss.s.password {
			return errors.New("invalid credentials")
		}
		ss.user = user
		return nil
	}), nil
}

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	if ss.s.user != "" && ss.user == "" {
		return smtp.ErrAuthRequired
	}
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	if ss.s.rcptErr != nil {
		return ss.s.rcptErr
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.mails = append(ss.s.mails, sunkMail{From: ss.from, To: ss.to, User: ss.user, Data: data})
	ss.s.mu.Unlock()
	select {
	case ss.s.arrived <- struct{}{}:
	default:
	}
	return nil
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }
