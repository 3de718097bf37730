package manifest

import (
	"errors"
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics, that it fails only with *Error,
// and that whatever it accepts survives the round trip through the proto
// form with ValidateSpec agreeing.
func FuzzParse(f *testing.F) {
	files, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, e := range files {
		data, err := os.ReadFile("testdata/" + e.Name())
		if err != nil {
			f.Fatal(err)
		}
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
