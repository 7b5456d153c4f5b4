package realtime

import (
	"context"
	"time"
)

// clock is the hub's millisecond clock, for the writers' bursts: it wraps
// after 49 days, which their comparisons of recent times allow for.
func (h *Hub) clock() uint32 { return uint32(time.Since(h.epoch) / time.Millisecond) }

// presenceRefresh is how often the hub refreshes its presence entries and
// collects those other nodes left to expire.
const presenceRefresh = 10 * time.Second

// pingLoop pings connections that have been silent for PingInterval. A
// ping that gets no pong within WriteTimeout drops the connection: the
// peer is dead or unreachable. It also ends the writers that have waited
// for work for about writerLinger. The loop ends on Shutdown.
func (h *Hub) pingLoop() {
	defer h.loopWG.Done()
	every := min(max(h.opts.PingInterval/4, 100*time.Millisecond), writerLinger)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-h.ctx.Done():
			return
		}
		now := time.Now()
		cutoff := now.Add(-h.opts.PingInterval).UnixNano()
		clock := h.clock()
		h.connsMu.Lock()
		for c := range h.conns {
			if c.lastSeen.Load() < cutoff && c.pinging.CompareAndSwap(false, true) {
				c.goTracked(c.ping)
			}
			c.retireIdleWriter(clock)
		}
		h.connsMu.Unlock()
	}
}

func (c *conn) ping() {
	defer c.pinging.Store(false)
	ctx, cancel := context.WithTimeout(c.ctx, c.h.opts.WriteTimeout)
	defer cancel()
	if err := c.ws.Ping(ctx); err != nil {
		// The WebSocket is closed by the failed ping; the read loop ends.
		return
	}
	c.lastSeen.Store(time.Now().UnixNano())
}

// presenceLoop keeps this node's presence entries alive and announces the
// departure of members whose node died. It ends on Shutdown.
func (h *Hub) presenceLoop() {
	defer h.loopWG.Done()
	t := time.NewTicker(presenceRefresh)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-h.ctx.Done():
			return
		}
		h.refreshPresence()
	}
}

func (h *Hub) refreshPresence() {
	local := make(map[string][]string)
	h.connsMu.Lock()
	for c := range h.conns {
		c.mu.Lock()
		for name := range c.rooms {
			local[name] = append(local[name], c.info.ID)
		}
		c.mu.Unlock()
	}
	h.connsMu.Unlock()
	ctx, cancel := context.WithTimeout(h.ctx, presenceRefresh)
	defer cancel()
	expired, err := h.presence.Refresh(ctx, local)
	if err != nil {
		h.log.Warn("realtime: refreshing presence", "err", err)
	}
	for room, members := range expired {
		for _, m := range members {
			h.presenceChanged(room, m, false)
		}
	}
}
