// Command chat is rtkit's integrated example: the enterprise chat of the
// course project. People register (a unique @handle, a display name in
// any script, an email address, a password) and sign in; they join public
// rooms, talk in private rooms an admin added them to, send direct
// messages, edit and delete their messages, mention each other with
// @handle, and see who is online and typing. Mentioned and direct-messaged
// users who are offline get one batched email through background tasks.
// Admins create and archive rooms, manage private rooms' members, delete
// any message, and disconnect or ban users. A live dashboard
// (/dashboard.html) shows activity, replicas and tasks.
//
//	go run ./examples/chat                      # one process, in memory
//	REDIS_URL=redis://127.0.0.1:6379 CHAT_SECRET=s ADDR=:8081 go run ./examples/chat
//	SMTP_ADDR=127.0.0.1:1025 go run ./examples/chat  # mail through a local relay
//
// With REDIS_URL set, copies of the app on several ports (or machines)
// share users, rooms, messages, presence, unread markers and tasks; a
// restart loses nothing.
//
// # Configuration
//
// From the environment:
//
//	ADDR              listen address (default :8080)
//	REDIS_URL         Redis for several replicas; unset: everything in memory.
//	                  A wrong URL or a Redis that does not answer stops the
//	                  app at start (exit status 1)
//	REDIS_PREFIX      starts every Redis key (default "chat:")
//	CHAT_SECRET       signs session tokens (JWT HS256); required with
//	                  REDIS_URL, the same on every replica. Unset in one
//	                  process: a random one, and sessions end on restart
//	CHAT_SESSION_TTL  how long a session token lives (default 1h; pages
//	                  refresh it while open)
//	CHAT_ADMINS       comma-separated handles that are admins; the first
//	                  user to register is admin too
//	CHAT_ROOMS        public rooms created at the first start (default
//	                  general,random,help)
//	CHAT_HISTORY      messages kept per room or conversation (default 10000)
//	CHAT_MAIL_BATCH   how long notifications gather into one mail (default 2m)
//	CHAT_PUBLIC_URL   the chat's address in mails (default http://localhost:<port>)
//	CHAT_ORIGINS      extra origins allowed to open WebSockets
//	CHAT_STATS_EVERY  how often replicas publish dashboard stats (default 2s)
//	SMTP_ADDR         SMTP server, host:port; unset: mails are logged and kept
//	                  on the outbox page (/outbox, admins only)
//	SMTP_FROM         sender address (default chat@localhost)
//	SMTP_USER         user for PLAIN auth, with SMTP_PASSWORD; the password is
//	                  sent over TLS only (port 465, or STARTTLS on any other),
//	                  or in clear to a loopback address, and never logged
//	SMTP_PASSWORD     its password
//	LOG_FORMAT        text (default) or json
//	LOG_LEVEL         debug, info (default), warn or error
//
// README.md has the same table, and how to run the app in containers,
// its metrics (/metrics) and its shutdown: on SIGTERM, /readyz turns 503,
// WebSockets close with 1001, SSE streams end with a retry hint, running
// tasks get 5s and the rest are handed back, all within 20s.
//
// Sign-in and registration are limited per client address (a burst of 10,
// then one every 6 seconds). Passwords are stored as bcrypt hashes and
// never logged.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 2 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck())
	}
	log, err := loggerFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "configuration:", err)
		os.Exit(2)
	}
	cfg, err := configFromEnv()
	if err != nil {
		log.Error("configuration", "err", err)
		os.Exit(2)
	}
	if err := run(cfg, log); err != nil {
		log.Error("chat stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	a, err := newApp(cfg, log)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = a.shutdown(context.Background())
		return err
	}
	o, err := newOps(a, log)
	if err != nil {
		_ = a.shutdown(context.Background())
		return err
	}
	srv := &http.Server{Handler: o.handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	if cfg.SecretGenerated {
		log.Warn("CHAT_SECRET is not set: sessions are signed with a random secret, " +
			"so they end when the app restarts and other replicas cannot check them. Set CHAT_SECRET for anything real.")
	}
	log.Info("chat listening", "addr", cfg.Addr, "redis", cfg.RedisURL != "")
	fmt.Printf("\n  Open %s in your browser (the dashboard is at %s/dashboard.html).\n\n", a.cfg.PublicURL, a.cfg.PublicURL)
	select {
	case err := <-errc:
		_ = a.shutdown(context.Background())
		o.close()
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := o.drain(sctx, srv); err != nil {
		return err
	}
	log.Info("shut down")
	return nil
}
