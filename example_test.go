package rtkit_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/redis/go-redis/v9"
	"github.com/rtkit/rtkit"
)

// printer is a Handler that prints what it receives. Real handlers queue
// messages for a connection instead: handlers must not block.
type printer struct{ name string }

func (p printer) HandleMessage(m *rtkit.Message) {
	fmt.Printf("%s got %q\n", p.name, m.Data)
}

func (p printer) HandleGap(after rtkit.ID) {
	fmt.Printf("%s lost messages after %v: reload state\n", p.name, after)
}

func ExampleMemoryBackplane() {
	ctx := context.Background()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	defer bp.Close()

	sub, err := bp.Subscribe(ctx, "room:lobby", rtkit.SubscribeOptions{}, printer{"ada"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()

	_, _ = bp.Publish(ctx, "room:lobby", []byte("hello"), rtkit.PublishOptions{})
	_, _ = bp.Publish(ctx, "room:lobby", []byte("ada is typing"), rtkit.PublishOptions{Ephemeral: true})
	// Output:
	// ada got "hello"
	// ada got "ada is typing"
}

// A subscriber that reconnects passes the ID of the last message it saw and
// gets what it missed, then live messages, with no gap and no duplicate.
func ExampleSubscribeOptions_since() {
	ctx := context.Background()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{})
	defer bp.Close()

	seen, _ := bp.Publish(ctx, "room:lobby", []byte("one"), rtkit.PublishOptions{})
	_, _ = bp.Publish(ctx, "room:lobby", []byte("two"), rtkit.PublishOptions{})
	_, _ = bp.Publish(ctx, "room:lobby", []byte("three"), rtkit.PublishOptions{})

	sub, err := bp.Subscribe(ctx, "room:lobby", rtkit.SubscribeOptions{Since: seen}, printer{"bob"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	fmt.Println("recovered:", sub.Recovered())
	_, _ = bp.Publish(ctx, "room:lobby", []byte("four"), rtkit.PublishOptions{})
	// Output:
	// bob got "two"
	// bob got "three"
	// recovered: true
	// bob got "four"
}

// Recent history for a page that opens a room, then live messages from
// exactly where the history ends.
func ExampleBackplane_history() {
	ctx := context.Background()
	bp := rtkit.NewMemoryBackplane(rtkit.MemoryOptions{HistorySize: 100})
	defer bp.Close()
	for _, text := range []string{"a", "b", "c", "d"} {
		_, _ = bp.Publish(ctx, "room:lobby", []byte(text), rtkit.PublishOptions{})
	}

	h, err := bp.History(ctx, "room:lobby", rtkit.HistoryOptions{Limit: 2})
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range h.Messages {
		fmt.Printf("history: %s\n", m.Data)
	}
	sub, err := bp.Subscribe(ctx, "room:lobby", rtkit.SubscribeOptions{Since: h.Position}, printer{"page"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	_, _ = bp.Publish(ctx, "room:lobby", []byte("e"), rtkit.PublishOptions{})
	// Output:
	// history: c
	// history: d
	// page got "e"
}

// With REDIS_URL set, the same code spans every node that shares the Redis.
func ExampleNewRedisBackplane() {
	opts, err := redis.ParseURL(os.Getenv("REDIS_URL"))
	if err != nil {
		log.Fatal(err)
	}
	client := redis.NewClient(opts)
	defer client.Close()

	bp, err := rtkit.NewRedisBackplane(rtkit.RedisOptions{Client: client, Prefix: "myapp:"})
	if err != nil {
		log.Fatal(err)
	}
	defer bp.Close()

	ctx := context.Background()
	sub, err := bp.Subscribe(ctx, "room:lobby", rtkit.SubscribeOptions{}, printer{"node-a"})
	if err != nil {
		log.Fatal(err)
	}
	defer sub.Close()
	if _, err := bp.Publish(ctx, "room:lobby", []byte("hello from any node"), rtkit.PublishOptions{}); err != nil {
		log.Fatal(err)
	}
}
