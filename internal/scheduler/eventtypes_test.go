package scheduler_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/model"
)

// Every event the scheduler and its services emit gets its type from
// model.EventType through events.Add: no persysv1.Event literal sets Type
// itself, no Add names a type by a string literal, and every model.Event
// constant named is a known type.
func TestEmittedEventTypesAreDeclared(t *testing.T) {
	var files []string
	for _, dir := range []string{".", "../identity", "../secretsvc"} {
		m, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range m {
			if !strings.HasSuffix(f, "_test.go") {
				files = append(files, f)
			}
		}
	}
	adds := 0
	fset := token.NewFileSet()
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if sel, ok := n.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Event" {
					for _, el := range n.Elts {
						if kv, ok := el.(*ast.KeyValueExpr); ok && isIdent(kv.Key, "Type") {
							t.Errorf("%s: a persysv1.Event sets Type itself; pass a model.EventType to events.Add", fset.Position(kv.Pos()))
						}
					}
				}
			case *ast.CallExpr:
				if sel, ok := n.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "Add" && len(n.Args) == 2 {
					if inner, ok := sel.X.(*ast.SelectorExpr); ok && inner.Sel.Name == "events" {
						adds++
						if _, ok := n.Args[0].(*ast.BasicLit); ok {
							t.Errorf("%s: event type given as a literal", fset.Position(n.Pos()))
						}
					}
				}
			case *ast.SelectorExpr:
				if isIdent(n.X, "model") && strings.HasPrefix(n.Sel.Name, "Event") && n.Sel.Name != "EventType" && n.Sel.Name != "EventTypes" {
					if !declared(n.Sel.Name) {
						t.Errorf("%s: model.%s is not in model.EventTypes", fset.Position(n.Pos()), n.Sel.Name)
					}
				}
			}
			return true
		})
	}
	if adds < 20 {
		t.Fatalf("found %d events.Add calls; the scan is looking in the wrong place", adds)
	}
}

func isIdent(e ast.Expr, name string) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == name
}

// declared reports whether model declares constant name among EventTypes.
func declared(name string) bool {
	f, err := parser.ParseFile(token.NewFileSet(), "../model/eventtype.go", nil, 0)
	if err != nil {
		return false
	}
	var v string
	for _, d := range f.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, s := range g.Specs {
				vs := s.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if n.Name == name {
						v = strings.Trim(vs.Values[i].(*ast.BasicLit).Value, `"`)
					}
				}
			}
		}
	}
	return v != "" && model.EventType(v).Known()
}
