package handler

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"
)

// parsedBody is what scheduling needs from an OpenAI-style request body.
type parsedBody struct {
	Model  string
	Prompt string
}

// parseBody extracts the model and the prompt text from a completions or chat-completions body:
//
//   - Model is the "model" string.
//   - Prompt is the completions "prompt" (a string; list items joined by "\n", token ids by
//     ","), followed by one "role: text" line per chat message, where text is the message's
//     string content or the concatenated text parts of a content list.
//
// Bodies that are not valid JSON objects, or whose "model", "messages" or message "role" have
// the wrong type, yield an empty result: such requests (e.g. GET /v1/models) are still routed,
// only without model filtering or prefix affinity.
//
// It is a single-pass scanner because the request path is latency-bound: encoding/json spends
// about 40 µs and 7 KB on a 2 KB chat body, this about a tenth. The tests check it against an
// encoding/json reference.
func parseBody(body []byte) parsedBody {
	if len(body) == 0 {
		return parsedBody{}
	}
	s := scanner{data: body}
	defer s.release()
	out, err := s.request()
	if err != nil {
		return parsedBody{}
	}
	return out
}

// scratchPool holds the buffers a message's content is decoded into before it is copied into
// the prompt: pooled because every chat request needs one as large as its body.
var scratchPool = sync.Pool{New: func() any { return new([]byte) }}

var errSyntax = errors.New("invalid JSON")

// maxDepth bounds nesting so that hostile bodies cannot exhaust the stack.
const maxDepth = 512

type scanner struct {
	data    []byte
	pos     int
	depth   int
	keyBuf  []byte  // reused for object keys
	scratch *[]byte // from scratchPool, returned by release
}

// scratchBuffer returns the pooled scratch buffer, emptied.
func (s *scanner) scratchBuffer() []byte {
	if s.scratch == nil {
		s.scratch = scratchPool.Get().(*[]byte)
	}
	return (*s.scratch)[:0]
}

// release returns the scratch buffer (grown to its last use) to the pool.
func (s *scanner) release() {
	if s.scratch != nil {
		scratchPool.Put(s.scratch)
		s.scratch = nil
	}
}

// buffer returns b emptied, allocated on first use with room for the whole body: decoded text
// is rarely longer than its JSON, so appends seldom grow it.
func (s *scanner) buffer(b []byte) []byte {
	if b == nil {
		return make([]byte, 0, len(s.data))
	}
	return b[:0]
}

func (s *scanner) ws() {
	for s.pos < len(s.data) {
		switch s.data[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek skips whitespace and returns the next byte (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.pos >= len(s.data) {
		return 0
	}
	return s.data[s.pos]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return errSyntax
	}
	s.pos++
	return nil
}

// request parses the top-level object.
func (s *scanner) request() (parsedBody, error) {
	var out parsedBody
	var prompt, messages []byte
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "model":
			out.Model, err = s.nullableString()
		case "prompt":
			prompt, err = s.prompt(s.buffer(prompt))
		case "messages":
			messages, err = s.messages()
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return parsedBody{}, err
	}
	if s.peek() != 0 {
		return parsedBody{}, errSyntax // trailing data
	}
	if len(prompt) > 0 {
		messages = append(prompt, messages...)
	}
	// messages is this call's own buffer and is never written again: the prompt string shares
	// its bytes instead of copying them (as strings.Builder does).
	out.Prompt = unsafe.String(unsafe.SliceData(messages), len(messages))
	return out, nil
}

// object parses {"key": value, ...}, calling member with the scanner positioned at each value;
// member must consume the value. key is only valid during the call.
func (s *scanner) object(member func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	s.depth++
	if s.depth > maxDepth {
		return errSyntax
	}
	defer func() { s.depth-- }()
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.peek() != '"' {
			return errSyntax
		}
		key, err := s.appendStr(s.keyBuf[:0])
		if err != nil {
			return err
		}
		s.keyBuf = key
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return errSyntax
		}
	}
}

// array parses [value, ...], calling item for each element.
func (s *scanner) array(item func(i int) error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	s.depth++
	if s.depth > maxDepth {
		return errSyntax
	}
	defer func() { s.depth-- }()
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for i := 0; ; i++ {
		if err := item(i); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return errSyntax
		}
	}
}

// nullableString reads a string or null ("" for null); other types are an error, as they are
// for encoding/json decoding into a string field.
func (s *scanner) nullableString() (string, error) {
	switch s.peek() {
	case '"':
		return s.str()
	case 'n':
		return "", s.literal("null")
	}
	if err := s.skip(); err != nil {
		return "", err
	}
	return "", errSyntax
}

// prompt appends the completions prompt: a string, or a list of strings / token ids / lists.
// Other value types add nothing.
func (s *scanner) prompt(b []byte) ([]byte, error) {
	switch s.peek() {
	case '"':
		return s.appendStr(b)
	case '[':
		err := s.array(func(i int) error {
			if c := s.peek(); c == '-' || (c >= '0' && c <= '9') {
				if i > 0 {
					b = append(b, ',')
				}
				start := s.pos
				if err := s.number(); err != nil {
					return err
				}
				b = append(b, s.data[start:s.pos]...)
				return nil
			}
			if i > 0 {
				b = append(b, '\n')
			}
			var err error
			b, err = s.prompt(b)
			return err
		})
		return b, err
	}
	return b, s.skip()
}

// messages renders the chat messages as "role: text\n" lines.
func (s *scanner) messages() ([]byte, error) {
	if s.peek() == 'n' {
		return nil, s.literal("null")
	}
	if s.peek() != '[' {
		if err := s.skip(); err != nil {
			return nil, err
		}
		return nil, errSyntax
	}
	b := s.buffer(nil)
	err := s.array(func(int) error {
		var role string
		var content []byte
		switch s.peek() {
		case 'n': // a null message decodes as an empty one
			if err := s.literal("null"); err != nil {
				return err
			}
		case '{':
			if err := s.object(func(key []byte) error {
				var err error
				switch string(key) {
				case "role":
					role, err = s.nullableString()
				case "content":
					content, err = s.content(s.scratchBuffer())
					*s.scratch = content[:0] // the pool keeps the buffer as grown
				default:
					err = s.skip()
				}
				return err
			}); err != nil {
				return err
			}
		default:
			if err := s.skip(); err != nil {
				return err
			}
			return errSyntax
		}
		b = append(b, role...)
		b = append(b, ": "...)
		b = append(b, content...)
		b = append(b, '\n')
		return nil
	})
	return b, err
}

// content appends a chat message's text: a string, or the "text" of the parts whose "type" is
// "text" or absent. Other shapes add nothing.
func (s *scanner) content(b []byte) ([]byte, error) {
	switch s.peek() {
	case '"':
		return s.appendStr(b)
	case '[':
		// A part list with a malformed member adds nothing at all, like a failed decode of the
		// whole list: append, and cut back to start on failure.
		start := len(b)
		ok := true
		err := s.array(func(int) error {
			switch s.peek() {
			case 'n': // a null part is an empty one
				return s.literal("null")
			case '{':
			default:
				ok = false
				return s.skip()
			}
			var typ, text string
			var typeOK, textOK = true, true
			err := s.object(func(key []byte) error {
				var err error
				switch string(key) {
				case "type":
					typ, typeOK, err = s.optionalString()
				case "text":
					text, textOK, err = s.optionalString()
				default:
					err = s.skip()
				}
				return err
			})
			if !typeOK || !textOK {
				ok = false
			}
			if typ == "text" || typ == "" {
				b = append(b, text...)
			}
			return err
		})
		if err != nil || !ok {
			return b[:start], err
		}
		return b, nil
	}
	return b, s.skip()
}

// optionalString reads a value; ok is false when it is neither a string nor null.
func (s *scanner) optionalString() (string, bool, error) {
	switch s.peek() {
	case '"':
		v, err := s.str()
		return v, true, err
	case 'n':
		return "", true, s.literal("null")
	}
	return "", false, s.skip()
}

// skip validates and skips one value of any type.
func (s *scanner) skip() error {
	switch c := s.peek(); {
	case c == '"':
		return s.skipString()
	case c == '{':
		return s.object(func([]byte) error { return s.skip() })
	case c == '[':
		return s.array(func(int) error { return s.skip() })
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return s.number()
	}
	return errSyntax
}

func (s *scanner) literal(word string) error {
	if len(s.data)-s.pos < len(word) || string(s.data[s.pos:s.pos+len(word)]) != word {
		return errSyntax
	}
	s.pos += len(word)
	return nil
}

// number skips a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (s *scanner) number() error {
	d := s.data
	i := s.pos
	if i < len(d) && d[i] == '-' {
		i++
	}
	switch {
	case i < len(d) && d[i] == '0':
		i++
	case i < len(d) && d[i] >= '1' && d[i] <= '9':
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
	default:
		return errSyntax
	}
	if i < len(d) && d[i] == '.' {
		i++
		start := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == start {
			return errSyntax
		}
	}
	if i < len(d) && (d[i] == 'e' || d[i] == 'E') {
		i++
		if i < len(d) && (d[i] == '+' || d[i] == '-') {
			i++
		}
		start := i
		for i < len(d) && d[i] >= '0' && d[i] <= '9' {
			i++
		}
		if i == start {
			return errSyntax
		}
	}
	s.pos = i
	return nil
}

// skipString validates and skips a string.
func (s *scanner) skipString() error {
	_, _, err := s.scanString()
	return err
}

// scanString validates the string at pos and moves past it. It returns the index of the
// closing quote and whether the content needs decoding (escapes or non-ASCII bytes).
func (s *scanner) scanString() (end int, complex bool, err error) {
	d := s.data
	i := s.pos + 1 // after the opening quote
	for i < len(d) {
		c := d[i]
		switch {
		case c == '"':
			s.pos = i + 1
			return i, complex, nil
		case c == '\\':
			complex = true
			if i+1 >= len(d) {
				return 0, false, errSyntax
			}
			switch d[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(d) {
					return 0, false, errSyntax
				}
				for _, h := range d[i+2 : i+6] {
					if !isHex(h) {
						return 0, false, errSyntax
					}
				}
				i += 6
			default:
				return 0, false, errSyntax
			}
		case c < 0x20:
			return 0, false, errSyntax
		default:
			if c >= utf8.RuneSelf {
				complex = true
			}
			i++
		}
	}
	return 0, false, errSyntax
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

// str reads a string value.
func (s *scanner) str() (string, error) {
	b, err := s.appendStr(nil)
	return string(b), err
}

// appendStr appends a decoded string value to b. Escapes are decoded; invalid UTF-8 and lone
// surrogates become U+FFFD, as with encoding/json.
func (s *scanner) appendStr(out []byte) ([]byte, error) {
	start := s.pos + 1
	end, complex, err := s.scanString()
	if err != nil {
		return out, err
	}
	raw := s.data[start:end]
	if !complex || (!hasEscape(raw) && utf8.Valid(raw)) {
		return append(out, raw...), nil
	}
	for i := 0; i < len(raw); {
		c := raw[i]
		if c == '\\' {
			switch raw[i+1] {
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r := hex4(raw[i+2 : i+6])
				i += 6
				if utf16.IsSurrogate(r) {
					// A high surrogate followed by an escaped low one forms one rune.
					if i+6 <= len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
						if pair := utf16.DecodeRune(r, hex4(raw[i+2:i+6])); pair != utf8.RuneError {
							out = utf8.AppendRune(out, pair)
							i += 6
							continue
						}
					}
					r = utf8.RuneError
				}
				out = utf8.AppendRune(out, r)
				continue
			default: // '"', '\\', '/'
				out = append(out, raw[i+1])
			}
			i += 2
			continue
		}
		if c < utf8.RuneSelf {
			out = append(out, c)
			i++
			continue
		}
		r, size := utf8.DecodeRune(raw[i:])
		out = utf8.AppendRune(out, r) // RuneError for invalid bytes
		i += size
	}
	return out, nil
}

func hasEscape(b []byte) bool {
	for _, c := range b {
		if c == '\\' {
			return true
		}
	}
	return false
}

func hex4(b []byte) rune {
	var r rune
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		default: // 'A'..'F', validated by scanString
			c = c - 'A' + 10
		}
		r = r<<4 | rune(c)
	}
	return r
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
