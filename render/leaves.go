package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/ultimaker2mqtt/ultimaker2mqtt/bus"
	"github.com/ultimaker2mqtt/ultimaker2mqtt/topics"
)

// Bounds of the values a state is split into (MQTT_OUTPUT=
// attribute_and_json): a field the cloud passes through (the workspace's
// usage) cannot make thousands of topics.
const (
	maxLeaves    = 1000
	maxLeafDepth = 8
)

var errBadJSON = errors.New("render: not valid JSON")

// flat is a JSON document's leaves (strings, numbers, booleans, nulls),
// each with its path: the keys and array indexes that lead to it, joined
// by '/'. Paths and values are kept in one arena, so splitting a state
// costs a few allocations whatever its size; a flat is reused.
type flat struct {
	arena []byte
	items []leafItem
	path  []byte // the path being walked
}

// leafItem locates one leaf's path and value in the arena.
type leafItem struct{ path, pathEnd, value, valueEnd int32 }

func (f *flat) pathOf(it leafItem) []byte  { return f.arena[it.path:it.pathEnd] }
func (f *flat) valueOf(it leafItem) []byte { return f.arena[it.value:it.valueEnd] }

// split reads doc into f, replacing what it held. A string's value is its
// text (an empty string is `""`: an empty payload would clear the topic),
// anything else its JSON (null as "null"). Empty objects and arrays have
// no leaf; keys are made topic-safe (topics.Segment).
func (f *flat) split(doc []byte) error {
	f.arena, f.items, f.path = f.arena[:0], f.items[:0], f.path[:0]
	i, err := f.value(doc, ws(doc, 0), 0)
	if err != nil {
		return err
	}
	if ws(doc, i) != len(doc) {
		return errBadJSON
	}
	return nil
}

// value reads the value at doc[i:] below f.path and returns where it ends.
func (f *flat) value(doc []byte, i, depth int) (int, error) {
	if i >= len(doc) {
		return 0, errBadJSON
	}
	switch c := doc[i]; c {
	case '{', '[':
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		base := len(f.path)
		i = ws(doc, i+1)
		for n := 0; ; n++ {
			if i >= len(doc) {
				return 0, errBadJSON
			}
			if doc[i] == closing && n == 0 {
				return i + 1, nil
			}
			if base > 0 {
				f.path = append(f.path, '/')
			}
			if c == '{' {
				key, end, err := str(doc, i)
				if err != nil {
					return 0, err
				}
				f.path = appendKey(f.path, key)
				if i = ws(doc, end); i >= len(doc) || doc[i] != ':' {
					return 0, errBadJSON
				}
				i = ws(doc, i+1)
			} else {
				f.path = strconv.AppendInt(f.path, int64(n), 10)
			}
			var err error
			if depth+1 >= maxLeafDepth {
				i, err = skipValue(doc, i)
			} else {
				i, err = f.value(doc, i, depth+1)
			}
			if err != nil {
				return 0, err
			}
			f.path = f.path[:base]
			if i = ws(doc, i); i >= len(doc) {
				return 0, errBadJSON
			}
			if doc[i] == closing {
				return i + 1, nil
			}
			if doc[i] != ',' {
				return 0, errBadJSON
			}
			i = ws(doc, i+1)
		}
	case '"':
		s, end, err := str(doc, i)
		if err != nil {
			return 0, err
		}
		if len(s) == 0 {
			s = []byte(`""`)
		}
		f.emit(s)
		return end, nil
	default:
		end := i
	scalar:
		for ; end < len(doc); end++ {
			switch doc[end] {
			case ',', '}', ']', ' ', '\t', '\r', '\n':
				break scalar
			}
		}
		if end == i {
			return 0, errBadJSON
		}
		f.emit(doc[i:end])
		return end, nil
	}
}

func (f *flat) emit(value []byte) {
	if len(f.items) >= maxLeaves {
		return
	}
	p := int32(len(f.arena))
	f.arena = append(f.arena, f.path...)
	v := int32(len(f.arena))
	f.arena = append(f.arena, value...)
	f.items = append(f.items, leafItem{p, v, v, int32(len(f.arena))})
}

// appendKey appends a key, made topic-safe; our own keys are already.
func appendKey(path, key []byte) []byte {
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			s := topics.Segment(string(key))
			if s == "" {
				s = "_"
			}
			return append(path, s...)
		}
	}
	if len(key) == 0 {
		return append(path, '_')
	}
	return append(path, key...)
}

// str reads the string at doc[i:] (its opening quote) and returns its
// text, and where it ends; only a string with escapes is copied.
func str(doc []byte, i int) ([]byte, int, error) {
	if i >= len(doc) || doc[i] != '"' {
		return nil, 0, errBadJSON
	}
	escaped := false
	for j := i + 1; j < len(doc); j++ {
		switch doc[j] {
		case '\\':
			escaped = true
			j++
		case '"':
			if !escaped {
				return doc[i+1 : j], j + 1, nil
			}
			var s string
			if err := json.Unmarshal(doc[i:j+1], &s); err != nil {
				return nil, 0, errBadJSON
			}
			return []byte(s), j + 1, nil
		}
	}
	return nil, 0, errBadJSON
}

// skipValue returns where the value at doc[i:] ends, without reading it.
func skipValue(doc []byte, i int) (int, error) {
	depth := 0
	for i < len(doc) {
		switch doc[i] {
		case '"':
			_, end, err := str(doc, i)
			if err != nil {
				return 0, err
			}
			i = end
			if depth == 0 {
				return i, nil
			}
			continue
		case '{', '[':
			depth++
		case '}', ']':
			if depth--; depth <= 0 {
				return i + 1, nil
			}
		case ',':
			if depth == 0 {
				return i, nil
			}
		}
		i++
	}
	if depth == 0 {
		return i, nil
	}
	return 0, errBadJSON
}

func ws(doc []byte, i int) int {
	for i < len(doc) && (doc[i] == ' ' || doc[i] == '\t' || doc[i] == '\n' || doc[i] == '\r') {
		i++
	}
	return i
}

// leaves calls visit for each leaf of doc (see flat.split).
func leaves(doc []byte, visit func(path string, value []byte)) error {
	var f flat
	if err := f.split(doc); err != nil {
		return err
	}
	for _, it := range f.items {
		visit(string(f.pathOf(it)), f.valueOf(it))
	}
	return nil
}

// splitter makes the messages of the values below state topics, reusing
// its buffers; one per renderer, used under its lock.
type splitter struct{ old, next flat }

// messages are those that bring the values below stateTopic from the
// state old (nil: none) to next (nil: gone): each value that changed or
// appeared, retained, and an empty retained message for each that
// disappeared. Both states come from the same types, so their leaves are
// in the same order but where a list grew or shrank: they are compared
// in step, and by path only past the first difference.
func (s *splitter) messages(stateTopic string, old, next []byte) []bus.Message {
	if old == nil || s.old.split(old) != nil {
		s.old.items = s.old.items[:0]
	}
	if next == nil {
		s.next.items = s.next.items[:0]
	} else if s.next.split(next) != nil {
		return nil // never so for the bridge's own JSON; sending half would be worse
	}
	var out []bus.Message
	send := func(path, value []byte) {
		out = append(out, bus.Message{Topic: stateTopic + "/" + string(path), Payload: bytes.Clone(value), Retain: true})
	}
	o, n := s.old.items, s.next.items
	i := 0
	for ; i < len(o) && i < len(n) && bytes.Equal(s.old.pathOf(o[i]), s.next.pathOf(n[i])); i++ {
		if !bytes.Equal(s.old.valueOf(o[i]), s.next.valueOf(n[i])) {
			send(s.next.pathOf(n[i]), s.next.valueOf(n[i]))
		}
	}
	if i == len(o) && i == len(n) {
		return out
	}
	rest := make(map[string][]byte, len(o)-i)
	for _, it := range o[i:] {
		rest[string(s.old.pathOf(it))] = s.old.valueOf(it)
	}
	for _, it := range n[i:] {
		p := s.next.pathOf(it)
		was, ok := rest[string(p)]
		delete(rest, string(p))
		if !ok || !bytes.Equal(was, s.next.valueOf(it)) {
			send(p, s.next.valueOf(it))
		}
	}
	for p := range rest {
		out = append(out, bus.Message{Topic: stateTopic + "/" + p, Retain: true})
	}
	return out
}

// leafMessages is splitter.messages with buffers of its own.
func leafMessages(stateTopic string, old, next []byte) []bus.Message {
	var s splitter
	return s.messages(stateTopic, old, next)
}
