package main

import (
	"context"
	"encoding/base64"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rtkit/rtkit/realtime"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestRegistrationAndSignIn(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	_, base := startAppWith(t, testConfig(), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))

	var info sessionInfo
	resp := post(t, base, "/api/register", "", map[string]string{"handle": "Ana", "name": "Ana María", "email": "ana@example.com", "password": "correct horse"}, &info)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, sessionInfo{Handle: "ana", Name: "Ana María", Email: "ana@example.com", Role: roleAdmin, TTL: 3600, Expires: info.Expires}, info, "the first user is admin")
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			assert.True(t, c.HttpOnly)
			assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
		}
	}
	resp = post(t, base, "/api/register", "", map[string]string{"handle": "zoe", "name": "Zoë", "email": "zoe@example.com", "password": "another one"}, &info)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	assert.Equal(t, roleMember, info.Role)

	// Form errors name the field and the rule.
	for _, tc := range []struct {
		body  map[string]string
		code  int
		field string
		says  string
	}{
		{map[string]string{"handle": "ana", "name": "Other Ana", "email": "a2@example.com", "password": "12345678"}, http.StatusConflict, "handle", "taken"},
		{map[string]string{"handle": "a b", "name": "X", "email": "x@example.com", "password": "12345678"}, http.StatusBadRequest, "handle", "lowercase letters"},
		{map[string]string{"handle": "xy", "name": "X", "email": "x@example.com", "password": "12345678"}, http.StatusBadRequest, "handle", "3 to 24"},
		{map[string]string{"handle": "xyz", "name": "123", "email": "x@example.com", "password": "12345678"}, http.StatusBadRequest, "name", "letter"},
		{map[string]string{"handle": "xyz", "name": "X", "email": "nope", "password": "12345678"}, http.StatusBadRequest, "email", "ana@example.com"},
		{map[string]string{"handle": "xyz", "name": "X", "email": "x@example.com", "password": "short"}, http.StatusBadRequest, "password", "8 to 72"},
	} {
		var e apiError
		resp := post(t, base, "/api/register", "", tc.body, &e)
		assert.Equal(t, tc.code, resp.StatusCode, "%v", tc.body)
		assert.Equal(t, tc.field, e.Field, "%v", tc.body)
		assert.Contains(t, e.Error, tc.says, "%v", tc.body)
	}

	// Sign-in: a wrong password or handle is refused alike.
	var e apiError
	resp = post(t, base, "/api/login", "", map[string]string{"handle": "ana", "password": "wrong horse"}, &e)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.Equal(t, "wrong handle or password", e.Error)
	assert.Empty(t, sessionToken(resp))
	resp = post(t, base, "/api/login", "", map[string]string{"handle": "nobody", "password": "wrong horse"}, &e)
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	resp = post(t, base, "/api/login", "", map[string]string{"handle": "@Ana", "password": "correct horse"}, &info)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tok := sessionToken(resp)
	status, body := get(t, base, "/api/session", tok)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `"name":"Ana María"`)

	// Refresh hands out a new token; sign-out forgets the cookie.
	resp = post(t, base, "/api/refresh", tok, nil, nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.NotEmpty(t, sessionToken(resp))
	resp = post(t, base, "/api/logout", tok, nil, nil)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	for _, c := range resp.Cookies() {
		assert.True(t, c.MaxAge < 0, "the cookie is deleted")
	}

	for _, pw := range []string{"correct horse", "another one", "wrong horse"} {
		assert.NotContains(t, logs.String(), pw, "passwords are never logged")
	}
}

func TestBadTokensAreRefused(t *testing.T) {
	t.Parallel()
	a, base := startAppWith(t, testConfig(), slog.New(slog.DiscardHandler))
	good := register(t, base, "ana")
	expired, _ := a.signToken("ana", time.Now().Add(-2*time.Hour))
	parts := strings.Split(good, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"ana"`, `"bob"`, 1))) + "." + parts[2]
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, jwt.MapClaims{"sub": "ana", "exp": time.Now().Add(time.Hour).Unix()}).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	otherKey, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "ana", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte("other"))
	require.NoError(t, err)

	for name, tok := range map[string]string{"missing": "", "expired": expired, "tampered": tampered, "alg none": none, "other key": otherKey, "garbage": "x.y.z"} {
		status, _ := get(t, base, "/api/session", tok)
		assert.Equal(t, http.StatusUnauthorized, status, "session, %s token", name)
		status, _ = get(t, base, "/ws", tok)
		assert.Equal(t, http.StatusUnauthorized, status, "WebSocket, %s token", name)
		status, _ = get(t, base, "/events?topic=general", tok)
		assert.Equal(t, http.StatusUnauthorized, status, "SSE, %s token", name)
		status, _ = get(t, base, "/outbox", tok)
		assert.Equal(t, http.StatusUnauthorized, status, "outbox, %s token", name)
		h := http.Header{}
		h.Set("Cookie", sessionCookie+"="+tok)
		_, err := realtime.Dial(context.Background(), base+"/ws", realtime.DialOptions{HTTPHeader: h, NoReconnect: true})
		assert.Error(t, err, "WebSocket dial, %s token", name)
	}
	status, _ := get(t, base, "/api/session", good)
	assert.Equal(t, http.StatusOK, status)
}

func TestOutboxIsForAdmins(t *testing.T) {
	t.Parallel()
	base := startApp(t, testConfig())
	admin := register(t, base, "ana") // the first user
	member := register(t, base, "bob")
	status, _ := get(t, base, "/outbox", member)
	assert.Equal(t, http.StatusForbidden, status)
	status, _ = get(t, base, "/outbox", admin)
	assert.Equal(t, http.StatusOK, status)
	// So is the task inspector, reading included: tasks name users.
	status, body := get(t, base, "/admin/tasks/", member)
	assert.Equal(t, http.StatusForbidden, status)
	assert.Contains(t, body, "the task inspector is for the chat's admins", "a reason for people, not for developers")
	status, body = get(t, base, "/admin/tasks/", "")
	assert.Equal(t, http.StatusUnauthorized, status)
	assert.Contains(t, body, "sign in to the chat first")
	status, page := get(t, base, "/admin/tasks/", admin)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, page, "<title>Tasks</title>")
	// Members' dashboards have no task feed.
	status, _ = get(t, base, "/events?topic="+taskFeedTopic, member)
	assert.Equal(t, http.StatusForbidden, status)
	// Nor other users' messages: members get the counters only.
	ac := dial(t, base, admin)
	enter(t, ac, "general")
	say(t, ac, "general", "secret plans")
	status, body = get(t, base, "/api/dashboard", member)
	assert.Equal(t, http.StatusOK, status)
	assert.Contains(t, body, `"tasks":[]`)
	assert.Contains(t, body, `"activity":[]`)
	assert.NotContains(t, body, "secret plans")
	assert.Contains(t, body, `"admin":false`)
	_, body = get(t, base, "/api/dashboard", admin)
	assert.Contains(t, body, "secret plans", "admins see the public rooms' activity")
	c := dial(t, base, member)
	assert.Equal(t, realtime.CodeForbidden, callErr(t, c, "admin.users", map[string]string{}))
	assert.Equal(t, realtime.CodeForbidden, callErr(t, c, "room.create", map[string]string{"name": "mine"}))
}

func TestSignInIsRateLimited(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.AuthRate, cfg.AuthBurst = 0.001, 5
	base := startApp(t, cfg)
	for i := range 5 {
		resp := post(t, base, "/api/login", "", map[string]string{"handle": "ana", "password": "guess"}, nil)
		require.Equal(t, http.StatusUnauthorized, resp.StatusCode, "attempt %d", i+1)
	}
	var e apiError
	resp := post(t, base, "/api/login", "", map[string]string{"handle": "ana", "password": "guess"}, &e)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Contains(t, e.Error, "too many attempts")
	resp = post(t, base, "/api/register", "", map[string]string{"handle": "ana", "name": "Ana", "email": "a@example.com", "password": "12345678"}, nil)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, "registration shares the limit")
}

// A WebSocket ends when its token expires; the client reconnects with
// whatever session it has (here the same, now expired: refused).
func TestExpiringTokenEndsTheConnection(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.SessionTTL = 2 * time.Second
	base := startApp(t, cfg)
	tok := register(t, base, "ana")
	c := dial(t, base, tok)
	enter(t, c, "general")

	// An SSE stream ends too.
	req, err := http.NewRequest(http.MethodGet, base+"/events?topic=general", nil)
	require.NoError(t, err)
	req.AddCookie(&http.Cookie{Name: sessionCookie, Value: tok})
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	_, err = io.Copy(io.Discard, resp.Body) // returns when the stream ends
	require.NoError(t, err)
	resp.Body.Close()

	timeout := time.After(15 * time.Second)
	for {
		select {
		case e := <-c.Events():
			if e.Op == "disconnected" {
				status, _ := get(t, base, "/api/session", tok)
				assert.Equal(t, http.StatusUnauthorized, status)
				return
			}
		case <-timeout:
			t.Fatal("the connection outlived its token")
		}
	}
}
