package realtime

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"net/http"
	"time"
)

//go:embed js/rtkit.js
var clientJS []byte

var clientETag = func() string {
	sum := sha256.Sum256(clientJS)
	return `"` + hex.EncodeToString(sum[:12]) + `"`
}()

// ClientHandler serves the browser client, a dependency-free ES module
// (import { connect } from "/rtkit.js"), with a strong ETag so browsers
// revalidate it cheaply. Mount it wherever pages can import it, e.g.
// mux.Handle("GET /rtkit.js", realtime.ClientHandler()).
func ClientHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/javascript; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("ETag", clientETag)
		h.Set("X-Content-Type-Options", "nosniff")
		http.ServeContent(w, r, "rtkit.js", time.Time{}, bytes.NewReader(clientJS))
	})
}
