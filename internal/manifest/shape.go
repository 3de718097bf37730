package manifest

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
)

var (
	manifestType    = reflect.TypeFor[Manifest]()
	quantityType    = reflect.TypeFor[Quantity]()
	statusRangeType = reflect.TypeFor[StatusRange]()
)

// checkShape compares a generic JSON value (decoded with UseNumber) with the
// Go type it will be decoded into and records unknown fields and wrong types
// with their full paths, array indices included. It is stricter than
// encoding/json: keys must match the field names exactly, not just up to
// case. JSON null is accepted anywhere and leaves the zero value.
func checkShape(c *collector, path string, v any, t reflect.Type) {
	if v == nil {
		return
	}
	if t == statusRangeType {
		switch v.(type) {
		case string, json.Number:
		default:
			c.add(path, "must be a status code such as 200 or a range such as \"200-299\", got %s", jsonKind(v))
		}
		return
	}
	if t == quantityType {
		switch v.(type) {
		case string, json.Number:
		default:
			c.add(path, "must be a quantity such as \"250m\" or \"64Mi\", got %s", jsonKind(v))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		checkShape(c, path, v, t.Elem())
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			c.add(path, "must be a mapping, got %s", jsonKind(v))
			return
		}
		fields := structFields(t)
		for _, k := range sortedKeys(obj) {
			f, ok := fields[k]
			if !ok {
				c.add(keyPath(path, k), "%s", unknownReason(k, fields))
				continue
			}
			checkShape(c, keyPath(path, k), obj[k], f.Type)
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			c.add(path, "must be a mapping, got %s", jsonKind(v))
			return
		}
		for _, k := range sortedKeys(obj) {
			checkShape(c, keyPath(path, k), obj[k], t.Elem())
		}
	case reflect.Slice:
		arr, ok := v.([]any)
		if !ok {
			c.add(path, "must be a list, got %s", jsonKind(v))
			return
		}
		for i, e := range arr {
			checkShape(c, index(path, i), e, t.Elem())
		}
	case reflect.String:
		if _, ok := v.(string); !ok {
			reason := "must be a string, got " + jsonKind(v)
			if _, isBool := v.(bool); isBool {
				reason += ` (in YAML, quote words such as "no", "yes", "on" and "off")`
			}
			c.add(path, "%s", reason)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			c.add(path, "must be true or false, got %s", jsonKind(v))
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := v.(json.Number)
		if !ok {
			c.add(path, "must be an integer, got %s", jsonKind(v))
			return
		}
		i, err := n.Int64()
		if err != nil {
			if strings.ContainsAny(n.String(), ".eE") {
				c.add(path, "must be an integer, got %s", n)
			} else {
				c.add(path, "integer out of range")
			}
			return
		}
		if reflect.New(t).Elem().OverflowInt(i) {
			c.add(path, "integer out of range")
		}
	default:
		// Every type in Manifest is covered above; TestShapeCoversAllTypes
		// catches a new one that is not.
		c.add(path, "unsupported field type %s", t)
	}
}

func unknownReason(key string, fields map[string]reflect.StructField) string {
	for name := range fields {
		if strings.EqualFold(name, key) {
			return `unknown field (did you mean "` + name + `"?)`
		}
	}
	return "unknown field"
}

// structFields maps JSON names to the fields of a struct type.
func structFields(t reflect.Type) map[string]reflect.StructField {
	out := make(map[string]reflect.StructField, t.NumField())
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		out[name] = f
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func jsonKind(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	}
	return "null"
}
