package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/realtime"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/time/rate"
)

// Accounts and sessions.
//
// A session is a JWT (HS256, signed with CHAT_SECRET) whose subject is
// the user's handle, in a cookie that is:
//
//   - HttpOnly: the page's scripts never see the token, so a script that
//     slipped into the page could not steal it;
//   - SameSite=Strict: the browser sends it only with requests that start
//     on this site, so another site can neither post to /api/... nor open
//     the WebSocket as the user (the hub checks the Origin as well);
//   - Secure when served over TLS.
//
// The browser sends it with every request, the WebSocket upgrade and
// EventSource included, so a reload keeps the session and the dashboard
// opens signed in. Other clients may send the token as
// "Authorization: Bearer <token>" instead. Pages refresh the token before
// it expires (POST /api/refresh); a WebSocket or SSE stream ends when the
// token it was opened with expires, and the client reconnects with the
// fresh cookie.

const sessionCookie = "chat_session"

var (
	validHandle = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{2,23}$`)
	errSession  = errors.New("chat: invalid or expired session")
)

const (
	handleRule   = "a handle is 3 to 24 characters: lowercase letters a-z, digits, _ or -, starting with a letter or digit"
	nameRule     = "a display name is 1 to 40 characters, with at least one letter"
	passwordRule = "a password is 8 to 72 bytes"
)

type claims struct {
	jwt.RegisteredClaims
}

func (a *app) signToken(handle string, now time.Time) (string, time.Time) {
	exp := now.Add(a.cfg.SessionTTL)
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims{jwt.RegisteredClaims{
		Subject: handle, IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp),
	}})
	s, _ := tok.SignedString(a.cfg.Secret) // HMAC signing does not fail
	return s, exp
}

// parseToken returns the handle and expiry of a valid, unexpired token.
func (a *app) parseToken(s string) (string, time.Time, error) {
	var c claims
	_, err := jwt.ParseWithClaims(s, &c, func(*jwt.Token) (any, error) { return a.cfg.Secret, nil },
		jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithIssuedAt())
	if err != nil || !validHandle.MatchString(c.Subject) {
		return "", time.Time{}, errSession
	}
	return c.Subject, c.ExpiresAt.Time, nil
}

// requestToken is the session token of r: the cookie, or a bearer token.
func requestToken(r *http.Request) string {
	if c, err := r.Cookie(sessionCookie); err == nil {
		return c.Value
	}
	if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return tok
	}
	return ""
}

// session returns the signed-in user of r and when the session expires.
// A banned user has no session.
func (a *app) session(r *http.Request) (user, time.Time, error) {
	handle, exp, err := a.parseToken(requestToken(r))
	if err != nil {
		return user{}, time.Time{}, err
	}
	u, err := a.profile(r.Context(), handle)
	if err != nil || u.Banned {
		return user{}, time.Time{}, errSession
	}
	return u, exp, nil
}

// profile reads a user through the cache (every WebSocket, SSE stream and
// API request looks its user up); writes invalidate the "user:<handle>"
// tag.
func (a *app) profile(ctx context.Context, handle string) (user, error) {
	return cache.GetOrLoad(ctx, a.cache, "user:"+handle, func(ctx context.Context) (user, error) {
		u, err := a.store.User(ctx, handle)
		if errors.Is(err, errNotFound) {
			return u, cache.ErrNotFound
		}
		return u, err
	}, cache.TTL(5*time.Minute), cache.Tags("user:"+handle))
}

func (a *app) putUser(ctx context.Context, u user) error {
	if err := a.store.PutUser(ctx, u); err != nil {
		return err
	}
	return a.cache.InvalidateTags(ctx, "user:"+u.Handle)
}

func (a *app) setCookie(w http.ResponseWriter, r *http.Request, handle string) time.Time {
	tok, exp := a.signToken(handle, time.Now())
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", Expires: exp, MaxAge: int(a.cfg.SessionTTL.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	return exp
}

// apiError is the body of every failed API request: a message for people
// and, for form errors, the field it is about.
type apiError struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

func fail(w http.ResponseWriter, status int, field, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(apiError{Error: msg, Field: field})
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(v); err != nil {
		fail(w, http.StatusBadRequest, "", "send a JSON object")
		return false
	}
	return true
}

// sessionInfo is what the page learns about its session.
type sessionInfo struct {
	Handle  string    `json:"handle"`
	Name    string    `json:"name"`
	Email   string    `json:"email"`
	Role    string    `json:"role"`
	NoMail  bool      `json:"noMail"`
	Expires time.Time `json:"expires"`
	TTL     int       `json:"ttl"` // seconds
}

func (a *app) info(u user, exp time.Time) sessionInfo {
	return sessionInfo{Handle: u.Handle, Name: u.Name, Email: u.Email, Role: u.Role, NoMail: u.NoMail, Expires: exp, TTL: int(a.cfg.SessionTTL.Seconds())}
}

func validName(name string) bool {
	n := utf8.RuneCountInString(name)
	if n < 1 || n > 40 || !utf8.ValidString(name) {
		return false
	}
	letter := false
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return false
		}
		letter = letter || unicode.IsLetter(r)
	}
	return letter
}

// register: POST /api/register {handle, name, email, password}.
func (a *app) register(w http.ResponseWriter, r *http.Request) {
	if !a.limiter.allow(r) {
		fail(w, http.StatusTooManyRequests, "", "too many attempts from your address; wait a minute")
		return
	}
	var req struct{ Handle, Name, Email, Password string }
	if !decode(w, r, &req) {
		return
	}
	req.Handle, req.Name, req.Email = strings.ToLower(strings.TrimSpace(req.Handle)), strings.TrimSpace(req.Name), strings.TrimSpace(req.Email)
	addr, err := mail.ParseAddress(req.Email)
	switch {
	case !validHandle.MatchString(req.Handle):
		fail(w, http.StatusBadRequest, "handle", handleRule)
		return
	case !validName(req.Name):
		fail(w, http.StatusBadRequest, "name", nameRule)
		return
	case err != nil || addr.Address != req.Email || len(req.Email) > 254:
		fail(w, http.StatusBadRequest, "email", "an email address looks like ana@example.com")
		return
	case len(req.Password) < 8 || len(req.Password) > 72:
		fail(w, http.StatusBadRequest, "password", passwordRule)
		return
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(req.Password), a.cfg.BcryptCost)
	if err != nil {
		fail(w, http.StatusInternalServerError, "", "could not register; try again")
		return
	}
	u := user{Handle: req.Handle, Name: req.Name, Email: req.Email, Hash: hash, Role: roleMember, Created: time.Now().UTC()}
	if slices.Contains(a.cfg.Admins, u.Handle) {
		u.Role = roleAdmin
	}
	first, err := a.store.CreateUser(r.Context(), u)
	switch {
	case errors.Is(err, errTaken):
		fail(w, http.StatusConflict, "handle", "the handle @"+u.Handle+" is taken; pick another")
		return
	case err != nil:
		a.log.Error("register", "handle", u.Handle, "err", err)
		fail(w, http.StatusServiceUnavailable, "", "could not register; try again")
		return
	}
	if first && u.Role != roleAdmin {
		u.Role = roleAdmin // the first user runs the place
		if err := a.putUser(r.Context(), u); err != nil {
			a.log.Error("register: making the first user admin", "err", err)
		}
	}
	_ = a.cache.InvalidateTags(r.Context(), "user:"+u.Handle, "users") // a negative entry may be cached
	a.log.Info("user registered", "handle", u.Handle, "role", u.Role)
	exp := a.setCookie(w, r, u.Handle)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(a.info(u, exp))
}

// login: POST /api/login {handle, password}.
func (a *app) login(w http.ResponseWriter, r *http.Request) {
	if !a.limiter.allow(r) {
		fail(w, http.StatusTooManyRequests, "", "too many attempts from your address; wait a minute")
		return
	}
	var req struct{ Handle, Password string }
	if !decode(w, r, &req) {
		return
	}
	handle := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(req.Handle, "@")))
	u, err := a.store.User(r.Context(), handle)
	if err != nil && !errors.Is(err, errNotFound) {
		a.log.Error("login", "handle", handle, "err", err)
		fail(w, http.StatusServiceUnavailable, "", "could not sign in; try again")
		return
	}
	hash := u.Hash
	if err != nil {
		hash = a.dummyHash // a wrong handle takes as long as a wrong password
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(req.Password)) != nil || err != nil {
		fail(w, http.StatusUnauthorized, "password", "wrong handle or password")
		return
	}
	if u.Banned {
		fail(w, http.StatusForbidden, "", "this account is banned")
		return
	}
	exp := a.setCookie(w, r, u.Handle)
	writeJSON(w, a.info(u, exp))
}

// sessionHandler: GET /api/session, the signed-in user or 401.
func (a *app) sessionHandler(w http.ResponseWriter, r *http.Request) {
	u, exp, err := a.session(r)
	if err != nil {
		fail(w, http.StatusUnauthorized, "", "not signed in")
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, a.info(u, exp))
}

// refresh: POST /api/refresh, a new token for a valid session.
func (a *app) refresh(w http.ResponseWriter, r *http.Request) {
	u, _, err := a.session(r)
	if err != nil {
		fail(w, http.StatusUnauthorized, "", "not signed in")
		return
	}
	writeJSON(w, a.info(u, a.setCookie(w, r, u.Handle)))
}

// logout: POST /api/logout forgets the cookie.
func (a *app) logout(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
}

// authenticate is the hub's hook: the WebSocket upgrade carries the
// cookie. The connection ends when its token expires (see expireConns).
func (a *app) authenticate(r *http.Request) (realtime.Identity, error) {
	u, exp, err := a.session(r)
	if err != nil {
		return realtime.Identity{}, err
	}
	if h, ok := r.Context().Value(expiryKey{}).(*connExpiry); ok {
		h.at = exp
	}
	return realtime.Identity{User: u.Handle, Meta: map[string]string{"name": u.Name}}, nil
}

// The hub has no hook to end a connection when its credentials expire
// (the SSE broker has Options.Expires), so the app wraps the upgrade's
// ResponseWriter: Authenticate records the token's expiry, and the
// hijacked connection is closed then. The client sees the connection drop,
// reconnects with the refreshed cookie (or is refused, and the page asks
// to sign in again), and rejoins its rooms without losing a message.
type expiryKey struct{}

type connExpiry struct{ at time.Time }

type expiringWriter struct {
	http.ResponseWriter
	exp *connExpiry
}

func (w expiringWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("chat: connection cannot be hijacked")
	}
	conn, brw, err := hj.Hijack()
	if err != nil || w.exp.at.IsZero() {
		return conn, brw, err
	}
	ec := &expiringConn{Conn: conn}
	ec.timer = time.AfterFunc(time.Until(w.exp.at), func() { _ = conn.Close() })
	return ec, brw, nil
}

type expiringConn struct {
	net.Conn
	once  sync.Once
	timer *time.Timer
}

func (c *expiringConn) Close() error {
	c.once.Do(func() { c.timer.Stop() })
	return c.Conn.Close()
}

// expireConns wraps the hub (see connExpiry).
func expireConns(hub http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		exp := &connExpiry{}
		hub.ServeHTTP(expiringWriter{w, exp}, r.WithContext(context.WithValue(r.Context(), expiryKey{}, exp)))
	})
}

// ipLimiter limits requests per client IP address (the connection's: put
// a proxy in front, and this would limit the proxy).
type ipLimiter struct {
	mu    sync.Mutex
	every rate.Limit
	burst int
	ips   map[string]*rate.Limiter
}

func newIPLimiter(every rate.Limit, burst int) *ipLimiter {
	return &ipLimiter{every: every, burst: burst, ips: map[string]*rate.Limiter{}}
}

func (l *ipLimiter) allow(r *http.Request) bool {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.ips[ip]
	if !ok {
		if len(l.ips) > 10000 { // forget everyone rather than grow without bound
			clear(l.ips)
		}
		lim = rate.NewLimiter(l.every, l.burst)
		l.ips[ip] = lim
	}
	return lim.Allow()
}
