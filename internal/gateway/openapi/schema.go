package openapi

import (
	"reflect"
	"sort"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/internal/manifest"
)

// schemaName is the component name of a message: its name without package.
func schemaName(md protoreflect.MessageDescriptor) string { return string(md.Name()) }

func addMessageSchema(schemas obj, md protoreflect.MessageDescriptor) {
	name := schemaName(md)
	if _, ok := schemas[name]; ok {
		return
	}
	props := obj{}
	schemas[name] = obj{"type": "object", "properties": props}
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		props[fd.JSONName()] = fieldSchema(schemas, fd)
	}
}

func fieldSchema(schemas obj, fd protoreflect.FieldDescriptor) obj {
	if fd.IsMap() {
		return obj{"type": "object", "additionalProperties": singularSchema(schemas, fd.MapValue())}
	}
	s := singularSchema(schemas, fd)
	if fd.IsList() {
		return obj{"type": "array", "items": s}
	}
	return s
}

func singularSchema(schemas obj, fd protoreflect.FieldDescriptor) obj {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return obj{"type": "boolean"}
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return obj{"type": "integer", "format": "int32"}
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return obj{"type": "integer", "format": "int32", "minimum": 0}
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return obj{"type": "string", "format": "int64"}
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return obj{"type": "string", "format": "uint64"}
	case protoreflect.FloatKind:
		return obj{"type": "number", "format": "float"}
	case protoreflect.DoubleKind:
		return obj{"type": "number", "format": "double"}
	case protoreflect.StringKind:
		return obj{"type": "string"}
	case protoreflect.BytesKind:
		return obj{"type": "string", "format": "byte"}
	case protoreflect.EnumKind:
		vals := fd.Enum().Values()
		names := make([]string, 0, vals.Len())
		for i := 0; i < vals.Len(); i++ {
			names = append(names, contract.ValueName(fd.Enum(), vals.Get(i).Number()))
		}
		return obj{"type": "string", "enum": names}
	case protoreflect.MessageKind, protoreflect.GroupKind:
		md := fd.Message()
		if md.FullName() == "google.protobuf.Timestamp" {
			return obj{"type": "string", "format": "date-time"}
		}
		addMessageSchema(schemas, md)
		return ref(schemaName(md))
	}
	return obj{}
}

var quantityType = reflect.TypeOf(manifest.Quantity(""))

// goSchema derives a schema from a Go type by its json tags, the way
// encoding/json (and so the manifest parser) reads it.
func goSchema(t reflect.Type) obj {
	if t == quantityType {
		return obj{
			"oneOf":       []obj{{"type": "string"}, {"type": "number"}},
			"description": "A quantity: CPU cores as 250m, 0.5 or 2; bytes as 64Mi, 1G or 1048576.",
		}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return goSchema(t.Elem())
	case reflect.String:
		return obj{"type": "string"}
	case reflect.Bool:
		return obj{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return obj{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return obj{"type": "number"}
	case reflect.Slice, reflect.Array:
		return obj{"type": "array", "items": goSchema(t.Elem())}
	case reflect.Map:
		return obj{"type": "object", "additionalProperties": goSchema(t.Elem())}
	case reflect.Struct:
		props := obj{}
		var required []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			tag := f.Tag.Get("json")
			name, opts, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = f.Name
			}
			props[name] = goSchema(f.Type)
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer && f.Type.Kind() != reflect.Bool {
				required = append(required, name)
			}
		}
		o := obj{"type": "object", "properties": props}
		if len(required) > 0 {
			sort.Strings(required)
			o["required"] = required
		}
		return o
	}
	return obj{}
}
