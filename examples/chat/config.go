package main

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/rtkit/rtkit/tasks"
	"golang.org/x/time/rate"
)

// config is the app's configuration, from the environment.
type config struct {
	Addr     string   // ADDR, default ":8080"
	RedisURL string   // REDIS_URL; empty: everything in memory
	Prefix   string   // REDIS_PREFIX: starts every Redis key, default "chat:"
	Secret   []byte   // CHAT_SECRET signs session tokens; required with REDIS_URL
	Rooms    []string // CHAT_ROOMS: the public rooms created at the first start; default general,random,help
	Origins  []string // CHAT_ORIGINS: extra origins allowed to open WebSockets
	Admins   []string // CHAT_ADMINS: handles that are admins (besides the first user)
	// PublicURL is where users open the chat (CHAT_PUBLIC_URL, default
	// http://localhost:<port>): mails link there.
	PublicURL string
	// SessionTTL is how long a session token lives (CHAT_SESSION_TTL,
	// default 1h); pages refresh it while open.
	SessionTTL time.Duration
	// History is how many messages a room keeps (CHAT_HISTORY, default
	// 10000), for a year at most.
	History int
	// MailBatch is how long notifications gather before one mail goes
	// (CHAT_MAIL_BATCH, default 2m).
	MailBatch time.Duration
	// BcryptCost hashes passwords (default bcrypt.DefaultCost; tests
	// lower it).
	BcryptCost int
	// AuthRate and AuthBurst limit sign-in and registration attempts per
	// client IP address: default a burst of 10, then one every 6s.
	AuthRate  rate.Limit
	AuthBurst int
	// HubRate and HubBurst limit what one WebSocket may send (messages,
	// calls, typing): zero means the hub's defaults. Tests raise them.
	HubRate  rate.Limit
	HubBurst int
	// SecretGenerated is set when no CHAT_SECRET was given.
	SecretGenerated bool
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
		Addr:      envOr("ADDR", ":8080"),
		RedisURL:  os.Getenv("REDIS_URL"),
		Prefix:    envOr("REDIS_PREFIX", "chat:"),
		Secret:    []byte(os.Getenv("CHAT_SECRET")),
		Rooms:     splitList(envOr("CHAT_ROOMS", "general,random,help")),
		Origins:   splitList(os.Getenv("CHAT_ORIGINS")),
		Admins:    splitList(os.Getenv("CHAT_ADMINS")),
		PublicURL: os.Getenv("CHAT_PUBLIC_URL"),
	}
	for _, d := range []struct {
		env, def string
		to       *time.Duration
	}{{"CHAT_STATS_EVERY", "2s", &c.StatsEvery}, {"CHAT_SESSION_TTL", "1h", &c.SessionTTL}, {"CHAT_MAIL_BATCH", "2m", &c.MailBatch}} {
		v, err := time.ParseDuration(envOr(d.env, d.def))
		if err != nil || v <= 0 {
			return c, fmt.Errorf("%s must be a positive duration, e.g. %s", d.env, d.def)
		}
		*d.to = v
	}
	if c.SessionTTL < time.Minute {
		return c, errors.New("CHAT_SESSION_TTL must be at least 1m")
	}
	n, err := strconv.Atoi(envOr("CHAT_HISTORY", "10000"))
	if err != nil || n < 100 {
		return c, errors.New("CHAT_HISTORY must be a number of messages, at least 100")
	}
	c.History = n
	for _, r := range c.Rooms {
		if !validRoom.MatchString(r) {
			return c, fmt.Errorf("CHAT_ROOMS: %q: %s", r, roomRule)
		}
	}
	if err := c.mailFromEnv(); err != nil {
		return c, err
	}
	if len(c.Secret) == 0 {
		if c.RedisURL != "" {
			return c, errors.New("CHAT_SECRET must be set with REDIS_URL, the same on every replica")
		}
		c.Secret = make([]byte, 32)
		_, _ = rand.Read(c.Secret)
		c.SecretGenerated = true
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
