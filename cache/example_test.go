package cache_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/rtkit/rtkit/cache"
)

type user struct {
	Name string
}

func ExampleGetOrLoad() {
	c := cache.New(cache.Options{})
	defer c.Shutdown(context.Background())
	ctx := context.Background()
	load := func(ctx context.Context) (user, error) {
		fmt.Println("loading from the database")
		return user{Name: "Ada"}, nil
	}
	for range 2 {
		u, err := cache.GetOrLoad(ctx, c, "user:1", load, cache.Tags("user:1"))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(u.Name)
	}
	// After an update, invalidate by tag: the next read loads again.
	if err := c.InvalidateTags(ctx, "user:1"); err != nil {
		log.Fatal(err)
	}
	u, _ := cache.GetOrLoad(ctx, c, "user:1", load, cache.Tags("user:1"))
	fmt.Println(u.Name, c.Stats().Hits, "hit")
	// Output:
	// loading from the database
	// Ada
	// Ada
	// loading from the database
	// Ada 1 hit
}

// A loader answers "no such thing" with ErrNotFound: the absence is cached
// too (for NegativeTTL), so a missing key does not reach the database on
// every request.
func ExampleErrNotFound() {
	c := cache.New(cache.Options{})
	defer c.Shutdown(context.Background())
	ctx := context.Background()
	load := func(ctx context.Context) (user, error) {
		fmt.Println("asking the database")
		return user{}, fmt.Errorf("user 404: %w", cache.ErrNotFound)
	}
	for range 2 {
		_, err := cache.GetOrLoad(ctx, c, "user:404", load)
		fmt.Println(errors.Is(err, cache.ErrNotFound))
	}
	// Output:
	// asking the database
	// true
	// true
}
