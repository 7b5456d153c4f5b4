package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/realtime"
)

// userDB stands in for the users table of a real application (with the
// latency of one): profiles are read through the cache. Each replica has
// its own: a user is known where they signed in.
type userDB struct {
	mu    sync.Mutex
	users map[string]profile
	reads int
}

type profile struct {
	Name      string    `json:"name"`
	FirstSeen time.Time `json:"firstSeen"`
	Email     string    `json:"email,omitempty"` // private: user.profile leaves it out
}

func newUserDB() *userDB { return &userDB{users: make(map[string]profile)} }

func (db *userDB) seen(name string) {
	db.mu.Lock()
	defer db.mu.Unlock()
	if _, ok := db.users[name]; !ok {
		db.users[name] = profile{Name: name, FirstSeen: time.Now().UTC().Truncate(time.Second), Email: name + "@example.com"}
	}
}

func (db *userDB) get(ctx context.Context, name string) (profile, error) {
	select {
	case <-time.After(20 * time.Millisecond): // a database round trip
	case <-ctx.Done():
		return profile{}, ctx.Err()
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	db.reads++
	p, ok := db.users[name]
	if !ok {
		return profile{}, fmt.Errorf("user %q: %w", name, cache.ErrNotFound)
	}
	return p, nil
}

// userProfile answers the "user.profile" call: {"name": "..."}.
func (a *app) userProfile(ctx context.Context, c *realtime.Call) (any, error) {
	var req struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(c.Data, &req); err != nil || !validName.MatchString(req.Name) {
		return nil, &realtime.Error{Code: realtime.CodeBadRequest, Message: `send {"name": "..."}`}
	}
	p, err := cache.GetOrLoad(ctx, a.cache, "profile:"+req.Name, func(ctx context.Context) (profile, error) {
		return a.users.get(ctx, req.Name)
	}, cache.Tags("user:"+req.Name))
	if err != nil {
		if errors.Is(err, cache.ErrNotFound) {
			return nil, &realtime.Error{Code: realtime.CodeNotFound, Message: "no such user"}
		}
		return nil, err
	}
	p.Email = "" // other users' addresses are not theirs to read
	return p, nil
}
