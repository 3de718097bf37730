package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
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

func TestJoinRetriesUntilCanceled(t *testing.T) {
	// Nothing listens on this address: the join retries until its context
	// ends, then says so.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	retried := make(chan struct{})
	var once sync.Once
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "retrying") {
			once.Do(func() { close(retried) })
		}
		return len(p), nil
	}), nil))
	done := make(chan error, 1)
	go func() {
		_, _, err := Join(ctx, JoinConfig{Schedulers: []string{addr}, Token: "a.b", CAHash: "sha256:" + strings.Repeat("ab", 32),
			NodeID: "n1", DataDir: t.TempDir(), RetryFor: time.Hour, Logger: logger})
		done <- err
	}()
	<-retried
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("error = %v, want context.Canceled", err)
	}
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
