package main

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A wrong REDIS_URL or a Redis that does not answer stops the app at
// start with a clear error (main exits with status 1).
func TestBadRedisIsAnErrorAtStart(t *testing.T) {
	t.Parallel()
	for url, says := range map[string]string{
		"xx://127.0.0.1:6379":  "is not a Redis URL",
		"redis://127.0.0.1:1/": "does not answer",
	} {
		cfg := testConfig()
		cfg.RedisURL = url
		_, err := newApp(cfg, slog.New(slog.DiscardHandler))
		require.Error(t, err, url)
		assert.Contains(t, err.Error(), says, url)
	}
}

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		fail string
	}{
		{map[string]string{}, ""},
		{map[string]string{"CHAT_SESSION_TTL": "30m", "CHAT_HISTORY": "500", "CHAT_MAIL_BATCH": "5m", "CHAT_ADMINS": "ana, bob"}, ""},
		{map[string]string{"CHAT_SESSION_TTL": "soon"}, "CHAT_SESSION_TTL"},
		{map[string]string{"CHAT_SESSION_TTL": "10s"}, "at least 1m"},
		{map[string]string{"CHAT_HISTORY": "10"}, "CHAT_HISTORY"},
		{map[string]string{"CHAT_ROOMS": "general,Bad Room"}, "CHAT_ROOMS"},
		{map[string]string{"REDIS_URL": "redis://127.0.0.1:6379"}, "CHAT_SECRET must be set"},
	} {
		for _, k := range []string{"CHAT_SESSION_TTL", "CHAT_HISTORY", "CHAT_MAIL_BATCH", "CHAT_ADMINS", "CHAT_ROOMS", "REDIS_URL", "CHAT_SECRET"} {
			t.Setenv(k, tc.env[k])
		}
		c, err := configFromEnv()
		if tc.fail != "" {
			assert.ErrorContains(t, err, tc.fail, "%v", tc.env)
			continue
		}
		require.NoError(t, err, "%v", tc.env)
		if tc.env["CHAT_ADMINS"] != "" {
			assert.Equal(t, []string{"ana", "bob"}, c.Admins)
			assert.Equal(t, 30*time.Minute, c.SessionTTL)
			assert.Equal(t, 500, c.History)
		} else {
			assert.True(t, c.SecretGenerated, "no CHAT_SECRET: a random one")
			assert.Len(t, c.Secret, 32)
		}
	}
}

// Session tokens come from cookies and headers: anything at all must be
// refused (not panic) unless it is a token the app signed.
func FuzzParseToken(f *testing.F) {
	a := &app{cfg: config{Secret: []byte("fuzz"), SessionTTL: time.Hour}}
	good, _ := a.signToken("ana", time.Now())
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Fuzz(func(t *testing.T, tok string) {
		handle, _, err := a.parseToken(tok)
		if err == nil && (tok != good || handle != "ana") {
			t.Fatalf("accepted %q as %q", tok, handle)
		}
	})
}

// Message text is anyone's: mention parsing takes any string.
func FuzzMentionedHandles(f *testing.F) {
	for _, s := range []string{"hi @bob", "@@x", "a@b.c @ana, @zoë", strings.Repeat("@abc ", 50)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		got := mentionedHandles(text)
		if len(got) > maxMentions {
			t.Fatalf("%d mentions", len(got))
		}
		for _, h := range got {
			if !validHandle.MatchString(h) {
				t.Fatalf("invalid handle %q", h)
			}
		}
	})
}
