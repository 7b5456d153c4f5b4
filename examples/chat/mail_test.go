package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"mime"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/rtkit/rtkit/internal/redistest"
	"github.com/rtkit/rtkit/realtime"
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

// say joins room and publishes text there as c.
func say(t *testing.T, c *realtime.Client, room, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Join(ctx, room, realtime.JoinOptions{}); err != nil {
		var re *realtime.Error
		require.ErrorAs(t, err, &re)
		require.Contains(t, re.Message, "already joined")
	}
	_, err := c.Publish(ctx, room, map[string]string{"text": text})
	require.NoError(t, err)
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

// totalTasks counts the store's tasks in every state.
func totalTasks(t *testing.T, a *app) int {
	t.Helper()
	counts, err := a.tasks.Counts(context.Background())
	require.NoError(t, err)
	n := 0
	for _, byState := range counts {
		for _, c := range byState {
			n += c
		}
	}
	return n
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

func TestMentionMailsOfflineUserOnce(t *testing.T) {
	t.Parallel()
	sink := startSMTP(t, "127.0.0.1:0", nil)
	a, base := startAppWith(t, mailConfig(sink.addr), slog.New(slog.DiscardHandler))

	login(t, base, "bob") // known, never connected: offline
	carol := dial(t, base, login(t, base, "carol"))
	say(t, carol, "random", "carol is around") // online, in another room
	alice := dial(t, base, login(t, base, "alice"))

	// Online, oneself, unknown and e-mail-like mentions mail nobody.
	say(t, alice, "general", "hey @carol, @alice, @nobody and bob@example.com")
	// Bob is offline: one mail, however often he is mentioned.
	say(t, alice, "general", "hi @bob <b>&</b>\nping @bob")

	mails := sink.waitMails(t, 1)
	m := mails[0]
	assert.Equal(t, "chat@localhost", m.From)
	assert.Equal(t, []string{"bob@example.com"}, m.To)
	msg, body := parseMail(t, m.Data)
	assert.Equal(t, "<bob@example.com>", msg.Header.Get("To"))
	assert.Equal(t, "<chat@localhost>", msg.Header.Get("From"))
	assert.Equal(t, "alice mentioned you in #general", msg.Header.Get("Subject"))
	assert.Equal(t, "text/plain; charset=utf-8", msg.Header.Get("Content-Type"))
	assert.Equal(t, "1.0", msg.Header.Get("MIME-Version"))
	assert.Regexp(t, `^<[0-9a-f]{32}@localhost>$`, msg.Header.Get("Message-ID"))
	date, err := msg.Header.Date()
	require.NoError(t, err)
	assert.WithinDuration(t, time.Now(), date, time.Minute)
	assert.Contains(t, body, "> hi @bob <b>&</b>\r\n> ping @bob\r\n")
	assert.Contains(t, body, "#general")

	// The task succeeded at its first attempt; the earlier message made
	// none (the mention worker takes messages in order), and no mail
	// follows.
	done := waitTasks(t, a, tasks.Succeeded, 1)
	assert.Equal(t, 1, done[0].Attempt)
	assert.Equal(t, mailTask, done[0].Type)
	assert.Equal(t, 1, totalTasks(t, a))
	assert.Len(t, sink.received(), 1)

	// Addresses are the mailer's business, not other users'.
	var p map[string]any
	require.NoError(t, alice.Call(context.Background(), "user.profile", map[string]string{"name": "bob"}, &p))
	assert.Equal(t, "bob", p["name"])
	assert.NotContains(t, p, "email")
}

func TestMailRetriesUntilSMTPIsBack(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t) // nothing listens yet: the first attempts fail
	a, base := startAppWith(t, mailConfig(addr), slog.New(slog.DiscardHandler))
	retrying := make(chan tasks.Event, 100)
	sub, err := a.tasks.Subscribe(context.Background(), func(e tasks.Event) {
		if e.Kind == tasks.EventRetrying {
			select {
			case retrying <- e:
			default:
			}
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })

	login(t, base, "bob")
	alice := dial(t, base, login(t, base, "alice"))
	say(t, alice, "general", "@bob are you there?")

	select {
	case e := <-retrying:
		assert.Equal(t, mailTask, e.Type)
		assert.Contains(t, e.Error, "connection refused")
	case <-time.After(15 * time.Second):
		t.Fatal("no retrying event")
	}

	// The server comes up at the address: the next attempt delivers.
	sink := startSMTP(t, addr, nil)
	m := sink.waitMails(t, 1)[0]
	assert.Equal(t, []string{"bob@example.com"}, m.To)
	_, body := parseMail(t, m.Data)
	assert.Contains(t, body, "@bob are you there?")
	done := waitTasks(t, a, tasks.Succeeded, 1)
	assert.Greater(t, done[0].Attempt, 1)
	assert.Equal(t, 1, totalTasks(t, a))
	assert.Len(t, sink.received(), 1, "delivered exactly once")
}

// A message delivered twice (say, to a restarted worker) mails once: the
// task is unique per message and recipient while it is pending or
// retrying.
func TestMentionDeliveredTwiceMailsOnce(t *testing.T) {
	t.Parallel()
	a, base := startAppWith(t, mailConfig(freeAddr(t)), slog.New(slog.DiscardHandler)) // SMTP down: the task waits
	login(t, base, "bob")
	id, err := a.hub.Publish(context.Background(), "general", map[string]string{"text": "@bob"})
	require.NoError(t, err)
	m := chatMessage{ID: id, Room: "general", From: "alice", Text: "@bob, twice"}
	a.notify(context.Background(), m)
	a.notify(context.Background(), m)
	assert.Equal(t, 1, totalTasks(t, a))
}

func TestMailRefusedIsNotRetried(t *testing.T) {
	t.Parallel()
	sink := startSMTP(t, "127.0.0.1:0", func(s *smtpSink) {
		s.rcptErr = &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
	})
	a, base := startAppWith(t, mailConfig(sink.addr), slog.New(slog.DiscardHandler))
	login(t, base, "bob")
	say(t, dial(t, base, login(t, base, "alice")), "general", "@bob hello")
	dead := waitTasks(t, a, tasks.Dead, 1)
	assert.Equal(t, 1, dead[0].Attempt, "a 5xx reply is final")
	assert.Contains(t, dead[0].LastError, "no such mailbox")
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

	login(t, base, "bob")
	say(t, dial(t, base, login(t, base, "alice")), "general", "@bob hello")
	m := sink.waitMails(t, 1)[0]
	assert.Equal(t, "mailer", m.User)
	assert.Equal(t, "chat@chat.example", m.From)
	msg, _ := parseMail(t, m.Data)
	assert.Equal(t, `"Chat" <chat@chat.example>`, msg.Header.Get("From"))
	assert.Regexp(t, `@chat\.example>$`, msg.Header.Get("Message-ID"))
	waitTasks(t, a, tasks.Succeeded, 1)
	assert.Contains(t, logs.String(), "mail sent")
	assert.NotContains(t, logs.String(), "s3cret-pw", "the password is never logged")
}

func TestOutboxWithoutSMTP(t *testing.T) {
	t.Parallel()
	a, base := startAppWith(t, testConfig(), slog.New(slog.DiscardHandler))
	token := login(t, base, "alice")
	login(t, base, "bob")
	say(t, dial(t, base, token), "general", `@bob look: <script>alert("x")</script>`)
	waitTasks(t, a, tasks.Succeeded, 1)

	resp, err := http.Get(base + "/outbox?token=" + token)
	require.NoError(t, err)
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")
	assert.Contains(t, string(page), "bob@example.com")
	assert.Contains(t, string(page), "alice mentioned you in #general")
	assert.Contains(t, string(page), "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;")
	assert.NotContains(t, string(page), "<script>alert", "mail text is escaped")

	// Signed-in users only.
	resp, err = http.Get(base + "/outbox")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// Replicas share the task store over Redis: each sees every room message,
// but only the one that accepted it enqueues, so one mention makes one
// mail; and presence on either replica counts as online.
func TestMentionAcrossReplicasMailsOnce(t *testing.T) {
	db := redistest.New(t)
	sink := startSMTP(t, "127.0.0.1:0", nil)
	cfg := mailConfig(sink.addr)
	cfg.RedisURL, cfg.Prefix = os.Getenv("REDIS_URL"), db.Prefix
	if cfg.RedisURL == "" {
		cfg.RedisURL = "redis://" + db.Opts.Addr
	}
	a, baseA := startAppWith(t, cfg, slog.New(slog.DiscardHandler))
	b, baseB := startAppWith(t, cfg, slog.New(slog.DiscardHandler))

	// Each replica knows the users who signed in to it; alice writes on A.
	login(t, baseA, "bob")
	carol := dial(t, baseB, login(t, baseA, "carol")) // online on B
	say(t, carol, "random", "here")
	bobOnB := dial(t, baseB, login(t, baseB, "bob")) // B knows bob too, and sees the messages
	say(t, bobOnB, "random", "brb")
	require.NoError(t, bobOnB.Close())
	require.Eventually(t, func() bool {
		online, err := a.online(context.Background(), "bob")
		return err == nil && !online
	}, 10*time.Second, 10*time.Millisecond)

	alice := dial(t, baseA, login(t, baseA, "alice"))
	say(t, alice, "general", "@carol hi")
	say(t, alice, "general", "@bob hi")
	m := sink.waitMails(t, 1)[0]
	assert.Equal(t, []string{"bob@example.com"}, m.To)
	waitTasks(t, b, tasks.Succeeded, 1) // the store is shared
	assert.Equal(t, 1, totalTasks(t, a))
	assert.Len(t, sink.received(), 1)
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

func TestMentionedNames(t *testing.T) {
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"hi @bob", []string{"bob"}},
		{"@bob, @carol: @bob!", []string{"bob", "carol"}},
		{"(@a_b-c) @x.", []string{"a_b-c", "x"}},
		{"mail bob@example.com or @@bob", nil},
		{"@" + strings.Repeat("n", 33), nil}, // too long for a name
		{"no mention", nil},
		{"@a @b @c @d @e @f @g @h @i @j @k @l", []string{"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}},
	} {
		assert.Equal(t, tc.want, mentionedNames(tc.text), tc.text)
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

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
