package manifest

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// named is a small valid manifest of a container workload called name.
func named(name string) string {
	return "kind: Workload\nmetadata: {name: " + name + "}\nspec:\n  type: container\n  container: {image: busybox}\n"
}

// stream joins documents with --- lines.
func stream(docs ...string) string { return strings.Join(docs, "---\n") }

func TestSplitDocuments(t *testing.T) {
	type doc struct {
		line int
		data string
	}
	tests := []struct {
		name  string
		input string
		want  []doc
	}{
		{"one document", "a: 1\n", []doc{{1, "a: 1\n"}}},
		{"no final newline", "a: 1\n---\nb: 2", []doc{{1, "a: 1\n"}, {2, "---\nb: 2"}}},
		{"leading marker", "---\na: 1\n", []doc{{1, "---\na: 1\n"}}},
		{"two documents", "a: 1\n---\nb: 2\n", []doc{{1, "a: 1\n"}, {2, "---\nb: 2\n"}}},
		{"marker with a comment", "a: 1\n--- # the next one\nb: 2\n", []doc{{1, "a: 1\n"}, {2, "--- # the next one\nb: 2\n"}}},
		{"marker with trailing blanks", "a: 1\n--- \t\nb: 2\n", []doc{{1, "a: 1\n"}, {2, "--- \t\nb: 2\n"}}},
		{"content on the marker line", "a: 1\n--- {b: 2}\n", []doc{{1, "a: 1\n"}, {2, "--- {b: 2}\n"}}},
		{"empty and comment-only documents skipped", "---\n# only a comment\n---\n\n---\na: 1\n---\n---\n# trailing\n",
			[]doc{{5, "---\na: 1\n"}}},
		{"leading comments and blank lines left out", "# header\n\n  # indented comment\na: 1\n", []doc{{4, "a: 1\n"}}},
		{"comments before a marker", "# header\n---\na: 1\n", []doc{{2, "---\na: 1\n"}}},
		{"--- in an indented block scalar", "spec:\n  compose:\n    inline: |\n      a: 1\n      ---\n      b: 2\n---\nc: 3\n",
			[]doc{{1, "spec:\n  compose:\n    inline: |\n      a: 1\n      ---\n      b: 2\n"}, {7, "---\nc: 3\n"}}},
		{"indented marker", "a: |\n  x\n  ---\n", []doc{{1, "a: |\n  x\n  ---\n"}}},
		{"---x is not a marker", "a: 1\n---x: 2\n", []doc{{1, "a: 1\n---x: 2\n"}}},
		{"---- is not a marker", "a: 1\n----\n", []doc{{1, "a: 1\n----\n"}}},
		{"end marker", "a: 1\n...\nb: 2\n", []doc{{1, "a: 1\n...\n"}, {3, "b: 2\n"}}},
		{"end marker then marker", "a: 1\n...\n---\nb: 2\n...\n", []doc{{1, "a: 1\n...\n"}, {3, "---\nb: 2\n...\n"}}},
		{"end marker with a comment", "a: 1\n... # done\n# after\n", []doc{{1, "a: 1\n... # done\n"}}},
		{"directive stays with its document", "a: 1\n...\n%YAML 1.1\n---\nb: 2\n", []doc{{1, "a: 1\n...\n"}, {3, "%YAML 1.1\n---\nb: 2\n"}}},
		{"directive in a document is content", "---\n%x\n", []doc{{1, "---\n%x\n"}}},
		{"CRLF line ends", "a: 1\r\n---\r\nb: 2\r\n", []doc{{1, "a: 1\r\n"}, {2, "---\r\nb: 2\r\n"}}},
		{"byte order mark", "\xef\xbb\xbf---\na: 1\n", []doc{{1, "\xef\xbb\xbf---\na: 1\n"}}},
		{"one JSON object", "{\n  \"a\": 1,\n  \"b\": \"---\"\n}\n", []doc{{1, "{\n  \"a\": 1,\n  \"b\": \"---\"\n}\n"}}},
		{"empty", "", nil},
		{"only comments", "# nothing\n\n", nil},
		{"only markers", "---\n---\n...\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := SplitDocuments([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			var got []doc
			for _, d := range docs {
				got = append(got, doc{d.Line, string(d.Data)})
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSplitDocumentsLimits(t *testing.T) {
	many := func(n int) []byte {
		docs := make([]string, n)
		for i := range docs {
			docs[i] = fmt.Sprintf("n: %d\n", i)
		}
		return []byte(stream(docs...))
	}
	if docs, err := SplitDocuments(many(MaxDocuments)); err != nil || len(docs) != MaxDocuments {
		t.Fatalf("%d documents: %d, %v", MaxDocuments, len(docs), err)
	}
	// Empty documents do not count.
	if docs, err := SplitDocuments(append(many(MaxDocuments), "---\n---\n# x\n"...)); err != nil || len(docs) != MaxDocuments {
		t.Fatalf("%d documents and empty ones: %d, %v", MaxDocuments, len(docs), err)
	}
	tests := []struct {
		name   string
		input  []byte
		reason string
	}{
		{"too many documents", many(MaxDocuments + 1), "more than 1000 documents"},
		{"too large", []byte("a: 1\n#" + strings.Repeat("x", MaxStreamSize)), "larger than the limit of 2097152 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs, err := SplitDocuments(tt.input)
			var e *Error
			if !errors.As(err, &e) || len(e.Fields) != 1 || e.Fields[0].Field != "" || !strings.Contains(e.Fields[0].Reason, tt.reason) {
				t.Fatalf("got %d documents, error %v; want %q", len(docs), err, tt.reason)
			}
		})
	}
}

func TestParseAll(t *testing.T) {
	compose, err := os.ReadFile("testdata/full-compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// A compose file with its own document marker, inside the block scalar.
	composeWithMarker := strings.Replace(string(compose), "      services:\n", "      ---\n      services:\n", 1)
	if composeWithMarker == string(compose) {
		t.Fatal("full-compose.yaml changed: no inline services to edit")
	}
	tests := []struct {
		name  string
		input string
		names []string
	}{
		{"one document", named("a"), []string{"a"}},
		{"three documents", stream(named("a"), named("b"), named("c")), []string{"a", "b", "c"}},
		{"leading marker and trailing empty document", "---\n" + stream(named("a"), named("b"), "# end\n"), []string{"a", "b"}},
		{"comment on the markers", named("a") + "--- # b\n" + named("b"), []string{"a", "b"}},
		{"JSON object", `{"kind":"Workload","metadata":{"name":"j"},"spec":{"type":"container","container":{"image":"x"}}}`, []string{"j"}},
		{"compose with --- in its inline file", stream(named("a"), composeWithMarker), []string{"a", "shop"}},
		{"end markers", named("a") + "...\n" + named("b") + "...\n", []string{"a", "b"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := ParseAll([]byte(tt.input))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range ms {
				got = append(got, m.Metadata.Name)
			}
			if !slices.Equal(got, tt.names) {
				t.Fatalf("names %q, want %q", got, tt.names)
			}
		})
	}

	// One document reads exactly as Parse reads it.
	for _, file := range testdataManifests(t) {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		one, err := Parse(data)
		if err != nil {
			t.Fatal(err)
		}
		all, err := ParseAll(data)
		if err != nil || len(all) != 1 || !reflect.DeepEqual(all[0], one) {
			t.Errorf("%s: ParseAll = %v, %v; want Parse's manifest", file, all, err)
		}
	}
}

func TestParseAllInvalid(t *testing.T) {
	a, b := named("a"), named("b")
	tests := []struct {
		name   string
		input  string
		fields []string
		reason string // substring of the first reason
	}{
		{"empty", "", []string{""}, "manifest is empty"},
		{"only markers and comments", "---\n# none\n---\n", []string{""}, "manifest is empty"},
		{"invalid field in the second document", stream(a, strings.Replace(b, "image: busybox", "image: ''", 1)),
			[]string{"documents[1].spec.container.image"}, "required"},
		{"broken YAML names stream lines", stream(a, "kind: [Workload\n"),
			[]string{"documents[1]"}, "(document starting at line 6)"},
		{"a list document", stream(a, "- a\n- b\n"), []string{"documents[1]"},
			"must be a YAML mapping or a JSON object (document starting at line 6)"},
		{"a null document", stream(a, "~\n"), []string{"documents[1]"}, "manifest is empty (document starting at line 6)"},
		{"duplicate key names its stream line", stream(a, "kind: Workload\n"+b),
			[]string{"documents[1].kind"}, "duplicate key (line 8)"},
		{"odd key", stream(a, `"a b": 1`+"\n"+b), []string{`documents[1]["a b"]`}, "unknown field"},
		{"duplicate names", stream(a, b, a), []string{"documents[2].metadata.name"},
			`"a" is also the name of documents[0] (line 1)`},
		{"every document's errors, in order",
			stream(strings.Replace(a, "name: a", "name: A", 1), b, "kind: Deployment\nmetadata: {name: c}\nspec: {type: pod}\n"),
			[]string{"documents[0].metadata.name", "documents[2].kind", "documents[2].spec.type"}, "DNS-1123"},
		{"oversized document", stream(a, b+"#"+strings.Repeat("x", MaxSize)+"\n"), []string{"documents[1]"},
			"larger than the limit of 1048576 bytes (document starting at line 6)"},
		{"oversized stream", stream(a, b+"#"+strings.Repeat("x", MaxStreamSize)+"\n"), []string{""},
			"larger than the limit of 2097152 bytes"},
		{"too many documents", strings.Repeat(stream(a, ""), MaxDocuments+1), []string{""}, "more than 1000 documents"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := ParseAll([]byte(tt.input))
			if err == nil || ms != nil {
				t.Fatalf("ParseAll = %v, %v; want only an error", ms, err)
			}
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %T %v is not an *Error", err, err)
			}
			var got []string
			for _, f := range e.Fields {
				got = append(got, f.Field)
			}
			if !slices.Equal(got, tt.fields) {
				t.Fatalf("fields %q, want %q (error: %v)", got, tt.fields, err)
			}
			if !strings.Contains(e.Fields[0].Reason, tt.reason) {
				t.Fatalf("reason %q lacks %q", e.Fields[0].Reason, tt.reason)
			}
		})
	}
}

// The YAML parser's line numbers are moved to the stream's: line k of a
// document starting at line n is line n+k-1.
func TestParseAllYAMLErrorLines(t *testing.T) {
	doc := "---\nkind: Workload\nmetadata: [a\n"
	_, err := Parse([]byte(doc))
	var single *Error
	if !errors.As(err, &single) {
		t.Fatalf("Parse: %v", err)
	}
	_, err = ParseAll([]byte(named("a") + doc))
	var multi *Error
	if !errors.As(err, &multi) {
		t.Fatalf("ParseAll: %v", err)
	}
	alone, inStream := single.Fields[0].Reason, multi.Fields[0].Reason
	if !yamlLineRE.MatchString(alone) {
		t.Fatalf("the YAML error names no line: %q", alone)
	}
	if want := shiftLines(alone, 5) + " (document starting at line 6)"; inStream != want || want == alone+" (document starting at line 6)" {
		t.Fatalf("reason %q, want %q (alone: %q)", inStream, want, alone)
	}
}
