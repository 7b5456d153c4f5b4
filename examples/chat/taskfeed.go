package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"time"

	"github.com/rtkit/rtkit"
	"github.com/rtkit/rtkit/tasks"
)

// The dashboard's task feed: each replica relays its own runner's events
// (so that every event is relayed once, however many replicas run) to
// taskFeedTopic, named after what the task is about ("mail to ana: mention
// in #general") and with the error text redacted: no addresses, no
// internal errors, only what kind of failure it was.

// feedEvent is one line of the task feed.
type feedEvent struct {
	Task    string    `json:"task"`
	Kind    string    `json:"kind"`
	Label   string    `json:"label"`
	Attempt int       `json:"attempt,omitempty"`
	Error   string    `json:"error,omitempty"`
	Time    time.Time `json:"time"`
}

// startTaskFeed subscribes to the runner's events; a goroutine (ended by
// ctx) names and relays them.
func (a *app) startTaskFeed(ctx context.Context) error {
	queue := make(chan tasks.Event, 256)
	sub, err := a.tasks.Subscribe(ctx, func(e tasks.Event) {
		if e.Node != a.node {
			return
		}
		select {
		case queue <- e:
		default: // the relay is behind: the dashboard misses an event
		}
	})
	if err != nil {
		return err
	}
	a.wg.Go(func() {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e := <-queue:
				a.relayTaskEvent(ctx, e)
			}
		}
	})
	return nil
}

func (a *app) relayTaskEvent(ctx context.Context, e tasks.Event) {
	fe := feedEvent{Task: e.TaskID, Kind: string(e.Kind), Label: e.Type, Attempt: e.Attempt, Error: redact(e.Error), Time: e.Time}
	if t, err := a.tasks.Get(ctx, e.TaskID); err == nil {
		fe.Label = taskLabel(t)
	}
	data, _ := json.Marshal(fe)
	if _, err := a.bp.Publish(ctx, taskFeedTopic, data, rtkit.PublishOptions{}); err != nil && ctx.Err() == nil {
		a.log.Warn("relaying a task event", "err", err)
	}
}

// taskLabel says what a task is about.
func taskLabel(t *tasks.Task) string {
	switch t.Type {
	case mailTask:
		var e email
		if json.Unmarshal(t.Payload, &e) == nil && e.Label != "" {
			return e.Label
		}
	case digestTask:
		var d digestJob
		if json.Unmarshal(t.Payload, &d) == nil {
			return "notifications for " + d.User + ": gathering them into one mail"
		}
	}
	return t.Type
}

var smtpCode = regexp.MustCompile(`\b([45][0-9][0-9])\b`)

// redact turns an error into what a page may show: the kind of failure,
// without hosts, ports or internal messages.
func redact(err string) string {
	switch {
	case err == "":
		return ""
	case strings.Contains(err, "connection refused"):
		return "the mail server refused the connection"
	case strings.Contains(err, "timeout"), strings.Contains(err, "deadline exceeded"):
		return "the mail server did not answer in time"
	case strings.Contains(err, "no such host"):
		return "the mail server's name does not resolve"
	case strings.Contains(err, "smtp") && smtpCode.MatchString(err):
		return "the mail server replied " + smtpCode.FindString(err)
	}
	return "failed (the details are in the server log)"
}
