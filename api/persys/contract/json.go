package contract

import (
	"bytes"
	"encoding/json"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MarshalJSON is o.Marshal(m) with every enum value in the canonical
// spelling ("state": "RUNNING"). Object keys come out sorted.
func MarshalJSON(o protojson.MarshalOptions, m proto.Message) ([]byte, error) {
	b, err := o.Marshal(m)
	if err != nil {
		return nil, err
	}
	v, err := decode(b)
	if err != nil {
		return nil, err
	}
	v = rewriteMessage(v, m.ProtoReflect().Descriptor(), func(ed protoreflect.EnumDescriptor, s string) string {
		if n, ok := Parse(ed, s); ok {
			return ValueName(ed, n)
		}
		return s
	})
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if o.Multiline || o.Indent != "" {
		indent := o.Indent
		if indent == "" {
			indent = "  "
		}
		enc.SetIndent("", indent)
	}
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON is o.Unmarshal(b, m) that also reads enum values in the
// canonical spelling; the full protobuf names and numbers still work.
func UnmarshalJSON(o protojson.UnmarshalOptions, b []byte, m proto.Message) error {
	v, err := decode(b)
	if err != nil {
		// protojson names the problem better than a second parser would.
		return o.Unmarshal(b, m)
	}
	v = rewriteMessage(v, m.ProtoReflect().Descriptor(), func(ed protoreflect.EnumDescriptor, s string) string {
		if n, ok := Parse(ed, s); ok {
			return string(ed.Values().ByNumber(n).Name())
		}
		return s
	})
	fixed, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return o.Unmarshal(fixed, m)
}

func decode(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return v, nil
}

type respell func(protoreflect.EnumDescriptor, string) string

// rewriteMessage respells the enum strings of v, the JSON form of a
// message of type md. Well-known types have their own JSON forms and
// hold no enums of ours, so they are left alone; so is whatever does not
// have the shape md expects, for protojson to refuse.
func rewriteMessage(v any, md protoreflect.MessageDescriptor, fix respell) any {
	obj, ok := v.(map[string]any)
	if !ok || strings.HasPrefix(string(md.FullName()), "google.protobuf.") {
		return v
	}
	fields := md.Fields()
	for k, fv := range obj {
		fd := fields.ByJSONName(k)
		if fd == nil {
			fd = fields.ByTextName(k)
		}
		if fd == nil {
			continue
		}
		obj[k] = rewriteField(fv, fd, fix)
	}
	return obj
}

func rewriteField(v any, fd protoreflect.FieldDescriptor, fix respell) any {
	switch {
	case fd.IsMap():
		if m, ok := v.(map[string]any); ok {
			for k, e := range m {
				m[k] = rewriteSingular(e, fd.MapValue(), fix)
			}
		}
	case fd.IsList():
		if l, ok := v.([]any); ok {
			for i, e := range l {
				l[i] = rewriteSingular(e, fd, fix)
			}
		}
	default:
		return rewriteSingular(v, fd, fix)
	}
	return v
}

func rewriteSingular(v any, fd protoreflect.FieldDescriptor, fix respell) any {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if s, ok := v.(string); ok && fd.Enum().FullName() != "google.protobuf.NullValue" {
			return fix(fd.Enum(), s)
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return rewriteMessage(v, fd.Message(), fix)
	}
	return v
}
