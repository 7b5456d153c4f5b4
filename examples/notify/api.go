package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"slices"
	"time"
)

// Who is online, the stored notifications and the preferences over JSON,
// and the configuration.

// streamSSE counts an SSE stream as a connection of its user while it
// lasts (the broker's OnStream: the stream outlives its ServeHTTP call).
func (a *app) streamSSE(r *http.Request) (ended func()) {
	name, err := userParam(r)
	if err != nil {
		return nil
	}
	a.setOnline(name, +1)
	return func() { a.setOnline(name, -1) }
}

func (a *app) setOnline(name string, delta int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	u := a.user(name)
	if u.online += delta; u.online == 0 {
		u.left = time.Now()
	}
}

// user returns the user called name, creating it with every kind and an
// example.com address. a.mu must be held.
func (a *app) user(name string) *user {
	u := a.users[name]
	if u == nil {
		u = &user{prefs: prefs{Kinds: kinds, Email: name + "@example.com"}}
		a.users[name] = u
	}
	return u
}

// listNotifications answers the user's notifications, newest first, with
// the unread count.
func (a *app) listNotifications(w http.ResponseWriter, r *http.Request) {
	name, err := userParam(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	u := a.user(name)
	items := make([]notification, 0, len(u.inbox))
	for _, n := range slices.Backward(u.inbox) {
		items = append(items, *n)
	}
	n := unread(u)
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"unread": n, "items": items})
}

// markRead marks the notifications of {"ids": [...]} read, or all of them
// without ids, and tells the user's open tabs the new unread count.
func (a *app) markRead(w http.ResponseWriter, r *http.Request) {
	name, err := userParam(r)
	var req struct{ IDs []int64 }
	if err == nil {
		err = decodeJSON(r, &req)
	}
	if err != nil {
		http.Error(w, `want ?user=name and {"ids": [1, 2]} (no ids: all)`, http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	u := a.user(name)
	for _, n := range u.inbox {
		if len(req.IDs) == 0 || slices.Contains(req.IDs, n.ID) {
			n.Read = true
		}
	}
	n := unread(u)
	a.mu.Unlock()
	if _, err := a.hub.Publish(r.Context(), topic(name), live{Type: "read", Unread: n}); err != nil {
		a.log.Error("publish", "user", name, "err", err)
	}
	writeJSON(w, http.StatusOK, map[string]int{"unread": n})
}

func (a *app) getPrefs(w http.ResponseWriter, r *http.Request) {
	name, err := userParam(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	a.mu.Lock()
	p := a.user(name).prefs
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, p)
}

// putPrefs replaces the user's preferences: the kinds (a subset of
// kinds) and the address for offline mail ("" for none).
func (a *app) putPrefs(w http.ResponseWriter, r *http.Request) {
	name, err := userParam(r)
	var p prefs
	if err == nil {
		err = decodeJSON(r, &p)
	}
	for _, k := range p.Kinds {
		if !slices.Contains(kinds, k) {
			err = errors.New("unknown kind " + k)
		}
	}
	if addr, perr := mail.ParseAddress(p.Email); p.Email != "" && (perr != nil || addr.Address != p.Email) {
		err = errors.New("email must be a bare address such as ada@example.com, or empty")
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	p.Kinds = slices.Compact(slices.Sorted(slices.Values(p.Kinds)))
	a.mu.Lock()
	a.user(name).prefs = p
	a.mu.Unlock()
	writeJSON(w, http.StatusOK, p)
}

func unread(u *user) int {
	n := 0
	for _, x := range u.inbox {
		if !x.Read {
			n++
		}
	}
	return n
}

// userParam returns the ?user= parameter: 1 to 32 of a-z, 0-9, '-' and '_'.
func userParam(r *http.Request) (string, error) {
	if name := r.URL.Query().Get("user"); validName(name) {
		return name, nil
	}
	return "", errors.New("?user= must be 1 to 32 of a-z, 0-9, - and _")
}

func validName(s string) bool {
	ok := len(s) >= 1 && len(s) <= 32
	for _, c := range s {
		ok = ok && (c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_')
	}
	return ok
}

func decodeJSON(r *http.Request, v any) error {
	return json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096)).Decode(v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// config is read from the environment (see README.md).
type config struct {
	Addr         string        // ADDR: listen address
	SMTPAddr     string        // SMTP_ADDR: host:port of the SMTP server; unset: log the mails
	From         string        // MAIL_FROM: the mails' sender
	Window       time.Duration // BATCH_WINDOW: how long an offline user's notifications gather into one mail
	OfflineAfter time.Duration // OFFLINE_AFTER: how long a user must be away before mail
}

func loadConfig(getenv func(string) string) (config, error) {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	c := config{Addr: or("ADDR", "127.0.0.1:8080"), SMTPAddr: getenv("SMTP_ADDR"), From: or("MAIL_FROM", "notify@example.com")}
	var errs []error
	dur := func(k, def string) time.Duration {
		d, err := time.ParseDuration(or(k, def))
		if err != nil || d < 0 {
			errs = append(errs, errors.New(k+` must be a duration such as "1m"`))
		}
		return d
	}
	c.Window, c.OfflineAfter = dur("BATCH_WINDOW", "1m"), dur("OFFLINE_AFTER", "2m")
	if a, err := mail.ParseAddress(c.From); err != nil || a.Address != c.From {
		errs = append(errs, errors.New("MAIL_FROM must be a bare address such as notify@example.com"))
	}
	return c, errors.Join(errs...)
}
