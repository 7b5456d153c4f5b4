package main

import (
	"crypto/rand"
	"errors"
	"os"
	"strings"
	"time"
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
}

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
	if len(c.Secret) == 0 {
		if c.RedisURL != "" {
			return c, errors.New("CHAT_SECRET must be set with REDIS_URL, the same on every replica")
		}
		c.Secret = make([]byte, 32)
		_, _ = rand.Read(c.Secret)
	}
	return c, nil
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
