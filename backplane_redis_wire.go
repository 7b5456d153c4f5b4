package rtkit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// publishScript appends a batch of messages of one topic to the topic's
// stream and publishes them together in one pub/sub payload, so that a
// batch costs one round trip, one script call and one PUBLISH.
//
//	KEYS[1]  the topic's stream key
//	KEYS[2]  the publishing node's batch key for the topic (see below)
//	ARGV[1]  history size (MAXLEN; 0 keeps no entry but still orders IDs)
//	ARGV[2]  history TTL in ms (0: no age bound)
//	ARGV[3]  PUBLISH or SPUBLISH
//	ARGV[4]  the topic's channel
//	ARGV[5]  the batch's sequence number, increasing per node
//	ARGV[6:] pairs of flag ("p" persistent, "e" ephemeral) and data
//
// A batch may reach Redis more than once: a client that lost the reply
// sends it again (go-redis does, MaxRetries), and so does the backplane
// after a failover. The batch key remembers the newest batch of the node
// and the IDs it got, for two minutes (batchKeyTTLms): a batch at or below it is not
// published again, and a copy of that very batch returns the same IDs.
//
// Trimming runs once per batch, after the appends: exact trimming inside
// each XADD costs several times more than the XADD itself.
//
// It returns the IDs, "" for ephemeral messages. The payload is
// "r2 <prev>\n", where prev is the ID of the stream's newest entry before
// the batch ("0-0" if none), followed by one record per message:
// "<id> <len>\n<data>" for a persistent message, "e<ms> <len>\n<data>" for
// an ephemeral one. A subscriber that delivered prev last knows that the
// batch's messages are the next ones the stream holds.
var publishScript = redis.NewScript(`
local key, size, ttl, seq = KEYS[1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[5])
local done = redis.call('GET', KEYS[2])
if done then
  local dseq, dids = string.match(done, '^(%d+) (.*)$')
  if tonumber(dseq) > seq then return redis.error_reply('STALE batch') end
  if tonumber(dseq) == seq then
    -- A write, so that a WAIT after this copy (RedisOptions.MinReplicas)
    -- waits for the replicas to have the batch, whatever connection sent
    -- it first.
    redis.call('PEXPIRE', KEYS[2], ` + batchKeyTTLms + `)
    local ids = {}
    for id in string.gmatch(dids, '%S+') do ids[#ids+1] = (id == 'e') and '' or id end
    return ids
  end
end
local out, ids, seen, last, now = {'r2 0-0\n'}, {}, {}, nil, nil
for i = 6, #ARGV, 2 do
  local data, head = ARGV[i+1], nil
  if ARGV[i] == 'p' then
    if not last then
      local top = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
      if top[1] then out[1] = 'r2 ' .. top[1][1] .. '\n' end
    end
    last = redis.call('XADD', key, '*', 'd', data)
    ids[#ids+1] = last
    seen[#seen+1] = last
    head = last
  else
    if not now then
      local t = redis.call('TIME')
      now = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
    end
    ids[#ids+1] = ''
    seen[#seen+1] = 'e'
    head = 'e' .. now
  end
  out[#out+1] = head .. ' ' .. #data .. '\n'
  out[#out+1] = data
end
if last then redis.call('XTRIM', key, 'MAXLEN', size) end
if last and ttl > 0 then
  local ms = tonumber(string.match(last, '^(%d+)'))
  redis.call('XTRIM', key, 'MINID', string.format('%.0f', ms - ttl))
  redis.call('PEXPIRE', key, ttl)
end
redis.call('SET', KEYS[2], ARGV[5] .. ' ' .. table.concat(seen, ' '), 'PX', ` + batchKeyTTLms + `)
redis.call(ARGV[3], ARGV[4], table.concat(out))
return ids
`)

// batchKeyTTLms is how long, in ms, Redis remembers a node's newest batch
// of a topic: a copy of a batch that reaches Redis later than this (a
// client retry held up for two minutes) would be published again.
const batchKeyTTLms = "120000"

// errBadPayload is wrapped by decodePayload's errors.
var errBadPayload = errors.New("rtkit: malformed backplane payload")

const payloadMagic = "r2 "

// decodePayload decodes a pub/sub payload written by publishScript into
// messages of topic, and the ID of the stream entry that preceded them.
func decodePayload(topic, p string) (prev ID, msgs []*Message, err error) {
	rest, ok := strings.CutPrefix(p, payloadMagic)
	if !ok {
		return ID{}, nil, fmt.Errorf("%w: bad header", errBadPayload)
	}
	prevText, rest, ok := strings.Cut(rest, "\n")
	if prev, err = ParseID(prevText); !ok || err != nil {
		return ID{}, nil, fmt.Errorf("%w: bad previous ID %q", errBadPayload, truncate(prevText, 40))
	}
	for rest != "" {
		head, after, ok := strings.Cut(rest, " ")
		if !ok || head == "" {
			return ID{}, nil, fmt.Errorf("%w: record %d: no header", errBadPayload, len(msgs))
		}
		lenText, after, ok := strings.Cut(after, "\n")
		if !ok {
			return ID{}, nil, fmt.Errorf("%w: record %d: no length", errBadPayload, len(msgs))
		}
		n, err := strconv.Atoi(lenText)
		if err != nil || n < 0 || n > len(after) || lenText[0] == '+' {
			return ID{}, nil, fmt.Errorf("%w: record %d: bad length %q", errBadPayload, len(msgs), truncate(lenText, 20))
		}
		m := &Message{Topic: topic, Data: []byte(after[:n])}
		rest = after[n:]
		if ms, ok := strings.CutPrefix(head, "e"); ok {
			v, err := strconv.ParseInt(ms, 10, 64)
			if err != nil || v < 0 {
				return ID{}, nil, fmt.Errorf("%w: record %d: bad time %q", errBadPayload, len(msgs), truncate(ms, 20))
			}
			m.Time = time.UnixMilli(v)
		} else {
			id, err := ParseID(head)
			if err != nil || id.IsZero() {
				return ID{}, nil, fmt.Errorf("%w: record %d: bad id %q", errBadPayload, len(msgs), truncate(head, 40))
			}
			m.ID, m.Time = id, time.UnixMilli(int64(id.MS))
		}
		msgs = append(msgs, m)
	}
	return prev, msgs, nil
}

// streamMessages converts stream entries to messages of topic.
func streamMessages(topic string, entries []redis.XMessage) ([]*Message, error) {
	msgs := make([]*Message, 0, len(entries))
	for _, e := range entries {
		id, err := ParseID(e.ID)
		if err != nil {
			return nil, err
		}
		d, _ := e.Values["d"].(string)
		msgs = append(msgs, &Message{Topic: topic, ID: id, Data: []byte(d), Time: time.UnixMilli(int64(id.MS))})
	}
	return msgs, nil
}
