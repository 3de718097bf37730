package agent

import (
	"strings"
	"testing"
)

func TestParseStoragePool(t *testing.T) {
	tests := []struct {
		in   string
		want StoragePool
		err  string
	}{
		{in: "default=/var/lib/pool", want: StoragePool{Name: "default", Path: "/var/lib/pool"}},
		{in: "fast=/mnt/nvme/:100Gi", want: StoragePool{Name: "fast", Path: "/mnt/nvme", Capacity: 100 << 30}},
		{in: "default", err: "want NAME=PATH"},
		{in: "Bad=/x", err: "name must be"},
		{in: "p=relative/dir", err: "must be absolute"},
		{in: "p=/x:lots", err: "size"},
		{in: "p=/x:0", err: "size must be positive"},
	}
	for _, tt := range tests {
		got, err := ParseStoragePool(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: err = %v, want %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%q = %+v, %v; want %+v", tt.in, got, err, tt.want)
		}
	}
}
