// Package freeport picks TCP ports for daemons a test starts in other
// processes, which must be told their address before they bind it.
package freeport

import (
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"testing"
)

// The range ports are picked from: below the kernel's ephemeral range
// (32768 and up), so that no ":0" listener or outgoing connection of
// another process takes one between the check and the daemon's bind.
const (
	lowest = 20000
	count  = 12000
)

var (
	mu     sync.Mutex
	handed = map[int]bool{}
)

// Port returns a port that is free on host now and that no earlier call
// in this process returned. A kernel-picked ":0" port may be picked again
// at once once its listener closes: two daemons of one test were given
// the same metrics port that way.
func Port(t testing.TB, host string) int {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 500 {
		port := lowest + rand.IntN(count)
		if handed[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			continue
		}
		_ = ln.Close()
		handed[port] = true
		return port
	}
	t.Fatalf("freeport: no free port on %s in %d-%d", host, lowest, lowest+count-1)
	return 0
}

// Addr is Port as host:port.
func Addr(t testing.TB, host string) string {
	t.Helper()
	return net.JoinHostPort(host, strconv.Itoa(Port(t, host)))
}
