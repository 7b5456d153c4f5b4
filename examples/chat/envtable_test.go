package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// envName is what an environment variable of the app looks like.
var envName = regexp.MustCompile(`^(ADDR|[A-Z][A-Z0-9]*(_[A-Z0-9]+)+)$`)

// envInCode is every environment variable the app's code names: each
// string literal of a non-test file that looks like one, with its default
// where the code reads it with envOr(NAME, default).
func envInCode(t *testing.T) map[string]string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	fset := token.NewFileSet()
	out := map[string]string{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		require.NoError(t, err)
		ast.Inspect(file, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if id, ok := n.Fun.(*ast.Ident); ok && id.Name == "envOr" && len(n.Args) == 2 {
					name, def := literal(n.Args[0]), literal(n.Args[1])
					if name != "" {
						out[name] = def
					}
				}
			case *ast.CompositeLit:
				// {"CHAT_STATS_EVERY", "2s", &c.StatsEvery}: a name and its default.
				if len(n.Elts) >= 2 && envName.MatchString(literal(n.Elts[0])) {
					out[literal(n.Elts[0])] = literal(n.Elts[1])
				}
			case *ast.BasicLit:
				if s := literal(n); envName.MatchString(s) {
					if _, ok := out[s]; !ok {
						out[s] = ""
					}
				}
			}
			return true
		})
	}
	return out
}

func literal(e ast.Expr) string {
	if l, ok := e.(*ast.BasicLit); ok && l.Kind == token.STRING {
		s, _ := strconv.Unquote(l.Value)
		return s
	}
	return ""
}

// envTable reads the table of environment variables of a README: rows
// "| `NAME` | `default` or — | meaning |", name → default ("" for —).
func envTable(t *testing.T, readme string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(readme)
	require.NoError(t, err)
	row := regexp.MustCompile("(?m)^\\| `([A-Z0-9_]+)` \\| ([^|]*) \\|")
	out := map[string]string{}
	for _, m := range row.FindAllStringSubmatch(string(data), -1) {
		def := strings.TrimSpace(m[2])
		if def == "—" {
			def = ""
		}
		out[m[1]] = strings.Trim(def, "`")
	}
	require.NotEmpty(t, out, "%s has no table of environment variables", readme)
	return out
}

// The README's table (and the Spanish one, and main.go's doc comment)
// lists exactly the variables the code reads, with the code's defaults.
func TestEnvironmentTableMatchesTheCode(t *testing.T) {
	t.Parallel()
	code := envInCode(t)
	for _, readme := range []string{"README.md", "README.es.md"} {
		table := envTable(t, readme)
		assert.Equal(t, sortedKeys(code), sortedKeys(table), "%s: the variables", readme)
		for name, def := range code {
			if def != "" {
				assert.Equal(t, def, table[name], "%s: the default of %s", readme, name)
			}
		}
	}
	doc, err := os.ReadFile("main.go")
	require.NoError(t, err)
	for name := range code {
		assert.Regexp(t, `(?m)^//\t`+name+`\s`, string(doc), "main.go's doc comment lists %s", name)
	}
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestEnvInCodeFindsTheVariables(t *testing.T) {
	code := envInCode(t)
	assert.Equal(t, ":8080", code["ADDR"])
	assert.Equal(t, "2s", code["CHAT_STATS_EVERY"])
	assert.Contains(t, code, "LOG_FORMAT")
	assert.Contains(t, code, "SMTP_PASSWORD")
}
