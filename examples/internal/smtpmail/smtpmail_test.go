package smtpmail_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rtkit/rtkit/examples/internal/smtpmail"
	"github.com/rtkit/rtkit/examples/internal/smtptest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestSend(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{})
	m := smtpmail.Message{To: "ada@example.com", Subject: "Hello", Body: "line one\nline two <b>\n"}
	require.NoError(t, smtpmail.Send(context.Background(), srv.Addr, "app@example.com", m))
	got := srv.WaitMail(t, "ada@example.com", "line two <b>")
	assert.Equal(t, "app@example.com", got.From)
	assert.Contains(t, got.Data, "Subject: Hello\r\n")
	assert.Contains(t, got.Data, "\r\n\r\nline one\r\nline two <b>\r\n")
}

func TestSendRefused(t *testing.T) {
	srv := smtptest.Start(t, smtptest.Options{Refuse: func(to string, n int) *smtp.SMTPError {
		if to == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, Message: "no such user"}
		}
		return &smtp.SMTPError{Code: 451, Message: "try later"}
	}})
	err := smtpmail.Send(context.Background(), srv.Addr, "app@example.com", smtpmail.Message{To: "gone@example.com", Subject: "x", Body: "x"})
	require.Error(t, err)
	assert.True(t, smtpmail.Permanent(err), "550: %v", err)
	err = smtpmail.Send(context.Background(), srv.Addr, "app@example.com", smtpmail.Message{To: "busy@example.com", Subject: "x", Body: "x"})
	require.Error(t, err)
	assert.False(t, smtpmail.Permanent(err), "451: %v", err)
	assert.False(t, smtpmail.Permanent(fmt.Errorf("dial: %w", errors.New("connection refused"))))
}

// A server that holds the mail: Send returns when ctx ends.
func TestSendEndsWithContext(t *testing.T) {
	held, release := make(chan struct{}), make(chan struct{})
	srv := smtptest.Start(t, smtptest.Options{Hold: func() {
		held <- struct{}{}
		<-release
	}})
	t.Cleanup(func() { close(release) }) // before the server stops
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- smtpmail.Send(ctx, srv.Addr, "app@example.com", smtpmail.Message{To: "ada@example.com", Subject: "x", Body: "x"})
	}()
	<-held // in DATA, waiting for the server's reply
	cancel()
	assert.Error(t, <-done)
}

func TestFormat(t *testing.T) {
	date := time.Date(2026, 12, 2, 13, 0, 0, 0, time.UTC)
	got := smtpmail.Format(smtpmail.Message{To: "ada@example.com", Subject: "Hi", Body: "a\nb"}, "app@example.com", date)
	assert.Equal(t, "From: app@example.com\r\nTo: ada@example.com\r\nSubject: Hi\r\nDate: Wed, 02 Dec 2026 13:00:00 +0000\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\na\r\nb", got)
}
