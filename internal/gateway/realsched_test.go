package gateway_test

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
	"github.com/persys-dev/compute/internal/store/storetest"
)

// realEnv is the gateway in front of a real scheduler over embedded etcd,
// every hop on mTLS with certificates of one CA.
type realEnv struct {
	bundle   *pki.Bundle
	endpoint string
	logs     *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startReal(t *testing.T) *realEnv {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The default prefix, as in production: no client message may show it.
	st, _ := storetest.NewWithOptions(t, store.Options{Prefix: "/persys"})
	schedServer, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	schedClient, err := pki.ClientTLS(b.Scheduler, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(t.TempDir(), "secrets.key")
	if _, err := secrets.GenerateKeyFile(keyPath); err != nil {
		t.Fatal(err)
	}
	keyring, err := secrets.Load(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	log := slogJSON(logs)
	s, err := scheduler.New(scheduler.Config{Store: st, Agents: scheduler.TLSDialer{TLS: schedClient}, Logger: log,
		Registry: prometheus.NewRegistry(), ResyncInterval: 10 * time.Minute, Secrets: keyring})
	if err != nil {
		t.Fatal(err)
	}
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gwClient, err := pki.ClientTLS(b.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient(sln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(gwClient)))
	if err != nil {
		t.Fatal(err)
	}
	gwServer, err := pki.ServerTLS(b.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	gwServer.ClientAuth = tls.VerifyClientCertIfGiven
	h := gateway.New(gateway.Config{Control: persysv1.NewControlServiceClient(conn), Logger: log})
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(3)
	go func() { defer wg.Done(); _ = s.Run(ctx) }()
	go func() { defer wg.Done(); _ = scheduler.Serve(ctx, sln, s, schedServer) }()
	go func() { defer wg.Done(); _ = gateway.Serve(ctx, gln, h, gwServer) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = conn.Close() })
	deadline := time.Now().Add(30 * time.Second)
	for s.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("scheduler not ready: %v", s.Ready())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &realEnv{bundle: b, endpoint: "https://" + gln.Addr().String(), logs: logs}
}

func slogJSON(w io.Writer) *slog.Logger {
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Names from the URL path that cannot name an object (a '/' decoded from
// %2F, a space, a control character) answer 400 naming the path field,
// and nothing a client reads shows a store key. Against the real
// scheduler, whose store refuses such names.
func TestPathNamesAndNotFoundAgainstScheduler(t *testing.T) {
	env := startReal(t)
	c := httpClient(t, env.bundle.Admin)
	tests := []struct {
		name, method, path string
		want               int
		field, message     string
	}{
		{"delete workload with slash", "DELETE", "/v1/workloads/a%2Fb", http.StatusBadRequest, "name", ""},
		{"get workload with slash", "GET", "/v1/workloads/a%2Fb", http.StatusBadRequest, "name", ""},
		{"retry workload with slash", "POST", "/v1/workloads/a%2Fb/retry", http.StatusBadRequest, "name", ""},
		{"wait workload with space", "GET", "/v1/workloads/a%20b/wait", http.StatusBadRequest, "name", ""},
		{"get workload dot dot", "GET", "/v1/workloads/..%2F..", http.StatusBadRequest, "name", ""},
		{"get node with slash", "GET", "/v1/nodes/a%2Fb", http.StatusBadRequest, "id", ""},
		{"cordon node with slash", "POST", "/v1/nodes/a%2Fb/cordon", http.StatusBadRequest, "id", ""},
		{"drain node with newline", "POST", "/v1/nodes/a%0Ab/drain", http.StatusBadRequest, "id", ""},
		{"delete secret with slash", "DELETE", "/v1/secrets/a%2Fb", http.StatusBadRequest, "name", ""},
		{"delete missing workload", "DELETE", "/v1/workloads/nosuch", http.StatusNotFound, "", `workload "nosuch" not found`},
		{"get missing workload", "GET", "/v1/workloads/nosuch", http.StatusNotFound, "", `workload "nosuch" not found`},
		{"get missing node", "GET", "/v1/nodes/nosuch", http.StatusNotFound, "", `node "nosuch" not found`},
		{"delete missing secret", "DELETE", "/v1/secrets/nosuch", http.StatusNotFound, "", `secret "nosuch" not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := call(t, c, tt.method, env.endpoint+tt.path, nil)
			if code != tt.want {
				t.Fatalf("code %d, want %d; body %s", code, tt.want, body)
			}
			d := decodeErr(t, body)
			if tt.field != "" && (len(d.Fields) != 1 || d.Fields[0].Field != tt.field) {
				t.Errorf("fields %+v, want one naming %q", d.Fields, tt.field)
			}
			if tt.message != "" && d.Message != tt.message {
				t.Errorf("message %q, want %q", d.Message, tt.message)
			}
			for _, leak := range []string{"/persys", "workloads/", "nodes/", "secrets/", "store:"} {
				if strings.Contains(d.Message, leak) {
					t.Errorf("message %q shows %q", d.Message, leak)
				}
			}
		})
	}
	if strings.Contains(env.logs.String(), `"level":"ERROR"`) {
		t.Errorf("bad input logged as an error:\n%s", env.logs.String())
	}
}
