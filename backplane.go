package rtkit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// Errors returned by backplanes. Callers branch on them with [errors.Is].
var (
	// ErrClosed is returned by every method of a backplane after Close.
	ErrClosed = errors.New("rtkit: backplane closed")
	// ErrInvalidTopic is returned for a topic that is empty, longer than
	// [MaxTopicLen] bytes, not valid UTF-8, or that contains a control
	// character, a space, '{' or '}'.
	ErrInvalidTopic = errors.New("rtkit: invalid topic")
	// ErrMessageTooLarge is returned by Publish for data longer than the
	// backplane's MaxMessageSize.
	ErrMessageTooLarge = errors.New("rtkit: message too large")
)

// MaxTopicLen is the longest topic name, in bytes, that a backplane accepts.
const MaxTopicLen = 256

// Defaults of the history and size options of both backplanes.
const (
	DefaultHistorySize    = 1000
	DefaultHistoryTTL     = time.Hour
	DefaultMaxMessageSize = 1 << 20
)

// A Backplane carries messages from the node that publishes them to every
// node with subscribers, and keeps a bounded history per topic so that a
// subscriber can catch up on what it missed.
//
// The package has two implementations: [MemoryBackplane] for a single
// process and [RedisBackplane] for many. Both pass the same conformance
// suite; they differ only in reach and durability. All methods are safe for
// concurrent use.
type Backplane interface {
	// Publish appends data to the topic's history (unless opts.Ephemeral)
	// and delivers it to every subscriber of the topic on every node. It
	// returns the message's ID, strictly greater than the ID of every
	// message published to the topic before it, or the zero ID for an
	// ephemeral message. Publish does not retain data after it returns.
	//
	// If Publish returns an error, the message may or may not have been
	// published (as with any request whose reply is lost); if it returns
	// nil, the message is in history and on its way to every subscriber.
	Publish(ctx context.Context, topic string, data []byte, opts PublishOptions) (ID, error)

	// Subscribe registers h for the topic's messages. When opts.Since is
	// set, h first receives the messages after Since from history, then
	// live ones, with no gap and no duplicate between the two;
	// [Subscription.Recovered] reports whether Since was still in history,
	// so that everything after it could be delivered.
	//
	// ctx bounds only the setup: once Subscribe returns, the subscription
	// lasts until [Subscription.Close] or the backplane's Close.
	Subscribe(ctx context.Context, topic string, opts SubscribeOptions, h Handler) (*Subscription, error)

	// History returns retained messages of the topic, oldest first.
	History(ctx context.Context, topic string, opts HistoryOptions) (History, error)

	// Close releases the backplane's resources and ends every goroutine it
	// started. Subscriptions end without further calls to their handlers,
	// and later calls to any method return [ErrClosed]. Close is idempotent.
	Close() error
}

// Message is one message on a topic. Backplanes hand the same *Message to
// every local subscriber of the topic, so handlers must treat it as
// read-only; they may use its address to share work done for it, such as
// encoding it once for many connections.
type Message struct {
	// Topic is the topic the message was published to.
	Topic string
	// ID orders the message within its topic; it is zero for an ephemeral
	// message.
	ID ID
	// Data is the published payload.
	Data []byte
	// Time is when the message was published, to the millisecond.
	Time time.Time
}

// Ephemeral reports whether m was published with
// [PublishOptions.Ephemeral]: it has no ID, is not in history and cannot be
// recovered.
func (m *Message) Ephemeral() bool { return m.ID.IsZero() }

// PublishOptions tune one Publish call. The zero value publishes a message
// that is kept in history.
type PublishOptions struct {
	// Ephemeral messages (typing indicators, cursor moves) skip history:
	// they get no ID, are delivered only to those subscribed at the time,
	// and are never recovered.
	Ephemeral bool
}

// SubscribeOptions tune one Subscribe call. The zero value starts with
// live messages only.
type SubscribeOptions struct {
	// Since, if not zero, is the ID of the last message the subscriber has
	// seen: delivery starts with the retained messages after it.
	Since ID
	// FromStart, with a zero Since, delivers every retained message first.
	// It resumes a subscription whose Position was zero (the topic had no
	// message yet): Recovered then reports whether no message was ever
	// dropped from the topic's history.
	FromStart bool
	// MaxReplay, if positive, caps the messages delivered from history
	// (with Since or FromStart): when more were missed, only the newest
	// MaxReplay are delivered and Recovered reports false, as if the older
	// ones had left history. It bounds what one subscriber can make a node
	// hold and send. Zero: no cap (history's own bounds).
	MaxReplay int
}

// HistoryOptions select the messages History returns. The zero value
// returns every retained message.
type HistoryOptions struct {
	// Since, if not zero, returns only messages after this ID.
	Since ID
	// Limit, if positive, returns at most this many messages: the newest
	// ones of those selected.
	Limit int
}

// History is what [Backplane.History] returns.
type History struct {
	// Messages are the selected messages, oldest first.
	Messages []*Message
	// Position is the ID of the newest message of the topic the backplane
	// knows (the memory backplane remembers it after trimming; Redis
	// reports the newest retained one), or zero. Subscribing with Since:
	// Position picks up exactly where this History ends.
	Position ID
	// Complete reports whether Since (when set) was still in history, so
	// that Messages (before Limit) hold every message published after it.
	Complete bool
}

// A Handler receives the messages of one subscription. A backplane calls
// its methods from one goroutine at a time per subscription, in ID order.
//
// The methods run on the backplane's delivery path: they must not block
// and must not call the backplane, except [Subscription.Close]. A handler
// that has slow work to do queues it, and handles its own overflow (the
// hub and the SSE broker disconnect a consumer that falls behind; it
// reconnects and recovers from history).
type Handler interface {
	// HandleMessage delivers one message.
	HandleMessage(m *Message)
	// HandleGap reports that messages published after the one with ID
	// after (zero if none was delivered) may have been lost and could not
	// be recovered from history: for example, Redis restarted and lost
	// them. The subscription goes on with the messages that follow; a
	// consumer that needs every message reloads its state.
	HandleGap(after ID)
}

// Subscription is an active subscription returned by Subscribe.
type Subscription struct {
	topic     string
	recovered bool
	position  ID
	close     func()
	once      sync.Once
}

// Topic returns the subscribed topic.
func (s *Subscription) Topic() string { return s.topic }

// Recovered reports whether every message after [SubscribeOptions.Since]
// (or, with FromStart, every message of the topic) was delivered from
// history. It is true for a live-only subscription.
func (s *Subscription) Recovered() bool { return s.recovered }

// Position returns the ID of the newest message delivered by the time
// Subscribe returned (from history, or live), or else of the newest
// message of the topic known when the subscription started (zero if none:
// resume such a subscription with FromStart). A subscriber that has
// received nothing since uses it as Since when it subscribes again.
func (s *Subscription) Position() ID { return s.position }

// Close ends the subscription: the handler is not called for messages
// published after Close returns. A call already under way when Close is
// called (from another goroutine) may still run to completion. Close may
// be called from the handler itself; it is idempotent and returns nil.
func (s *Subscription) Close() error {
	s.once.Do(s.close)
	return nil
}

// CheckTopic reports whether topic is a valid topic name, with an error
// wrapping [ErrInvalidTopic] if not. Packages built on the backplane use it
// to check names (rooms, SSE topics) at their edge.
func CheckTopic(topic string) error {
	if topic == "" {
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	}
	if len(topic) > MaxTopicLen {
		return fmt.Errorf("%w: %d bytes, longer than %d", ErrInvalidTopic, len(topic), MaxTopicLen)
	}
	if !utf8.ValidString(topic) {
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidTopic)
	}
	for _, r := range topic {
		if r <= ' ' || r == 0x7f || r == '{' || r == '}' || (r >= 0x80 && r < 0xa0) {
			return fmt.Errorf("%w: %q contains %q", ErrInvalidTopic, topic, r)
		}
	}
	return nil
}

// ReservedTopic reports whether topic belongs to rtkit's own packages on
// a shared backplane, so that the realtime hub and the SSE broker refuse
// it to clients unless the application's Authorize hook decides:
//
//   - "inbox:..." — the realtime hub's per-user inboxes (direct messages
//     and kicks); the hub refuses them as rooms whatever Authorize says;
//   - "tasks" and "tasks:..." — the tasks runner's default events topic
//     and its cancellations;
//   - "rtkit-..." and "rtkit:..." — other internal topics, such as the
//     cache's default "rtkit-cache-invalidations".
//
// Topics renamed through the packages' options are not covered: an
// application that renames them guards them in its Authorize hook.
func ReservedTopic(topic string) bool {
	for _, p := range []string{"inbox:", "tasks:", "rtkit-", "rtkit:"} {
		if strings.HasPrefix(topic, p) {
			return true
		}
	}
	return topic == "tasks"
}

// historyLimits are the resolved history bounds of one topic.
type historyLimits struct {
	size int           // 0: no history
	ttl  time.Duration // 0: no age bound
}

// limitsConfig holds the options both backplanes share.
type limitsConfig struct {
	size, maxMsg int
	ttl          time.Duration
	perTopic     func(topic string) (int, time.Duration)
}

func newLimitsConfig(size int, ttl time.Duration, maxMsg int, perTopic func(string) (int, time.Duration)) limitsConfig {
	return limitsConfig{
		size:     normSize(size),
		ttl:      normTTL(ttl),
		maxMsg:   cmpOr(maxMsg, DefaultMaxMessageSize),
		perTopic: perTopic,
	}
}

func (c *limitsConfig) limits(topic string) historyLimits {
	if c.perTopic != nil {
		size, ttl := c.perTopic(topic)
		return historyLimits{size: normSize(size), ttl: normTTL(ttl)}
	}
	return historyLimits{size: c.size, ttl: c.ttl}
}

func (c *limitsConfig) checkPublish(topic string, data []byte) error {
	if err := CheckTopic(topic); err != nil {
		return err
	}
	if len(data) > c.maxMsg {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrMessageTooLarge, len(data), c.maxMsg)
	}
	return nil
}

func normSize(n int) int {
	switch {
	case n == 0:
		return DefaultHistorySize
	case n < 0:
		return 0
	}
	return n
}

func normTTL(d time.Duration) time.Duration {
	switch {
	case d == 0:
		return DefaultHistoryTTL
	case d < 0:
		return 0
	}
	return d
}

func cmpOr(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// capReplay keeps the newest max messages of history (max > 0), and
// reports whether none was cut.
func capReplay(history []*Message, max int) ([]*Message, bool) {
	if max <= 0 || len(history) <= max {
		return history, true
	}
	return history[len(history)-max:], false
}

// newSubscription builds the Subscription value Subscribe returns.
func newSubscription(topic string, recovered bool, position ID, closeFn func()) *Subscription {
	return &Subscription{topic: topic, recovered: recovered, position: position, close: closeFn}
}
