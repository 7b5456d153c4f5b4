package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit/cache"
	"github.com/rtkit/rtkit/examples/game/snake"
	"github.com/rtkit/rtkit/sse"
)

// The leaderboard keeps the finished rounds: the best scores of all time
// and the latest rounds. It is read through the cache (one load per node
// however many pages ask), and every new result is pushed to the
// leaderboard page over SSE.

const (
	boardTopic = "leaderboard"
	boardKey   = "leaderboard"
	boardTop   = 10 // best scores shown
	boardLast  = 10 // latest rounds shown
)

// boardView is what the page shows (GET /api/leaderboard, and each SSE
// "board" event).
type boardView struct {
	Top    []boardScore `json:"top"`    // best first
	Recent []boardRound `json:"recent"` // newest first
}

type boardScore struct {
	Name  string `json:"name"`
	Score int    `json:"score"`
	Kills int    `json:"kills"`
	Match string `json:"match"`
	Time  int64  `json:"time"` // Unix ms
}

type boardRound struct {
	Match   string               `json:"match"`
	Round   int                  `json:"round"`
	Time    int64                `json:"time"`
	Players []snake.PlayerResult `json:"players"`
}

// boardStore keeps results: memoryBoard in one process, redisBoard shared.
type boardStore interface {
	Add(ctx context.Context, r boardRound) error
	View(ctx context.Context) (boardView, error)
}

type memoryBoard struct {
	mu   sync.Mutex
	view boardView
}

func (b *memoryBoard) Add(_ context.Context, r boardRound) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.view.Recent = append([]boardRound{r}, b.view.Recent...)[:min(len(b.view.Recent)+1, boardLast)]
	for _, p := range r.Players {
		b.view.Top = append(b.view.Top, boardScore{Name: p.Name, Score: p.Score, Kills: p.Kills, Match: r.Match, Time: r.Time})
	}
	slices.SortStableFunc(b.view.Top, func(x, y boardScore) int { return y.Score - x.Score })
	b.view.Top = b.view.Top[:min(len(b.view.Top), boardTop)]
	return nil
}

func (b *memoryBoard) View(context.Context) (boardView, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return boardView{Top: append([]boardScore{}, b.view.Top...), Recent: append([]boardRound{}, b.view.Recent...)}, nil
}

// redisBoard: a sorted set of scores (trimmed to the best 100) and a list
// of the latest rounds.
type redisBoard struct {
	rdb    redis.UniversalClient
	prefix string
}

func (b *redisBoard) Add(ctx context.Context, r boardRound) error {
	raw, _ := json.Marshal(r)
	pipe := b.rdb.TxPipeline()
	pipe.LPush(ctx, b.prefix+"recent", raw)
	pipe.LTrim(ctx, b.prefix+"recent", 0, boardLast-1)
	for _, p := range r.Players {
		m, _ := json.Marshal(boardScore{Name: p.Name, Score: p.Score, Kills: p.Kills, Match: r.Match, Time: r.Time})
		pipe.ZAdd(ctx, b.prefix+"top", redis.Z{Score: float64(p.Score), Member: m})
	}
	pipe.ZRemRangeByRank(ctx, b.prefix+"top", 0, -101)
	_, err := pipe.Exec(ctx)
	return err
}

func (b *redisBoard) View(ctx context.Context) (boardView, error) {
	v := boardView{Top: []boardScore{}, Recent: []boardRound{}}
	top, err := b.rdb.ZRevRange(ctx, b.prefix+"top", 0, boardTop-1).Result()
	if err != nil {
		return v, err
	}
	for _, m := range top {
		var s boardScore
		if json.Unmarshal([]byte(m), &s) == nil {
			v.Top = append(v.Top, s)
		}
	}
	recent, err := b.rdb.LRange(ctx, b.prefix+"recent", 0, boardLast-1).Result()
	if err != nil {
		return v, err
	}
	for _, m := range recent {
		var r boardRound
		if json.Unmarshal([]byte(m), &r) == nil {
			v.Recent = append(v.Recent, r)
		}
	}
	return v, nil
}

func (a *app) leaderboard(ctx context.Context) (boardView, error) {
	return cache.GetOrLoad(ctx, a.cache, boardKey, a.board.View)
}

// recordResult keeps a finished round, drops the cached leaderboard,
// announces the result in the match's room and pushes the new leaderboard
// to every page.
func (a *app) recordResult(ctx context.Context, match string, res snake.Result) {
	r := boardRound{Match: match, Round: res.Round, Time: time.Now().UnixMilli(), Players: res.Players}
	if r.Players == nil {
		r.Players = []snake.PlayerResult{}
	}
	if err := a.board.Add(ctx, r); err != nil {
		a.log.Warn("leaderboard", "err", err)
		return
	}
	if err := a.cache.Delete(ctx, boardKey); err != nil {
		a.log.Warn("leaderboard cache", "err", err)
	}
	if _, err := a.hub.Publish(ctx, matchRoom(match), map[string]any{"result": r}); err != nil {
		a.log.Warn("result", "err", err)
	}
	v, err := a.leaderboard(ctx)
	if err != nil {
		return
	}
	raw, _ := json.Marshal(v)
	if _, err := a.events.Publish(ctx, boardTopic, sse.Event{Type: "board", Data: raw}); err != nil {
		a.log.Warn("leaderboard event", "err", err)
	}
}

func (a *app) serveBoard(w http.ResponseWriter, r *http.Request) {
	v, err := a.leaderboard(r.Context())
	if err != nil {
		http.Error(w, "leaderboard unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}
