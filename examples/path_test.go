// Package examples_test checks the learning path (README.md and its Spanish
// translation README.es.md) against the examples it lists.
package examples_test

import (
	"os"
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// pathRows returns, for each row of the file's learning-path table, the
// example it links and the practice/exercise cell.
func pathRows(t *testing.T, file string) [][2]string {
	t.Helper()
	text, err := os.ReadFile(file)
	require.NoError(t, err)
	var rows [][2]string
	for _, m := range regexp.MustCompile(`(?m)^\| \d \| \[(\w+)\]\((\w+)/\) \| ([^|]+) \|`).FindAllStringSubmatch(string(text), -1) {
		require.Equal(t, m[1], m[2], "%s: the link text is the directory", file)
		rows = append(rows, [2]string{m[1], m[3]})
	}
	return rows
}

func TestLearningPath(t *testing.T) {
	en, es := pathRows(t, "README.md"), pathRows(t, "README.es.md")
	order := []string{"rooms", "email", "live", "notify", "game", "chat"}
	numbers := regexp.MustCompile(`\d+`)
	// The week's practices (35-38) and exercises (1-6), each mapped once.
	want := [][]string{{"35", "1"}, {"36", "2"}, {"37", "3"}, {"4"}, {"5"}, {"38", "6"}}
	for _, rows := range [][][2]string{en, es} {
		require.Len(t, rows, len(order))
		for i, r := range rows {
			assert.Equal(t, order[i], r[0], "row %d", i+1)
			assert.Equal(t, want[i], numbers.FindAllString(r[1], -1), "row %d (%s)", i+1, r[0])
		}
	}
	// Every example the path links that exists has a main package; the
	// ones still being written are listed so that nobody forgets them.
	for _, dir := range order {
		if _, err := os.Stat(dir + "/main.go"); err != nil {
			t.Logf("learning path: examples/%s has no main.go yet", dir)
		}
	}
}

// The top-level README links the learning path in both languages, and its
// commands for one machine listen on loopback only.
func TestTopReadme(t *testing.T) {
	text, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	assert.Contains(t, string(text), "(examples/README.md)")
	assert.Contains(t, string(text), "(examples/README.es.md)")
	for _, m := range regexp.MustCompile(`(?m)^.*\bADDR=(\S+) .*go run .*$`).FindAllStringSubmatch(string(text), -1) {
		assert.Regexp(t, `^127\.0\.0\.1:\d+$`, m[1], "README.md: %q", m[0])
	}
}
