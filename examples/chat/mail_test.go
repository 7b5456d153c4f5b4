package main

import (
	"bytes"
	"context"
	"io"
	"mime"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mailConfig is testConfig with mail to smtpAddr and quick retries.
func mailConfig(smtpAddr string) config {
	cfg := testConfig()
	cfg.SMTPAddr = smtpAddr
	cfg.MailRetry = tasks.Backoff{Initial: 20 * time.Millisecond, Max: 200 * time.Millisecond, Factor: 2}
	return cfg
}

// waitTasks waits until the app's store holds exactly want tasks in state
// (of type email.send) and returns them.
func waitTasks(t *testing.T, a *app, state tasks.State, want int) []*tasks.Task {
	t.Helper()
	var got []*tasks.Task
	require.Eventually(t, func() bool {
		page, err := a.tasks.List(context.Background(), tasks.ListOptions{State: state})
		got = page.Tasks
		return err == nil && len(got) == want
	}, 15*time.Second, 10*time.Millisecond, "want %d %s tasks", want, state)
	return got
}

// parseMail parses a received message and decodes its body.
func parseMail(t *testing.T, data []byte) (*mail.Message, string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	require.NoError(t, err)
	require.Equal(t, "quoted-printable", msg.Header.Get("Content-Transfer-Encoding"))
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	require.NoError(t, err)
	return msg, string(body)
}

func TestEmailFormat(t *testing.T) {
	from := &mail.Address{Name: "Chät", Address: "chat@example.com"}
	e := &email{
		MessageID: "abc@example.com",
		Date:      time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
		To:        "bob@example.com",
		Subject:   "héllo\r\nBcc: eve@example.com\nX-Evil: 1",
		Body:      "line one\nline two, naïve\r\n.\nlast line " + strings.Repeat("x", 100),
	}
	data := e.format(from)
	assert.NotRegexp(t, "[^\r]\n", string(data), "CRLF line endings only")
	assert.True(t, bytes.HasSuffix(data, []byte("\r\n")))
	msg, body := parseMail(t, data)
	assert.Empty(t, msg.Header.Get("Bcc"), "no header injection")
	assert.Empty(t, msg.Header.Get("X-Evil"), "no header injection")
	subject, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	require.NoError(t, err)
	assert.Equal(t, "héllo  Bcc: eve@example.com X-Evil: 1", subject)
	assert.Equal(t, "Fri, 02 Jan 2026 03:04:05 +0000", msg.Header.Get("Date"))
	assert.Equal(t, "<abc@example.com>", msg.Header.Get("Message-ID"))
	assert.Equal(t, "=?utf-8?q?Ch=C3=A4t?= <chat@example.com>", msg.Header.Get("From"))
	assert.Equal(t, "line one\r\nline two, naïve\r\n.\r\nlast line "+strings.Repeat("x", 100)+"\r\n", body)
	for line := range strings.SplitSeq(string(data), "\r\n") {
		assert.LessOrEqual(t, len(line), 78, "short lines: %q", line)
	}
}

func TestSMTPTLSMode(t *testing.T) {
	for _, tc := range []struct {
		addr, user string
		want       tlsMode
	}{
		{"smtp.example.com:465", "", implicitTLS},
		{"smtp.example.com:587", "u", startTLS},
		{"smtp.example.com:25", "", plainText},
		{"127.0.0.1:1025", "u", plainText},
		{"localhost:1025", "u", plainText},
		{"[::1]:1025", "u", plainText},
	} {
		cfg := config{SMTPAddr: tc.addr, SMTPUser: tc.user}
		assert.Equal(t, tc.want, newSMTPMailer(cfg, &mail.Address{Address: "a@b"}).tlsMode(), "%+v", tc)
	}
}

func TestMailConfig(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		fail string
	}{
		{map[string]string{}, ""},
		{map[string]string{"SMTP_ADDR": "localhost:25", "SMTP_USER": "u", "SMTP_PASSWORD": "p"}, ""},
		{map[string]string{"SMTP_ADDR": "localhost"}, "SMTP_ADDR"},
		{map[string]string{"SMTP_FROM": "not an address"}, "SMTP_FROM"},
		{map[string]string{"SMTP_USER": "u", "SMTP_PASSWORD": "p"}, "without SMTP_ADDR"},
		{map[string]string{"SMTP_ADDR": "localhost:25", "SMTP_USER": "u"}, "go together"},
	} {
		for _, k := range []string{"SMTP_ADDR", "SMTP_FROM", "SMTP_USER", "SMTP_PASSWORD"} {
			t.Setenv(k, tc.env[k])
		}
		c := config{}
		err := c.mailFromEnv()
		if tc.fail == "" {
			assert.NoError(t, err, "%v", tc.env)
		} else {
			assert.ErrorContains(t, err, tc.fail, "%v", tc.env)
		}
	}
}
