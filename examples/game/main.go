// Command game is rtkit's multiplayer game example: snake for up to eight
// players a match, with an authoritative server loop on the realtime hub.
//
//	go run ./examples/game                      # one process, in memory
//	REDIS_URL=redis://127.0.0.1:6379 ADDR=:8081 go run ./examples/game
//
// Open the URL it prints in two browser tabs (or a phone on the same
// network) and play; /leaderboard.html shows finished rounds live.
//
// With REDIS_URL set, any number of processes share the lobby: a match
// runs on exactly one of them (the holder of its lease in Redis), and
// players connect to any.
//
// # Configuration
//
// From the environment:
//
//	ADDR          listen address (default :8080)
//	REDIS_URL     Redis for several processes; unset: everything in memory
//	REDIS_PREFIX  starts every Redis key (default "game:")
//	GAME_ORIGINS  extra origins (host patterns, comma-separated) allowed to
//	              open WebSockets
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	cfg := config{Addr: os.Getenv("ADDR"), RedisURL: os.Getenv("REDIS_URL"), Prefix: os.Getenv("REDIS_PREFIX")}
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
	}
	if o := os.Getenv("GAME_ORIGINS"); o != "" {
		cfg.Origins = strings.Split(o, ",")
	}
	if err := run(cfg, log); err != nil {
		log.Error("game stopped", "err", err)
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	cfg.Addr = ln.Addr().String()
	a, err := newApp(cfg, log)
	if err != nil {
		_ = ln.Close()
		return err
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	fmt.Printf("game: open http://localhost:%d/ in two browser tabs (leaderboard: /leaderboard.html)\n", ln.Addr().(*net.TCPAddr).Port)
	select {
	case err := <-errc:
		_ = a.shutdown(context.Background())
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	herr := a.shutdown(sctx)
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return herr
}
