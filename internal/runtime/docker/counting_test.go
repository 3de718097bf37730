package docker

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/moby/moby/client"
)

// apiCounter counts the Engine API requests a client makes, by kind.
type apiCounter struct {
	base http.RoundTripper

	mu sync.Mutex
	n  map[string]int
}

func (c *apiCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[apiKind(req)]++
	c.mu.Unlock()
	return c.base.RoundTrip(req)
}

// apiKind names a request: list, inspect, events or METHOD /path.
func apiKind(req *http.Request) string {
	p := req.URL.Path
	if i := strings.Index(p, "/containers/"); i >= 0 {
		p = p[i:]
	} else if i := strings.Index(p, "/events"); i >= 0 {
		p = p[i:]
	}
	switch {
	case req.Method == http.MethodGet && p == "/containers/json":
		return "list"
	case req.Method == http.MethodGet && strings.HasPrefix(p, "/containers/") && strings.HasSuffix(p, "/json"):
		return "inspect"
	case p == "/events":
		return "events"
	}
	return req.Method + " " + p
}

// counts returns a copy of the counts and the total.
func (c *apiCounter) counts() (map[string]int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out, total := make(map[string]int, len(c.n)), 0
	for k, v := range c.n {
		out[k] = v
		total += v
	}
	return out, total
}

func (c *apiCounter) get(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[kind]
}

func (c *apiCounter) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n = map[string]int{}
}

// countingClient returns a client of the engine cli talks to whose
// requests are counted.
func countingClient(t testing.TB, cli *client.Client) (*client.Client, *apiCounter) {
	t.Helper()
	u, err := url.Parse(cli.DaemonHost())
	if err != nil {
		t.Fatalf("engine host %q: %v", cli.DaemonHost(), err)
	}
	network, addr := "unix", u.Path
	if u.Scheme == "tcp" {
		network, addr = "tcp", u.Host
	}
	counter := &apiCounter{n: map[string]int{}, base: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	cc, err := client.NewClientWithOpts(client.WithHost(cli.DaemonHost()),
		client.WithHTTPClient(&http.Client{Transport: counter}), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc, counter
}
