// Command chat is rtkit's example application: a chat where users pick a
// name, see the rooms, chat with recent history on join, and see who is
// online and who is typing.
//
//	go run ./examples/chat                      # one process, in memory
//	REDIS_URL=redis://127.0.0.1:6379 CHAT_SECRET=s ADDR=:8081 go run ./examples/chat
//
// With REDIS_URL set, copies of the app on several ports (or machines)
// share rooms, history, presence and direct messages.
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
