package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestJoinValidation(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	ok := JoinConfig{Schedulers: []string{"127.0.0.1:1"}, Token: "a.b", CAHash: hash, NodeID: "n1", DataDir: t.TempDir()}
	tests := []struct {
		name    string
		edit    func(c *JoinConfig)
		wantErr string
	}{
		{name: "no ca hash", edit: func(c *JoinConfig) { c.CAHash = "" }, wantErr: "--ca-hash"},
		{name: "ca hash of another form", edit: func(c *JoinConfig) { c.CAHash = "md5:abc" }, wantErr: "--ca-hash"},
		{name: "no token", edit: func(c *JoinConfig) { c.Token = "" }, wantErr: "token: required"},
		{name: "bad node id", edit: func(c *JoinConfig) { c.NodeID = "a/b" }, wantErr: "node id"},
		{name: "no scheduler", edit: func(c *JoinConfig) { c.Schedulers = nil }, wantErr: "scheduler address"},
		{name: "no data dir", edit: func(c *JoinConfig) { c.DataDir = "" }, wantErr: "data dir"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			_, _, err := Join(context.Background(), c)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if c.DataDir != "" && HasIdentity(c.DataDir) {
				t.Fatal("a refused join left an identity")
			}
		})
	}
}

func TestJoinLabels(t *testing.T) {
	dir := t.TempDir()
	if got, err := JoinLabels(dir); err != nil || got != nil {
		t.Fatalf("no labels file: %v, %v", got, err)
	}
	if err := os.MkdirAll(filepath.Join(dir, identityDir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, identityDir, "labels"), []byte("zone=a\nrack=r1\njunk\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := JoinLabels(dir)
	if err != nil || len(got) != 2 || got["zone"] != "a" || got["rack"] != "r1" {
		t.Fatalf("JoinLabels = %v, %v", got, err)
	}
}
