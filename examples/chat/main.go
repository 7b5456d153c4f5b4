// Command chat is rtkit's example application: a chat where users pick a
// name, see the rooms, chat with recent history on join, and see who is
// online and who is typing. "@name" in a message mails that user if they
// are offline, through a background task. A live dashboard
// (/dashboard.html) shows activity, replicas and tasks.
//
//	go run ./examples/chat                      # one process, in memory
//	REDIS_URL=redis://127.0.0.1:6379 CHAT_SECRET=s ADDR=:8081 go run ./examples/chat
//	SMTP_ADDR=127.0.0.1:1025 go run ./examples/chat  # mail through a local relay
//
// With REDIS_URL set, copies of the app on several ports (or machines)
// share rooms, history, presence, direct messages and tasks.
//
// # Configuration
//
// From the environment:
//
//	ADDR              listen address (default :8080)
//	REDIS_URL         Redis for several replicas; unset: everything in memory
//	REDIS_PREFIX      starts every Redis key (default "chat:")
//	CHAT_SECRET       signs session tokens; required with REDIS_URL
//	CHAT_ROOMS        comma-separated rooms (default general,random,help)
//	CHAT_ORIGINS      extra origins allowed to open WebSockets
//	CHAT_STATS_EVERY  how often replicas publish dashboard stats (default 2s)
//	SMTP_ADDR         SMTP server, host:port; unset: mails are logged and kept
//	                  on the outbox page (/outbox, linked from the dashboard)
//	SMTP_FROM         sender address (default chat@localhost)
//	SMTP_USER         user for PLAIN auth, with SMTP_PASSWORD; the password is
//	                  sent over TLS only (port 465, or STARTTLS on any other),
//	                  or in clear to a loopback address, and never logged
//	SMTP_PASSWORD     its password
//
// # Mentions
//
// The replica that accepted a message looks for "@name"s in it and, for
// each user known to it who is in no room (on any replica), enqueues an
// "email.send" task, unique per message and recipient. Any replica's task
// runner sends it: an SMTP 5xx reply ends the task, anything else (the
// server down, a 4xx) retries it with backoff, 8 attempts over about two
// minutes. Names are not passwords here, so each replica only knows the
// users who signed in to it, and their addresses are <name>@example.com.
package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
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
	srv := &http.Server{Addr: cfg.Addr, Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	log.Info("chat listening", "addr", cfg.Addr, "redis", cfg.RedisURL != "")
	select {
	case err := <-errc:
		_ = a.shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	// The hub first: it closes WebSockets (hijacked, so unknown to the
	// HTTP server) with 1001, and clients reconnect elsewhere.
	herr := a.shutdown(sctx)
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return herr
}
