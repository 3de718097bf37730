package manifest

import (
	"errors"
	"os"
	"reflect"
	"testing"
)

// testdataSeeds are the manifests in testdata, seeds for the fuzzers.
func testdataSeeds(f *testing.F) [][]byte {
	files, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	var seeds [][]byte
	for _, e := range files {
		data, err := os.ReadFile("testdata/" + e.Name())
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, data)
	}
	return seeds
}

// FuzzParse checks that Parse never panics, that it fails only with *Error,
// and that whatever it accepts survives the round trip through the proto
// form with ValidateSpec agreeing.
func FuzzParse(f *testing.F) {
	for _, data := range testdataSeeds(f) {
		f.Add(data)
	}
	f.Add([]byte(base))
	for _, bc := range badCases() {
		if len(bc.input) <= 64<<10 {
			f.Add([]byte(bc.input))
		}
	}
	f.Add([]byte(""))
	f.Add([]byte("kind: Workload\nkind: Workload\n"))
	f.Add([]byte("a: &x [*x]\n"))
	f.Add([]byte(`{"kind":"Workload","metadata":{"name":"a"},"spec":{"type":"container","container":{"image":"x"},"resources":{"cpu":1e3,"memory":"1.5Gi"}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Fields) == 0 {
				t.Fatalf("Parse error %T %v is not an *Error with fields", err, err)
			}
			return
		}
		checkRoundTrip(t, m)
	})
}

// FuzzParseAll checks that ParseAll never panics and fails only with
// *Error, that what it accepts round trips, and that it agrees with Parse
// on any input Parse accepts.
func FuzzParseAll(f *testing.F) {
	for _, data := range testdataSeeds(f) {
		f.Add(data)
		f.Add(append(append([]byte(named("x")+"---\n"), data...), "\n...\n"...))
	}
	f.Add([]byte(stream(named("a"), named("b"), named("a"))))
	f.Add([]byte("%YAML 1.1\n---\n" + named("a") + "...\n--- # b\n" + named("b")))
	f.Add([]byte("---\n---\n# x\n...\n"))
	f.Add([]byte(named("a") + "---\n- a\n---\n~\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ms, err := ParseAll(data)
		single, serr := Parse(data)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || len(e.Fields) == 0 {
				t.Fatalf("ParseAll error %T %v is not an *Error with fields", err, err)
			}
			if serr == nil {
				t.Fatalf("Parse accepts what ParseAll refuses: %v", err)
			}
			return
		}
		names := map[string]bool{}
		for _, m := range ms {
			if names[m.Metadata.Name] {
				t.Fatalf("name %q accepted twice", m.Metadata.Name)
			}
			names[m.Metadata.Name] = true
			checkRoundTrip(t, m)
		}
		if serr == nil && (len(ms) != 1 || !reflect.DeepEqual(ms[0], single)) {
			t.Fatalf("ParseAll = %+v, Parse = %+v", ms, single)
		}
	})
}
