package freeport

import (
	"net"
	"testing"
)

func TestPortsAreFreshAndBindable(t *testing.T) {
	seen := map[int]bool{}
	for range 300 {
		p := Port(t, "127.0.0.1")
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if p < lowest || p >= lowest+count {
			t.Fatalf("port %d outside %d-%d", p, lowest, lowest+count-1)
		}
	}
	addr := Addr(t, "127.0.0.1")
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	_ = ln.Close()
}
