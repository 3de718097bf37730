package vmguest

import (
	"os"
	"testing"
)

func TestGuestBuildsAndIsCached(t *testing.T) {
	f := GuestFiles(t)
	for _, p := range []string{f.Kernel, f.Initrd, f.BaseRaw} {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatalf("guest file: %v", err)
		}
		if st.Size() == 0 {
			t.Errorf("%s is empty", p)
		}
	}
	before, err := os.Stat(f.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	again, err := Build(t.Context())
	if err != nil {
		t.Fatalf("second build: %v", err)
	}
	after, err := os.Stat(again.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("the cached guest was rebuilt (initrd mtime %v → %v)", before.ModTime(), after.ModTime())
	}
}
