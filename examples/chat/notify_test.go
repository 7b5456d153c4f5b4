package main

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
	"github.com/rtkit/rtkit/realtime"
	"github.com/rtkit/rtkit/tasks"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// online makes c's user online, as the page does: it joins the user's
// notification topic.
func online(t *testing.T, c *realtime.Client, handle string) {
	t.Helper()
	_, err := c.Join(context.Background(), "user:"+handle, realtime.JoinOptions{})
	require.NoError(t, err)
}

func TestMentionedHandles(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"hi @bob", []string{"bob"}},
		{"@bob, @Carol: @bob!", []string{"bob", "carol"}},
		{"(@a_b-c) @xyz.", []string{"a_b-c", "xyz"}},
		{"mail bob@example.com or @@bob", nil},
		{"@" + strings.Repeat("n", 25), nil}, // too long for a handle
		{"@ab is too short", nil},
		{"no mention", nil},
	} {
		assert.Equal(t, tc.want, mentionedHandles(tc.text), tc.text)
	}
}

// Mentions and DMs of an offline user within the batch window make one
// mail, with links; online, oneself, unknown and non-member mentions mail
// nobody.
func TestNotificationsMailOfflineUsersInOneBatch(t *testing.T) {
	t.Parallel()
	sink := startSMTP(t, "127.0.0.1:0", nil)
	cfg := mailConfig(sink.addr)
	cfg.PublicURL = "https://chat.example"
	a, base := startAppWith(t, cfg, slog.New(slog.DiscardHandler))
	ana := dial(t, base, register(t, base, "ana"))
	register(t, base, "bob") // offline
	carol := dial(t, base, register(t, base, "carol"))
	online(t, carol, "carol")
	enter(t, ana, "general")

	say(t, ana, "general", "hey @carol, @ana, @nobody and bob@example.com")
	say(t, ana, "general", "hi @bob <b>&</b>\nping @bob")
	var dm struct{ Room string }
	call(t, ana, "dm.open", map[string]string{"user": "bob"}, &dm)
	say(t, ana, dm.Room, "and a word in private")

	m := sink.waitMails(t, 1)[0]
	assert.Equal(t, []string{"bob@example.com"}, m.To)
	msg, body := parseMail(t, m.Data)
	assert.Equal(t, "2 new messages for you in the chat", msg.Header.Get("Subject"))
	assert.Contains(t, body, "@ana mentioned you in #general")
	assert.Contains(t, body, "> hi @bob <b>&</b>\r\n> ping @bob\r\n")
	assert.Contains(t, body, "https://chat.example/#room=general&msg=")
	assert.Contains(t, body, "@ana sent you a direct message")
	assert.Contains(t, body, "https://chat.example/#dm=ana&msg=")
	waitTasks(t, a, tasks.Succeeded, 2) // the digest and its mail
	assert.Len(t, sink.received(), 1)

	// Opted out: nothing more.
	bob := dial(t, base, register(t, base, "bob2"))
	call(t, bob, "settings", map[string]bool{"noMail": true}, nil)
	require.NoError(t, bob.Close())
	say(t, ana, "general", "@bob2 are you there?")
	pending, err := a.store.Pending(context.Background(), "bob2")
	require.NoError(t, err)
	assert.Empty(t, pending)
}

func TestMailRetriesUntilSMTPIsBack(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t) // nothing listens yet: the first attempts fail
	a, base := startAppWith(t, mailConfig(addr), slog.New(slog.DiscardHandler))
	retrying := make(chan tasks.Event, 100)
	sub, err := a.tasks.Subscribe(context.Background(), func(e tasks.Event) {
		if e.Kind == tasks.EventRetrying && e.Type == mailTask {
			select {
			case retrying <- e:
			default:
			}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })

	alice := dial(t, base, register(t, base, "alice"))
	register(t, base, "bob")
	enter(t, alice, "general")
	say(t, alice, "general", "@bob are you there?")
	e := <-retrying
	assert.Contains(t, e.Error, "connection refused")

	sink := startSMTP(t, addr, nil)
	m := sink.waitMails(t, 1)[0]
	assert.Equal(t, []string{"bob@example.com"}, m.To)
	_, body := parseMail(t, m.Data)
	assert.Contains(t, body, "@bob are you there?")
	done := waitTasks(t, a, tasks.Succeeded, 2)
	for _, d := range done {
		if d.Type == mailTask {
			assert.Greater(t, d.Attempt, 1)
		}
	}
	assert.Len(t, sink.received(), 1, "delivered exactly once")
}

func TestMailRefusedIsNotRetried(t *testing.T) {
	t.Parallel()
	sink := startSMTP(t, "127.0.0.1:0", func(s *smtpSink) {
		s.rcptErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	})
	a, base := startAppWith(t, mailConfig(sink.addr), slog.New(slog.DiscardHandler))
	alice := dial(t, base, register(t, base, "alice"))
	register(t, base, "bob")
	enter(t, alice, "general")
	say(t, alice, "general", "@bob hello")
	dead := waitTasks(t, a, tasks.Dead, 1)
	assert.Equal(t, 1, dead[0].Attempt, "a 5xx reply is final")
	assert.Contains(t, dead[0].LastError, "no such mailbox")
	assert.Equal(t, "the mail server replied 550", redact(dead[0].LastError))
	assert.Empty(t, sink.received())
}

func TestMailAuthenticates(t *testing.T) {
	t.Parallel()
	sink := startSMTP(t, "127.0.0.1:0", func(s *smtpSink) { s.user, s.password = "mailer", "s3cret-pw" })
	cfg := mailConfig(sink.addr)
	cfg.SMTPUser, cfg.SMTPPassword, cfg.SMTPFrom = "mailer", "s3cret-pw", "Chat <chat@chat.example>"
	var logs syncBuffer
	a, base := startAppWith(t, cfg, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	a.log.Info("configured", "config", cfg) // as a careless caller might

	alice := dial(t, base, register(t, base, "alice"))
	register(t, base, "bob")
	enter(t, alice, "general")
	say(t, alice, "general", "@bob hello")
	m := sink.waitMails(t, 1)[0]
	assert.Equal(t, "mailer", m.User)
	assert.Equal(t, "chat@chat.example", m.From)
	msg, _ := parseMail(t, m.Data)
	assert.Equal(t, `"Chat" <chat@chat.example>`, msg.Header.Get("From"))
	assert.Equal(t, "@alice mentioned you in #general", msg.Header.Get("Subject"))
	assert.Regexp(t, `@chat\.example>$`, msg.Header.Get("Message-ID"))
	waitTasks(t, a, tasks.Succeeded, 2)
	assert.Contains(t, logs.String(), "mail sent")
	assert.NotContains(t, logs.String(), "s3cret-pw", "the password is never logged")
}

func TestOutboxWithoutSMTP(t *testing.T) {
	t.Parallel()
	a, base := startAppWith(t, testConfig(), slog.New(slog.DiscardHandler))
	token := register(t, base, "alice")
	register(t, base, "bob")
	alice := dial(t, base, token)
	enter(t, alice, "general")
	say(t, alice, "general", `@bob look: <script>alert("x")</script>`)
	waitTasks(t, a, tasks.Succeeded, 2)

	status, page := get(t, base, "/outbox", token)
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, page, "bob@example.com")
	assert.Contains(t, page, "@alice mentioned you in #general")
	assert.Contains(t, page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	assert.NotContains(t, page, "<script>alert", "mail text is escaped")
}
