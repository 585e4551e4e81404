package handler

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

// referenceParseBody states parseBody's contract with encoding/json: exact (case-sensitive)
// keys, and any type mismatch in model, messages, a message or a role empties the result.
func referenceParseBody(body []byte) parsedBody {
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&top); err != nil || top == nil || dec.More() {
		return parsedBody{}
	}
	if _, err := dec.Token(); err == nil { // trailing data after the object
		return parsedBody{}
	}
	var out parsedBody
	if raw, ok := top["model"]; ok && json.Unmarshal(raw, &out.Model) != nil {
		return parsedBody{}
	}
	var b strings.Builder
	if raw, ok := top["prompt"]; ok {
		refPrompt(&b, raw)
	}
	if raw, ok := top["messages"]; ok {
		var msgs []json.RawMessage
		if json.Unmarshal(raw, &msgs) != nil {
			return parsedBody{}
		}
		for _, m := range msgs {
			var fields map[string]json.RawMessage
			if json.Unmarshal(m, &fields) != nil {
				return parsedBody{}
			}
			var role string
			if r, ok := fields["role"]; ok && json.Unmarshal(r, &role) != nil {
				return parsedBody{}
			}
			b.WriteString(role + ": " + refContent(fields["content"]) + "\n")
		}
	}
	out.Prompt = b.String()
	return out
}

func refPrompt(b *strings.Builder, raw json.RawMessage) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b.WriteString(s)
		return
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		return
	}
	for i, item := range list {
		if c := item[0]; c == '-' || (c >= '0' && c <= '9') {
			if i > 0 {
				b.WriteByte(',')
			}
			b.Write(item)
			continue
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		refPrompt(b, item)
	}
}

func refContent(raw json.RawMessage) string {
	if raw == nil {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []json.RawMessage
	if json.Unmarshal(raw, &parts) != nil {
		return ""
	}
	var b strings.Builder
	for _, p := range parts {
		var fields map[string]json.RawMessage
		if json.Unmarshal(p, &fields) != nil {
			return ""
		}
		var typ, text string
		if t, ok := fields["type"]; ok && json.Unmarshal(t, &typ) != nil {
			return ""
		}
		if t, ok := fields["text"]; ok && json.Unmarshal(t, &text) != nil {
			return ""
		}
		if typ == "text" || typ == "" {
			b.WriteString(text)
		}
	}
	return b.String()
}

func TestParseBody(t *testing.T) {
	cases := []struct{ body, model, prompt string }{
		{`{"model":"m","prompt":"abc"}`, "m", "abc"},
		{`{"model":"m","prompt":["a","b"]}`, "m", "a\nb"},
		{`{"model":"m","prompt":[1,2,-3e2]}`, "m", "1,2,-3e2"},
		{`{"model":"m","prompt":[[1,2],[3]]}`, "m", "1,2\n3"},
		{`{"model":"m","messages":[{"role":"user","content":[{"type":"text","text":"hi"},{"type":"image_url","image_url":{"url":"x"}},{"text":"!"}]}]}`, "m", "user: hi!\n"},
		{`{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":"why?"}],"model":"m"}`, "m", "system: be brief\nuser: why?\n"},
		{` {"model" : "esc\"aped\\ \u00e9\ud83d\ude00\/" } `, "esc\"aped\\ é😀/", ""},
		{`{"model":"m","messages":null,"prompt":null}`, "m", ""},
		{`{"model":5}`, "", ""},
		{`{"model":"m","messages":[{"role":7}]}`, "", ""},
		{`{"model":"m","messages":"hi"}`, "", ""},
		{`{"model":"m"} trailing`, "", ""},
		{`{"model":"m",}`, "", ""},
		{`{"model":"m","x":[1,2,{"y":tru}]}`, "", ""},
		{`not json`, "", ""},
		{`[]`, "", ""},
		{``, "", ""},
	}
	for _, c := range cases {
		got := parseBody([]byte(c.body))
		if got.Model != c.model || got.Prompt != c.prompt {
			t.Errorf("parseBody(%s) = %+v, want model %q prompt %q", c.body, got, c.model, c.prompt)
		}
		if ref := referenceParseBody([]byte(c.body)); ref != got {
			t.Errorf("parseBody(%s) = %+v, reference %+v", c.body, got, ref)
		}
	}
	deep := strings.Repeat("[", maxDepth+1) + strings.Repeat("]", maxDepth+1)
	if got := parseBody([]byte(`{"model":"m","x":` + deep + `}`)); got.Model != "" {
		t.Errorf("nesting beyond %d accepted", maxDepth)
	}
}

// randomValue builds JSON (sometimes slightly broken) that exercises the shapes parseBody reads.
func randomValue(r *rand.Rand, depth int) string {
	strs := []string{`"a"`, `"user"`, `"text"`, `"x\"y"`, `"\u00e9\ud83d\ude00"`, `"\ud800x"`, "\"caf\xc3\xa9\"", "\"bad\xff\"", `"\n"`, `""`, `"12"`}
	switch k := r.Intn(10); {
	case depth > 3 || k < 3:
		return strs[r.Intn(len(strs))]
	case k < 5:
		return []string{"0", "-1", "2.5", "1e3", "null", "true", "false", "01", "1.", "-"}[r.Intn(10)]
	case k < 7:
		n := r.Intn(4)
		items := make([]string, n)
		for i := range items {
			items[i] = randomValue(r, depth+1)
		}
		return "[" + strings.Join(items, ",") + "]"
	default:
		// Distinct keys: which of two duplicate members counts is left unspecified.
		keys := []string{"model", "prompt", "messages", "role", "content", "type", "text", "Model", "other"}
		r.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
		items := make([]string, r.Intn(4))
		for i := range items {
			items[i] = fmt.Sprintf("%q:%s", keys[i], randomValue(r, depth+1))
		}
		return "{" + strings.Join(items, ",") + "}"
	}
}

func randomBody(r *rand.Rand) string {
	msgs := make([]string, r.Intn(4))
	for i := range msgs {
		switch r.Intn(5) {
		case 0:
			msgs[i] = randomValue(r, 1)
		case 1:
			msgs[i] = fmt.Sprintf(`{"role":%s,"content":[{"type":"text","text":%s},%s]}`, randomValue(r, 3), randomValue(r, 3), randomValue(r, 2))
		default:
			msgs[i] = fmt.Sprintf(`{"role":%s,"content":%s}`, randomValue(r, 3), randomValue(r, 2))
		}
	}
	fields := []string{
		`"model":` + randomValue(r, 3),
		`"prompt":` + randomValue(r, 1),
		`"messages":[` + strings.Join(msgs, ",") + `]`,
		`"stream":` + randomValue(r, 2),
	}
	r.Shuffle(len(fields), func(i, j int) { fields[i], fields[j] = fields[j], fields[i] })
	return "{" + strings.Join(fields[:1+r.Intn(len(fields))], ",") + "}"
}

func TestParseBodyMatchesReference(t *testing.T) {
	r := rand.New(rand.NewSource(7))
	nonEmpty := 0
	for i := 0; i < 20000; i++ {
		body := randomBody(r)
		if r.Intn(20) == 0 { // truncate some bodies
			body = body[:r.Intn(len(body))]
		}
		got, want := parseBody([]byte(body)), referenceParseBody([]byte(body))
		if got != want {
			t.Fatalf("body %s:\n got  %+v\n want %+v", body, got, want)
		}
		if got.Prompt != "" {
			nonEmpty++
		}
	}
	if nonEmpty < 1000 {
		t.Fatalf("only %d random bodies produced a prompt; the generator is too broken to test much", nonEmpty)
	}
}

// The prompt shares its parse's buffer and message contents pass through a pooled one: results
// kept across many parses must still be what each body says.
func TestParsedPromptsStayIntact(t *testing.T) {
	r := rand.New(rand.NewSource(11))
	bodies := make([]string, 500)
	got := make([]parsedBody, len(bodies))
	for i := range bodies {
		bodies[i] = randomBody(r)
		got[i] = parseBody([]byte(bodies[i]))
	}
	for i, body := range bodies {
		if want := referenceParseBody([]byte(body)); got[i] != want {
			t.Fatalf("body %d %s, after later parses:\n got  %+v\n want %+v", i, body, got[i], want)
		}
	}
}

func FuzzParseBody(f *testing.F) {
	for _, s := range []string{`{"model":"m","prompt":"abc"}`, `{"messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}]}`, `{"prompt":[1,[2,"x"]]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		if got, want := parseBody(body), referenceParseBody(body); got != want {
			t.Fatalf("body %q: got %+v want %+v", body, got, want)
		}
	})
}

func BenchmarkParseBody(b *testing.B) {
	body := []byte(fmt.Sprintf(`{"model":"bench-model","stream":true,"max_tokens":128,"messages":[{"role":"system","content":%q},{"role":"user","content":%q}]}`,
		strings.Repeat("inference gateway ", 85), strings.Repeat("token ", 85)))
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		parseBody(body)
	}
}
