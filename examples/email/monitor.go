package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/mail"
	"slices"
	"strconv"
	"time"

	"github.com/rtkit/rtkit/tasks"
)

// The JSON API behind /tasks (the live part comes over /events), and the
// configuration.

// listTasks answers the counts per queue and state, and the latest tasks
// of each, for the page to start from.
func (a *app) listTasks(w http.ResponseWriter, r *http.Request) {
	counts, err := a.runner.Counts(r.Context())
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	list := []*tasks.Task{}
	for _, q := range []string{"welcome", "digest"} {
		for _, s := range tasks.States {
			page, err := a.runner.List(r.Context(), tasks.ListOptions{Queue: q, State: s, Limit: 20})
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
				return
			}
			list = append(list, page.Tasks...)
		}
	}
	slices.SortFunc(list, func(x, y *tasks.Task) int { return -x.EnqueuedAt.Compare(y.EnqueuedAt) })
	writeJSON(w, http.StatusOK, map[string]any{"node": a.runner.Node(), "counts": counts, "tasks": list})
}

func (a *app) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := a.runner.Get(r.Context(), r.PathValue("id"))
	a.answerTask(w, t, err)
}

// retryTask gives a dead task (or a waiting one) a new start now.
func (a *app) retryTask(w http.ResponseWriter, r *http.Request) {
	t, err := a.runner.Retry(r.Context(), r.PathValue("id"))
	a.answerTask(w, t, err)
}

func (a *app) answerTask(w http.ResponseWriter, t *tasks.Task, err error) {
	switch {
	case errors.Is(err, tasks.ErrNotFound):
		http.Error(w, "no such task", http.StatusNotFound)
	case errors.Is(err, tasks.ErrBadState):
		http.Error(w, err.Error(), http.StatusConflict)
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	default:
		writeJSON(w, http.StatusOK, t)
	}
}

func decodeJSON(r *http.Request, v any) error {
	return json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096)).Decode(v)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// validAddress accepts a bare address ("ada@example.com", no display
// name), so that nothing but an address reaches a mail header.
func validAddress(s string) bool {
	a, err := mail.ParseAddress(s)
	return err == nil && a.Address == s && len(s) <= 254
}

// config is read from the environment (see README.md).
type config struct {
	Addr        string        // ADDR: listen address
	RedisURL    string        // REDIS_URL: share tasks with other processes
	RedisPrefix string        // REDIS_PREFIX: starts every Redis key
	SMTPAddr    string        // SMTP_ADDR: host:port of the SMTP server; unset: log the mails
	From        string        // MAIL_FROM: sender, and the digest's recipient
	Attempts    int           // MAIL_ATTEMPTS: attempts of a welcome mail before it is dead
	Backoff     time.Duration // MAIL_BACKOFF: wait before the first retry; doubles each time
	DigestEvery time.Duration // DIGEST_EVERY: how often the digest is mailed
	Workers     int           // WORKERS: tasks this process runs at once
}

func loadConfig(getenv func(string) string) (config, error) {
	or := func(k, def string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return def
	}
	c := config{Addr: or("ADDR", "127.0.0.1:8080"), RedisURL: getenv("REDIS_URL"), RedisPrefix: or("REDIS_PREFIX", "email:"),
		SMTPAddr: getenv("SMTP_ADDR"), From: or("MAIL_FROM", "team@example.com")}
	var errs []error
	num := func(k, def string) int {
		n, err := strconv.Atoi(or(k, def))
		if err != nil || n < 1 {
			errs = append(errs, errors.New(k+" must be a whole number ≥ 1"))
		}
		return n
	}
	dur := func(k, def string) time.Duration {
		d, err := time.ParseDuration(or(k, def))
		if err != nil || d <= 0 {
			errs = append(errs, errors.New(k+` must be a positive duration such as "2s"`))
		}
		return d
	}
	c.Attempts, c.Workers = num("MAIL_ATTEMPTS", "4"), num("WORKERS", "4")
	c.Backoff, c.DigestEvery = dur("MAIL_BACKOFF", "2s"), dur("DIGEST_EVERY", "1m")
	if !validAddress(c.From) {
		errs = append(errs, errors.New("MAIL_FROM must be a bare address such as team@example.com"))
	}
	return c, errors.Join(errs...)
}
