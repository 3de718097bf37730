package pki

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The cluster id is born with the CA, survives a rotation, and a CA made
// before cluster ids gets one once, then keeps it.
func TestClusterIDLifecycle(t *testing.T) {
	_, dir := newCA(t)
	id, err := ReadClusterID(dir)
	if err != nil {
		t.Fatalf("ReadClusterID after InitCA: %v", err)
	}
	if err := ValidateClusterID("id", id); err != nil {
		t.Fatalf("InitCA made an invalid cluster id: %v", err)
	}
	if _, err := RotateCA(dir, "next ca", 24*time.Hour, time.Hour); err != nil {
		t.Fatalf("RotateCA: %v", err)
	}
	if got, err := ReadClusterID(dir); err != nil || got != id {
		t.Fatalf("cluster id after rotation = %q, %v; want %q", got, err, id)
	}

	// A CA from before cluster ids.
	if err := os.Remove(filepath.Join(dir, ClusterIDFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadClusterID(dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadClusterID without the file: %v, want ErrNotExist", err)
	}
	legacy, err := EnsureClusterID(dir)
	if err != nil {
		t.Fatalf("EnsureClusterID: %v", err)
	}
	if legacy == id {
		t.Fatalf("a new id equals the removed one %q", id)
	}
	again, err := EnsureClusterID(dir)
	if err != nil || again != legacy {
		t.Fatalf("EnsureClusterID again = %q, %v; want %q", again, err, legacy)
	}
	// Bootstrap reuses the CA and reports its id.
	b, err := Bootstrap(dir, []string{"n1"}, nil, nil)
	if err != nil {
		t.Fatalf("Bootstrap: %v", err)
	}
	if b.ClusterID != legacy {
		t.Fatalf("Bootstrap ClusterID = %q, want %q", b.ClusterID, legacy)
	}
}

func TestValidateClusterID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"0123456789abcdef0123456789abcdef", true},
		{"prod-eu-1", true},
		{"short", false},
		{"UPPERCASE-ID", false},
		{"has/slash1", false},
		{"has space1", false},
		{string(make([]byte, 65)), false},
	} {
		err := ValidateClusterID("cluster id", tc.id)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateClusterID(%q) = %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateClusterID(%q) = %v, want ErrInvalid", tc.id, err)
		}
	}
}
