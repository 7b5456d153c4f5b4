package inspect

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestUnescapeHTMLKeepsTheValue(t *testing.T) {
	for _, v := range []any{
		map[string]any{"a": "<b>&</b>", "b": `\u003c`, "c": `\\u003C\`, "<key>": []any{"x\u003Cy", 1.5, nil}},
		`"quoted" \ <`,
		"plain",
	} {
		raw, err := json.Marshal(v)
		require.NoError(t, err)
		out := unescapeHTML(raw)
		var before, after any
		require.NoError(t, json.Unmarshal(raw, &before))
		require.NoError(t, json.Unmarshal(out, &after), "%s", out)
		assert.Equal(t, before, after, "%s -> %s", raw, out)
	}
	raw, _ := json.Marshal(map[string]string{"a": "<b>&</b>"})
	assert.Equal(t, `{"a":"<b>&</b>"}`, string(unescapeHTML(raw)))
	assert.Equal(t, `"<\\u003C>&"`, string(unescapeHTML([]byte(`"\u003C\\u003C\u003E\u0026"`))))
}
