package docker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// cutProxy forwards a unix socket to the engine and can cut every
// connection, so a test can break the event stream of a real engine.
type cutProxy struct {
	ln       net.Listener
	upstream func() (net.Conn, error)

	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	streams int // connections that carry an event stream
	refused bool
}

func newCutProxy(t *testing.T, engineHost string) *cutProxy {
	t.Helper()
	u, err := url.Parse(engineHost)
	if err != nil {
		t.Fatalf("engine host %q: %v", engineHost, err)
	}
	var network, addr string
	switch u.Scheme {
	case "unix":
		network, addr = "unix", u.Path
	case "tcp":
		network, addr = "tcp", u.Host
	default:
		t.Fatalf("engine host %q: cannot proxy scheme %q", engineHost, u.Scheme)
	}
	ln, err := net.Listen("unix", filepath.Join(t.TempDir(), "engine.sock"))
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, conns: map[net.Conn]struct{}{},
		upstream: func() (net.Conn, error) { return net.Dial(network, addr) }}
	go p.serve()
	t.Cleanup(func() { _ = ln.Close(); p.cut(false) })
	return p
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		refused := p.refused
		if !refused {
			p.conns[c] = struct{}{}
		}
		p.mu.Unlock()
		if refused {
			_ = c.Close()
			continue
		}
		go p.forward(c)
	}
}

func (p *cutProxy) forward(c net.Conn) {
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
		_ = c.Close()
	}()
	// Read the request line to recognize the event stream.
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		return
	}
	up, err := p.upstream()
	if err != nil {
		return
	}
	defer up.Close()
	if _, err := io.WriteString(up, line); err != nil {
		return
	}
	if strings.Contains(line, "/events") {
		p.mu.Lock()
		p.streams++
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			p.streams--
			p.mu.Unlock()
		}()
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, br); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

// cut closes every open connection; refuse keeps new ones out until the
// next call with refuse false.
func (p *cutProxy) cut(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refused = refuse
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *cutProxy) eventStreams() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.streams
}

// TestWatchReconnects breaks the event stream, removes a container while
// the watcher is cut off, and expects the watcher to reconnect and replay
// the missed event.
func TestWatchReconnects(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	name, uid := e.workload("rewatch")
	st, _ := e.apply(runtime.Instance{Name: name, UID: uid, Revision: 1, Spec: e.spec(&persysv1.ContainerSpec{})})

	proxy := newCutProxy(t, e.cli.DaemonHost())
	// One connection per request, so the proxy sees each request line.
	sock := proxy.ln.Addr().String()
	hc := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		},
	}}
	pcli, err := client.NewClientWithOpts(client.WithHost("unix://"+sock), client.WithHTTPClient(hc), client.WithAPIVersionNegotiation())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = pcli.Close() })
	rt, err := New(Options{Client: pcli, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := rt.Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "event stream connected", func() (bool, string) {
		return proxy.eventStreams() > 0, "no event stream through the proxy"
	})

	proxy.cut(true)
	if _, err := e.cli.ContainerRemove(t.Context(), st.GetRuntimeId(), client.ContainerRemoveOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	proxy.cut(false)

	timeout := time.After(30 * time.Second)
	for {
		select {
		case got, ok := <-ch:
			if !ok {
				t.Fatal("watch channel closed early")
			}
			if got == name {
				return
			}
		case <-timeout:
			t.Fatalf("watch did not report %s after reconnecting", name)
		}
	}
}

func TestWatchCanceledContext(t *testing.T) {
	rt, err := New(Options{Client: &client.Client{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := rt.Watch(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch on canceled ctx: err = %v, want context.Canceled", err)
	}
}
