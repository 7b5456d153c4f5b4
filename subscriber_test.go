package rtkit

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The subscriber set matches a model through random adds and removes,
// removing twice or removing what isn't there changes nothing, and every
// snapshot taken after a change holds exactly the set.
func TestSubSet(t *testing.T) {
	var ss subSet
	rng := rand.New(rand.NewPCG(3, 4))
	model := map[*subscriber]bool{}
	var all []*subscriber
	for range 5000 {
		switch {
		case len(all) == 0 || rng.IntN(3) < 2:
			s := newSubscriber(nil, false)
			all = append(all, s)
			model[s] = true
			require.Equal(t, len(model), ss.add(s))
		default:
			s := all[rng.IntN(len(all))] // maybe removed already
			delete(model, s)
			require.Equal(t, len(model), ss.remove(s))
		}
		if rng.IntN(10) == 0 {
			got := ss.load()
			require.Len(t, got, len(model))
			for _, s := range got {
				require.True(t, model[s])
			}
		}
	}
	assert.Equal(t, len(model), ss.len())
	assert.Equal(t, len(model), ss.remove(newSubscriber(nil, false)), "removing a stranger changes nothing")
}

// Deliveries read snapshots while other goroutines change the set (run
// with -race): a snapshot is never changed under its reader, and once the
// changes stop the set is exact.
func TestSubSetConcurrent(t *testing.T) {
	var ss subSet
	keep := make([]*subscriber, 100)
	for i := range keep {
		keep[i] = newSubscriber(nil, false)
		ss.add(keep[i])
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				snap := ss.load()
				seen := make(map[*subscriber]bool, len(snap))
				for _, s := range snap {
					if seen[s] {
						t.Error("a subscriber twice in one snapshot")
						return
					}
					seen[s] = true
				}
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			var mine []*subscriber
			for range 2000 {
				if len(mine) > 0 && rng.IntN(2) == 0 {
					i := rng.IntN(len(mine))
					ss.remove(mine[i])
					mine = append(mine[:i], mine[i+1:]...)
				} else {
					s := newSubscriber(nil, false)
					ss.add(s)
					mine = append(mine, s)
				}
			}
			for _, s := range mine {
				ss.remove(s)
			}
		})
	}
	writers.Wait()
	close(stop)
	readers.Wait()
	assert.ElementsMatch(t, keep, ss.load())
}
