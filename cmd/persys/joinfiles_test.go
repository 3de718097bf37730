package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestJoinFilesRoundTrip: what `join-token create --out-dir` writes is
// what --join-token-file and --ca-hash-file read; a value given both ways
// is refused.
func TestJoinFilesRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "join")
	hash := "sha256:" + strings.Repeat("ab", 32)
	var out bytes.Buffer
	if err := writeJoinFiles(dir, "abc.def", hash, &out); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(filepath.Join(dir, "token")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v, want mode 0600", st, err)
	}
	if strings.Contains(out.String(), "abc.def") {
		t.Fatalf("the token was printed: %q", out.String())
	}
	o := agentOptions{joinTokenFile: filepath.Join(dir, "token"), caHashFile: filepath.Join(dir, "ca-hash")}
	if err := o.readJoinFiles(); err != nil {
		t.Fatal(err)
	}
	if o.joinToken != "abc.def" || o.caHash != hash {
		t.Fatalf("read token %q hash %q", o.joinToken, o.caHash)
	}
	o = agentOptions{joinToken: "x.y", joinTokenFile: filepath.Join(dir, "token")}
	if err := o.readJoinFiles(); err == nil {
		t.Fatal("--join-token with --join-token-file passed")
	}
	o = agentOptions{caHashFile: filepath.Join(dir, "missing")}
	if err := o.readJoinFiles(); err == nil {
		t.Fatal("a missing --ca-hash-file passed")
	}
}
