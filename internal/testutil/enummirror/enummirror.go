// Package enummirror checks in tests that a Go enum mirrors a protobuf
// enum value for value. It reads the Go constants from the package's
// source rather than from a list kept by hand, so a value added on one
// side only fails the check.
package enummirror

import (
	"errors"
	"go/ast"
	"go/constant"
	"go/parser"
	"go/token"
	"go/types"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/persys-dev/compute/api/persys/contract"
)

// Consts returns the exported constants of the named type typeName
// declared in the non-test Go files of the package in dir, by name
// (unexported ones, such as a maximum, are helpers, not values). It fails t when
// there are none, so that a renamed type does not pass unchecked.
func Consts(t testing.TB, dir, typeName string) map[string]int64 {
	t.Helper()
	fset := token.NewFileSet()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("enummirror: %v", err)
	}
	var files []*ast.File
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, n), nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("enummirror: %v", err)
		}
		files = append(files, f)
	}
	// Imports are not resolved: constants with literal values type-check
	// without them, and the errors about the rest are not ours to judge.
	conf := types.Config{Importer: noImports{}, Error: func(error) {}}
	pkg, _ := conf.Check(dir, fset, files, nil)
	out := map[string]int64{}
	for _, name := range pkg.Scope().Names() {
		c, ok := pkg.Scope().Lookup(name).(*types.Const)
		if !ok || !c.Exported() {
			continue
		}
		named, ok := c.Type().(*types.Named)
		if !ok || named.Obj().Name() != typeName {
			continue
		}
		v, exact := constant.Int64Val(constant.ToInt(c.Val()))
		if !exact {
			t.Fatalf("enummirror: %s.%s is not an integer constant", typeName, name)
		}
		out[name] = v
	}
	if len(out) == 0 {
		t.Fatalf("enummirror: no constants of type %s in %s", typeName, dir)
	}
	return out
}

type noImports struct{}

func (noImports) Import(string) (*types.Package, error) { return nil, errors.New("not resolved") }

// Mode says how much of the protobuf enum the Go enum mirrors.
type Mode int

const (
	// Full: every value of the protobuf enum but its zero value has a Go
	// constant, and every Go constant a protobuf value.
	Full Mode = iota
	// Subset: every Go constant has a protobuf value; the Go enum names
	// only the values its package decides itself.
	Subset
)

// Check fails t unless consts (from Consts) mirror ed: each constant's
// name without prefix, in upper snake case (StateNotReady with prefix
// "State" -> NOT_READY), is the canonical name of the protobuf value with
// the constant's number; in Full mode every non-zero protobuf value has
// such a constant too.
func Check(t testing.TB, consts map[string]int64, prefix string, ed protoreflect.EnumDescriptor, mode Mode) {
	t.Helper()
	have := map[int64]string{}
	names := make([]string, 0, len(consts))
	for n := range consts {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		v := consts[n]
		want := contract.UpperSnake(strings.TrimPrefix(n, prefix))
		pv := ed.Values().ByNumber(protoreflect.EnumNumber(v))
		switch {
		case pv == nil:
			t.Errorf("%s = %d has no value in %s", n, v, ed.FullName())
		case contract.ValueName(ed, pv.Number()) != want:
			t.Errorf("%s = %d, but %d in %s is %s (want %s%s)", n, v, v, ed.FullName(), pv.Name(), contract.Prefix(ed), want)
		}
		if other, dup := have[v]; dup {
			t.Errorf("%s and %s are both %d", other, n, v)
		}
		have[v] = n
	}
	if mode != Full {
		return
	}
	vals := ed.Values()
	for i := 0; i < vals.Len(); i++ {
		pv := vals.Get(i)
		if _, ok := have[int64(pv.Number())]; !ok && pv.Number() != 0 {
			t.Errorf("%s (%d) has no Go constant", pv.Name(), pv.Number())
		}
	}
}
