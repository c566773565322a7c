package connect

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
)

// FieldProblem is one value of the wrong type in an answer: the field is
// treated as absent. Path names the field from the top of data, with []
// for any list element (printers[].faults[].severity), so one problem in a
// list of a thousand printers is one problem.
type FieldProblem struct {
	Path string
	Err  error
	// Skipped is true when the problem was in a record's identity (a
	// printer's uuid or unique_name, a job's uuid, a cluster's id): the
	// record was left out, its siblings were kept.
	Skipped bool
}

// identityFields are the fields without which a list element cannot be
// told apart from its siblings; an element whose identity is unreadable
// is dropped rather than published under a made-up key.
var identityFields = map[reflect.Type][]string{
	reflect.TypeFor[Printer]():  {"uuid", "unique_name"},
	reflect.TypeFor[PrintJob](): {"uuid"},
	reflect.TypeFor[Cluster]():  {"cluster_id"},
}

var unmarshalerType = reflect.TypeFor[json.Unmarshaler]()

// decodeLenient decodes raw into v (a pointer) field by field: a field of
// the wrong type stays at its zero value and is reported, and the rest of
// the answer is kept. It is the slow path, taken only when the ordinary
// decoder met a type error (it stops reporting at the first one and
// cannot say which list element it was in).
func decodeLenient(raw []byte, v any) ([]FieldProblem, error) {
	var probs []FieldProblem
	rv := reflect.ValueOf(v).Elem()
	if err := decodeValue(raw, rv, "", &probs); err != nil {
		return probs, err
	}
	return probs, nil
}

// decodeValue decodes raw into v. It returns an error only when raw is
// not what v is at all (an object where a list belongs); the caller then
// records that as a problem of v's own field.
func decodeValue(raw []byte, v reflect.Value, path string, probs *[]FieldProblem) error {
	if isNull(raw) {
		v.SetZero()
		return nil
	}
	if v.CanAddr() && v.Addr().Type().Implements(unmarshalerType) {
		return json.Unmarshal(raw, v.Addr().Interface())
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		if err := decodeValue(raw, elem.Elem(), path, probs); err != nil {
			return err
		}
		v.Set(elem)
		return nil
	case reflect.Struct:
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(raw, &fields); err != nil {
			return errors.New("not an object")
		}
		decodeStruct(fields, v, path, probs)
		return nil
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.Uint8 { // json.RawMessage, []byte
			return json.Unmarshal(raw, v.Addr().Interface())
		}
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return errors.New("not a list")
		}
		out := reflect.MakeSlice(v.Type(), 0, len(items))
		elemPath := path + "[]"
		for _, item := range items {
			elem := reflect.New(v.Type().Elem()).Elem()
			var mine []FieldProblem
			if err := decodeValue(item, elem, elemPath, &mine); err != nil {
				*probs = append(*probs, FieldProblem{Path: elemPath, Err: err, Skipped: true})
				continue
			}
			if id := brokenIdentity(elem.Type(), elemPath, mine); id != "" {
				*probs = append(*probs, FieldProblem{Path: id, Err: errors.New("unreadable identity"), Skipped: true})
				continue
			}
			*probs = append(*probs, mine...)
			out = reflect.Append(out, elem)
		}
		v.Set(out)
		return nil
	}
	return json.Unmarshal(raw, v.Addr().Interface())
}

// decodeStruct fills the fields of struct v from fields, including those
// of embedded structs (PrintJobDetails embeds PrintJob).
func decodeStruct(fields map[string]json.RawMessage, v reflect.Value, path string, probs *[]FieldProblem) {
	t := v.Type()
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		if f.Anonymous && f.Type.Kind() == reflect.Struct {
			decodeStruct(fields, v.Field(i), path, probs)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		raw, ok := fields[name]
		if !ok {
			continue
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		fv := v.Field(i)
		if err := decodeValue(raw, fv, p, probs); err != nil {
			fv.SetZero()
			*probs = append(*probs, FieldProblem{Path: p, Err: err})
		}
	}
}

// brokenIdentity returns the path of an identity field of t that failed
// to decode, or "".
func brokenIdentity(t reflect.Type, path string, probs []FieldProblem) string {
	for _, id := range identityFields[t] {
		for _, p := range probs {
			if p.Path == path+"."+id {
				return p.Path
			}
		}
	}
	return ""
}

func isNull(raw []byte) bool {
	s := strings.TrimSpace(string(raw))
	return s == "null"
}

// DecodeLenient decodes raw into v (a pointer) as the client decodes the
// Connect API's answers: a value of the wrong type costs that field (it is
// reported), never the answer. The LAN source decodes the printers' own
// JSON, which shares Cura's models and drifts the same way.
func DecodeLenient(raw []byte, v any) ([]FieldProblem, error) {
	if err := json.Unmarshal(raw, v); err == nil {
		return nil, nil
	} else if _, typeErr := errors.AsType[*json.UnmarshalTypeError](err); !typeErr {
		return nil, err
	}
	return decodeLenient(raw, v)
}
