package uplot_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/rtkit/rtkit/internal/uplot"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestHandler(t *testing.T) {
	srv := httptest.NewServer(http.StripPrefix("/uplot", uplot.Handler()))
	defer srv.Close()
	for path, want := range map[string]string{
		"/uplot/uPlot.iife.min.js": "uPlot",
		"/uplot/uPlot.min.css":     ".uplot",
		"/uplot/LICENSE":           "MIT License",
	} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d, %d bytes; want 200 containing %q", path, res.StatusCode, len(body), want)
		}
	}
}
