package handler

import (
	"encoding/json"
	"strconv"
	"strings"
)

// parsedBody is what scheduling needs from an OpenAI-style request body.
type parsedBody struct {
	Model  string
	Prompt string
}

// parseBody extracts the model and the prompt text from a completions or chat-completions
// body. Bodies that are not JSON objects yield an empty result: such requests (e.g. GET
// /v1/models) are still routed, only without model filtering or prefix affinity.
func parseBody(body []byte) parsedBody {
	if len(body) == 0 {
		return parsedBody{}
	}
	var req struct {
		Model    string          `json:"model"`
		Prompt   json.RawMessage `json:"prompt"`
		Messages []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return parsedBody{}
	}
	out := parsedBody{Model: req.Model}
	var b strings.Builder
	if len(req.Prompt) > 0 {
		appendPrompt(&b, req.Prompt)
	}
	// Chat: role and text of every message in order, so that conversations sharing a system
	// prompt and history share a prefix.
	for _, m := range req.Messages {
		b.WriteString(m.Role)
		b.WriteString(": ")
		appendContent(&b, m.Content)
		b.WriteString("\n")
	}
	out.Prompt = b.String()
	return out
}

// appendPrompt handles the completions "prompt": a string, a list of strings, a token list or
// a list of token lists.
func appendPrompt(b *strings.Builder, raw json.RawMessage) {
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
		var n json.Number
		if err := json.Unmarshal(item, &n); err == nil {
			// Token ids: keep them comparable as text.
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(n.String())
			continue
		}
		if i > 0 {
			b.WriteByte('\n')
		}
		appendPrompt(b, item)
	}
}

// appendContent handles chat "content": a string or a list of parts of which the text parts
// count.
func appendContent(b *strings.Builder, raw json.RawMessage) {
	if len(raw) == 0 {
		return
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		b.WriteString(s)
		return
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return
	}
	for _, p := range parts {
		if p.Type == "text" || p.Type == "" {
			b.WriteString(p.Text)
		}
	}
}

// parsePriority reads the request priority header; negative priorities mark sheddable
// requests. Missing or malformed values mean priority 0.
func parsePriority(v string) int {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil {
		return 0
	}
	return n
}
