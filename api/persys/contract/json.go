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
// spelling ("state":"RUNNING"); field order and everything else stay as
// protojson writes them.
func MarshalJSON(o protojson.MarshalOptions, m proto.Message) ([]byte, error) {
	b, err := o.Marshal(m)
	if err != nil {
		return nil, err
	}
	out, err := respellJSON(b, m.ProtoReflect().Descriptor(), func(ed protoreflect.EnumDescriptor, s string) string {
		if n, ok := Parse(ed, s); ok {
			return ValueName(ed, n)
		}
		return s
	})
	if err != nil {
		return nil, err
	}
	if o.Multiline || o.Indent != "" {
		indent := o.Indent
		if indent == "" {
			indent = "  "
		}
		var buf bytes.Buffer
		if err := json.Indent(&buf, out, "", indent); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	return out, nil
}

// UnmarshalJSON is o.Unmarshal(b, m) that also reads enum values in the
// canonical spelling; the full protobuf names and numbers still work.
func UnmarshalJSON(o protojson.UnmarshalOptions, b []byte, m proto.Message) error {
	fixed, err := respellJSON(b, m.ProtoReflect().Descriptor(), func(ed protoreflect.EnumDescriptor, s string) string {
		if n, ok := Parse(ed, s); ok {
			return string(ed.Values().ByNumber(n).Name())
		}
		return s
	})
	if err != nil {
		// protojson names the problem better than a second parser would.
		return o.Unmarshal(b, m)
	}
	return o.Unmarshal(fixed, m)
}

type respell func(protoreflect.EnumDescriptor, string) string

// shape is what a JSON value holds as protojson maps md: a message, an
// enum, or a list or map of those. The zero shape is copied untouched.
type shape struct {
	md    protoreflect.MessageDescriptor
	ed    protoreflect.EnumDescriptor
	elem  *shape
	isMap bool
}

func fieldShape(fd protoreflect.FieldDescriptor) *shape {
	switch {
	case fd.IsMap():
		return &shape{elem: singularShape(fd.MapValue()), isMap: true}
	case fd.IsList():
		return &shape{elem: singularShape(fd)}
	}
	return singularShape(fd)
}

// singularShape is nil for scalars and for well-known types, which have
// JSON forms of their own and hold no enums of ours.
func singularShape(fd protoreflect.FieldDescriptor) *shape {
	switch fd.Kind() {
	case protoreflect.EnumKind:
		if fd.Enum().FullName() != "google.protobuf.NullValue" {
			return &shape{ed: fd.Enum()}
		}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if !strings.HasPrefix(string(fd.Message().FullName()), "google.protobuf.") {
			return &shape{md: fd.Message()}
		}
	}
	return nil
}

// rewriter copies JSON token by token, keeping every token's bytes but
// the enum strings it respells; the output is compact.
type rewriter struct {
	dec  *json.Decoder
	in   []byte
	last int64
	out  bytes.Buffer
	fix  respell
}

func respellJSON(b []byte, md protoreflect.MessageDescriptor, fix respell) ([]byte, error) {
	r := &rewriter{dec: json.NewDecoder(bytes.NewReader(b)), in: b, fix: fix}
	r.dec.UseNumber()
	if err := r.value(&shape{md: md}); err != nil {
		return nil, err
	}
	return r.out.Bytes(), nil
}

// token reads the next token and the input bytes it was read from.
func (r *rewriter) token() (json.Token, []byte, error) {
	t, err := r.dec.Token()
	if err != nil {
		return nil, nil, err
	}
	end := r.dec.InputOffset()
	raw := bytes.TrimLeft(r.in[r.last:end], " \t\r\n,:")
	r.last = end
	return t, raw, nil
}

func (r *rewriter) value(s *shape) error {
	t, raw, err := r.token()
	if err != nil {
		return err
	}
	switch t {
	case json.Delim('{'):
		return r.object(s)
	case json.Delim('['):
		var elem *shape
		if s != nil && s.md == nil && s.ed == nil && !s.isMap {
			elem = s.elem
		}
		return r.array(elem)
	}
	if str, ok := t.(string); ok && s != nil && s.ed != nil {
		if fixed := r.fix(s.ed, str); fixed != str {
			b, err := json.Marshal(fixed)
			if err != nil {
				return err
			}
			r.out.Write(b)
			return nil
		}
	}
	r.out.Write(raw)
	return nil
}

func (r *rewriter) object(s *shape) error {
	r.out.WriteByte('{')
	for first := true; r.dec.More(); first = false {
		key, raw, err := r.token()
		if err != nil {
			return err
		}
		if !first {
			r.out.WriteByte(',')
		}
		r.out.Write(raw)
		r.out.WriteByte(':')
		if err := r.value(memberShape(s, key)); err != nil {
			return err
		}
	}
	if _, _, err := r.token(); err != nil {
		return err
	}
	r.out.WriteByte('}')
	return nil
}

// memberShape is the shape of the value under key in an object of shape
// s; protojson reads fields by their JSON or their proto name.
func memberShape(s *shape, key json.Token) *shape {
	switch {
	case s == nil:
		return nil
	case s.isMap:
		return s.elem
	case s.md == nil:
		return nil
	}
	k, _ := key.(string)
	fields := s.md.Fields()
	fd := fields.ByJSONName(k)
	if fd == nil {
		fd = fields.ByTextName(k)
	}
	if fd == nil {
		return nil
	}
	return fieldShape(fd)
}

func (r *rewriter) array(elem *shape) error {
	r.out.WriteByte('[')
	for first := true; r.dec.More(); first = false {
		if !first {
			r.out.WriteByte(',')
		}
		if err := r.value(elem); err != nil {
			return err
		}
	}
	if _, _, err := r.token(); err != nil {
		return err
	}
	r.out.WriteByte(']')
	return nil
}
