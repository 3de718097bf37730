package model

import (
	"go/ast"
	"go/parser"
	"go/token"
	"strconv"
	"testing"
)

// Every EventType constant declared in eventtype.go is in EventTypes, once,
// and no two share a spelling.
func TestEventTypesComplete(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "eventtype.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	declared := map[EventType]string{}
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, spec := range g.Specs {
			vs := spec.(*ast.ValueSpec)
			for i, name := range vs.Names {
				lit, ok := vs.Values[i].(*ast.BasicLit)
				if !ok {
					t.Fatalf("%s: want a string literal", name.Name)
				}
				v, _ := strconv.Unquote(lit.Value)
				if prev, dup := declared[EventType(v)]; dup {
					t.Errorf("%s and %s both spell %q", prev, name.Name, v)
				}
				declared[EventType(v)] = name.Name
			}
		}
	}
	listed := map[EventType]bool{}
	for _, et := range EventTypes() {
		if listed[et] {
			t.Errorf("EventTypes lists %q twice", et)
		}
		listed[et] = true
		if _, ok := declared[et]; !ok {
			t.Errorf("EventTypes lists %q, which is not declared", et)
		}
		if !et.Known() {
			t.Errorf("%q: Known = false", et)
		}
	}
	for v, name := range declared {
		if !listed[v] {
			t.Errorf("%s (%q) is missing from EventTypes", name, v)
		}
	}
	if EventType("NoSuchEvent").Known() {
		t.Error("an undeclared type is Known")
	}
}
