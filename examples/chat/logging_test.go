package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewLoggerSettings(t *testing.T) {
	var buf strings.Builder
	log, err := newLogger(&buf, "json", "warn")
	require.NoError(t, err)
	log.Info("hidden")
	log.Warn("shown", "k", 1)
	var line map[string]any
	require.NoError(t, json.Unmarshal([]byte(buf.String()), &line), buf.String())
	assert.Equal(t, "shown", line["msg"])
	assert.Equal(t, "WARN", line["level"])

	for _, bad := range [][2]string{{"xml", ""}, {"", "loud"}} {
		_, err := newLogger(io.Discard, bad[0], bad[1])
		assert.Error(t, err, "%q", bad)
	}
	_, err = newLogger(io.Discard, "TEXT", "DEBUG")
	assert.NoError(t, err)
}

// Each request is one JSON line with its request ID, which the response
// echoes: the client's if sensible, else a new one.
func TestRequestLogLines(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	log, err := newLogger(&logs, "json", "info")
	require.NoError(t, err)
	_, _, base := startOps(t, testConfig(), log)

	do := func(path, id string) *http.Response {
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		require.NoError(t, err)
		if id != "" {
			req.Header.Set(requestIDHeader, id)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp
	}
	assert.Equal(t, "abc-123", do("/api/session", "abc-123").Header.Get(requestIDHeader))
	fresh := do("/", "bad id with spaces").Header.Get(requestIDHeader)
	assert.Regexp(t, `^[0-9a-f]{16}$`, fresh)
	do("/healthz", "probe") // debug level: not logged at info

	// A page larger than the response buffer reaches the client before its
	// handler returns and logs: wait for the line rather than race it.
	var lines map[string]map[string]any
	require.Eventually(t, func() bool {
		lines = map[string]map[string]any{}
		sc := bufio.NewScanner(strings.NewReader(logs.String()))
		for sc.Scan() {
			var l map[string]any
			require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
			if l["msg"] == "http request" {
				lines[l["request_id"].(string)] = l
			}
		}
		return lines["abc-123"] != nil && lines[fresh] != nil
	}, 10*time.Second, 10*time.Millisecond, "log lines of both requests")
	require.Contains(t, lines, "abc-123")
	assert.Equal(t, "GET /api/session", lines["abc-123"]["route"])
	assert.Equal(t, "/api/session", lines["abc-123"]["path"])
	assert.EqualValues(t, http.StatusUnauthorized, lines["abc-123"]["status"])
	require.Contains(t, lines, fresh)
	assert.EqualValues(t, http.StatusOK, lines[fresh]["status"])
	assert.NotContains(t, lines, "probe")
}

// A hijacked connection is logged 101 only for a WebSocket upgrade: the
// SSE broker hijacks its streams after a 200 head.
func TestRecorderStatusOfHijacks(t *testing.T) {
	t.Parallel()
	assert.Equal(t, http.StatusSwitchingProtocols, (&recorder{hijacked: true, upgrade: true}).status())
	assert.Equal(t, http.StatusOK, (&recorder{hijacked: true}).status())
	assert.Equal(t, http.StatusOK, (&recorder{}).status())
	assert.Equal(t, http.StatusNotFound, (&recorder{code: http.StatusNotFound}).status())
}
