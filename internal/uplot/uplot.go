// Package uplot serves uPlot (https://github.com/leeoniya/uPlot), a small
// MIT-licensed chart library, vendored from the npm package uplot@1.6.32
// without changes: dist/uPlot.iife.min.js (defines the global uPlot),
// dist/uPlot.min.css and its LICENSE. The tasks inspector and the examples'
// dashboards embed it from here, so pages need no build step and no CDN.
//
// To update: npm pack uplot@VERSION, copy those three files into dist/, and
// change the version above and in [Version].
package uplot

import (
	"embed"
	"io/fs"
	"net/http"
)

// Version is the vendored uplot npm package's version.
const Version = "1.6.32"

//go:embed dist
var dist embed.FS

// FS holds uPlot.iife.min.js, uPlot.min.css and LICENSE at its root.
var FS, _ = fs.Sub(dist, "dist")

// Handler serves the files of [FS]: mount it under a prefix with
// http.StripPrefix, e.g. mux.Handle("GET /uplot/", http.StripPrefix("/uplot", uplot.Handler())),
// and load /uplot/uPlot.iife.min.js and /uplot/uPlot.min.css from the page.
func Handler() http.Handler {
	fsrv := http.FileServerFS(FS)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		fsrv.ServeHTTP(w, r)
	})
}
