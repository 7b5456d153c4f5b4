package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"strings"
	"time"

	"github.com/rtkit/rtkit/tasks"
)

// config is the app's configuration, from the environment.
type config struct {
	Addr     string   // ADDR, default ":8080"
	RedisURL string   // REDIS_URL; empty: everything in memory
	Prefix   string   // REDIS_PREFIX: starts every Redis key, default "chat:"
	Secret   []byte   // CHAT_SECRET signs session tokens; required with REDIS_URL
	Rooms    []string // CHAT_ROOMS, comma-separated; default general,random,help
	Origins  []string // CHAT_ORIGINS: extra origins allowed to open WebSockets
	// StatsEvery is how often each replica publishes its dashboard
	// counters (CHAT_STATS_EVERY, default 2s).
	StatsEvery time.Duration

	// Mail to users mentioned while offline.
	SMTPAddr     string // SMTP_ADDR, host:port; empty: mails are logged and kept on /outbox
	SMTPFrom     string // SMTP_FROM, default "chat@localhost"
	SMTPUser     string // SMTP_USER: PLAIN auth, over TLS (or to a loopback server) only
	SMTPPassword secret // SMTP_PASSWORD, required with SMTP_USER
	// MailAttempts and MailRetry bound the retries of a mail that could
	// not be delivered (default 8 attempts, 1s doubling up to 1m); tests
	// shorten them.
	MailAttempts int
	MailRetry    tasks.Backoff
}

// secret is a string that never shows in logs or formatted output.
type secret string

func (secret) String() string       { return "[redacted]" }
func (secret) GoString() string     { return "[redacted]" }
func (secret) LogValue() slog.Value { return slog.StringValue("[redacted]") }

func configFromEnv() (config, error) {
	c := config{
		Addr:     envOr("ADDR", ":8080"),
		RedisURL: os.Getenv("REDIS_URL"),
		Prefix:   envOr("REDIS_PREFIX", "chat:"),
		Secret:   []byte(os.Getenv("CHAT_SECRET")),
		Rooms:    splitList(envOr("CHAT_ROOMS", "general,random,help")),
		Origins:  splitList(os.Getenv("CHAT_ORIGINS")),
	}
	every, err := time.ParseDuration(envOr("CHAT_STATS_EVERY", "2s"))
	if err != nil || every <= 0 {
		return c, errors.New("CHAT_STATS_EVERY must be a positive duration, e.g. 2s")
	}
	c.StatsEvery = every
	if err := c.mailFromEnv(); err != nil {
		return c, err
	}
	if len(c.Secret) == 0 {
		if c.RedisURL != "" {
			return c, errors.New("CHAT_SECRET must be set with REDIS_URL, the same on every replica")
		}
		c.Secret = make([]byte, 32)
		_, _ = rand.Read(c.Secret)
	}
	return c, nil
}

func (c *config) mailFromEnv() error {
	c.SMTPAddr = os.Getenv("SMTP_ADDR")
	c.SMTPFrom = envOr("SMTP_FROM", "chat@localhost")
	c.SMTPUser, c.SMTPPassword = os.Getenv("SMTP_USER"), secret(os.Getenv("SMTP_PASSWORD"))
	if c.SMTPAddr != "" {
		if host, port, err := net.SplitHostPort(c.SMTPAddr); err != nil || host == "" || port == "" {
			return errors.New("SMTP_ADDR must be host:port, e.g. smtp.example.com:587")
		}
	}
	if _, err := mail.ParseAddress(c.SMTPFrom); err != nil {
		return fmt.Errorf("SMTP_FROM must be an address such as chat@example.com or \"Chat <chat@example.com>\": %w", err)
	}
	switch {
	case c.SMTPUser != "" && c.SMTPAddr == "":
		return errors.New("SMTP_USER is set without SMTP_ADDR")
	case (c.SMTPUser == "") != (c.SMTPPassword == ""):
		return errors.New("SMTP_USER and SMTP_PASSWORD go together")
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
