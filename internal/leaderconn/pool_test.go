package leaderconn_test

import (
	"context"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/leaderconn"
	"github.com/persys-dev/compute/internal/pki"
)

// replica answers GetLeader over mTLS with its own address, or refuses
// with a scripted code and leader metadata. It exercises the wire cases a
// real scheduler does not produce on demand (TestRealReplicas covers the
// real refusal).
type replica struct {
	persysv1grpc.UnimplementedControlServiceServer
	addr string

	mu    sync.Mutex
	code  codes.Code
	hint  string
	calls int
}

func (r *replica) refuse(code codes.Code, hint string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code, r.hint = code, hint
}

func (r *replica) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func (r *replica) GetLeader(ctx context.Context, _ *persysv1.GetLeaderRequest) (*persysv1.LeaderInfo, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.code == codes.OK {
		return &persysv1.LeaderInfo{Address: r.addr, IsLeader: true}, nil
	}
	if r.hint != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(contract.MetadataLeader, r.hint))
	}
	return nil, status.Error(r.code, "refused")
}

type fleet struct {
	bundle   *pki.Bundle
	replicas []*replica
}

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	b, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{bundle: b}
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		r := &replica{addr: ln.Addr().String()}
		srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
		persysv1grpc.RegisterControlServiceServer(srv, r)
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(srv.Stop)
		f.replicas = append(f.replicas, r)
	}
	return f
}

func (f *fleet) pool(t *testing.T, addrs ...string) *leaderconn.Pool {
	t.Helper()
	tlsCfg, err := pki.ClientTLS(f.bundle.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := leaderconn.Dial(leaderconn.Config{Addrs: addrs, TLS: tlsCfg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// deadAddr returns a loopback address where nothing listens.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestPoolRules(t *testing.T) {
	const a, b, dead = 0, 1, -1
	tests := []struct {
		name       string
		configured []int // indexes into the fleet; dead: nothing listens
		setup      func(r []*replica, addr func(int) string)
		wantCode   codes.Code
		wantCalls  [2]int
		wantCur    int
	}{
		{
			name:       "a FailedPrecondition naming the leader is followed once",
			configured: []int{a},
			setup:      func(r []*replica, addr func(int) string) { r[a].refuse(codes.FailedPrecondition, addr(b)) },
			wantCode:   codes.OK, wantCalls: [2]int{1, 1}, wantCur: b,
		},
		{
			name:       "an Unavailable naming the leader is followed",
			configured: []int{a, b},
			setup:      func(r []*replica, addr func(int) string) { r[a].refuse(codes.Unavailable, addr(b)) },
			wantCode:   codes.OK, wantCalls: [2]int{1, 1}, wantCur: b,
		},
		{
			name:       "a second redirect is returned, and the next call starts where it points",
			configured: []int{a},
			setup: func(r []*replica, addr func(int) string) {
				r[a].refuse(codes.FailedPrecondition, addr(b))
				r[b].refuse(codes.FailedPrecondition, addr(a))
			},
			wantCode: codes.FailedPrecondition, wantCalls: [2]int{1, 1}, wantCur: a,
		},
		{
			name:       "a FailedPrecondition without the key is an answer",
			configured: []int{a, b},
			setup:      func(r []*replica, _ func(int) string) { r[a].refuse(codes.FailedPrecondition, "") },
			wantCode:   codes.FailedPrecondition, wantCalls: [2]int{1, 0}, wantCur: a,
		},
		{
			name:       "an Unavailable without the key from a reached scheduler is an answer; the next call goes to the next",
			configured: []int{a, b},
			setup:      func(r []*replica, _ func(int) string) { r[a].refuse(codes.Unavailable, "") },
			wantCode:   codes.Unavailable, wantCalls: [2]int{1, 0}, wantCur: b,
		},
		{
			name:       "a scheduler naming itself is not followed",
			configured: []int{a, b},
			setup:      func(r []*replica, addr func(int) string) { r[a].refuse(codes.FailedPrecondition, addr(a)) },
			wantCode:   codes.FailedPrecondition, wantCalls: [2]int{1, 0}, wantCur: a,
		},
		{
			name:       "a hint that is not host:port is not followed",
			configured: []int{a, b},
			setup:      func(r []*replica, _ func(int) string) { r[a].refuse(codes.FailedPrecondition, "nonsense") },
			wantCode:   codes.FailedPrecondition, wantCalls: [2]int{1, 0}, wantCur: a,
		},
		{
			name:       "other codes with the key are not followed",
			configured: []int{a, b},
			setup:      func(r []*replica, addr func(int) string) { r[a].refuse(codes.PermissionDenied, addr(b)) },
			wantCode:   codes.PermissionDenied, wantCalls: [2]int{1, 0}, wantCur: a,
		},
		{
			name:       "an unreachable configured scheduler fails over to the next",
			configured: []int{dead, b},
			setup:      func([]*replica, func(int) string) {},
			wantCode:   codes.OK, wantCalls: [2]int{0, 1}, wantCur: b,
		},
		{
			name:       "an unreachable leader fails over to the next configured",
			configured: []int{a, b},
			setup:      func(r []*replica, addr func(int) string) { r[a].refuse(codes.FailedPrecondition, addr(dead)) },
			wantCode:   codes.OK, wantCalls: [2]int{1, 1}, wantCur: b,
		},
		{
			name:       "an unreachable leader with nothing else configured",
			configured: []int{a},
			setup:      func(r []*replica, addr func(int) string) { r[a].refuse(codes.FailedPrecondition, addr(dead)) },
			wantCode:   codes.Unavailable, wantCalls: [2]int{1, 0}, wantCur: a,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 2)
			deadA := deadAddr(t)
			addr := func(i int) string {
				if i < 0 {
					return deadA
				}
				return f.replicas[i].addr
			}
			var configured []string
			for _, i := range tt.configured {
				configured = append(configured, addr(i))
			}
			tt.setup(f.replicas, addr)
			p := f.pool(t, configured...)
			c := persysv1grpc.NewControlServiceClient(p)
			info, err := c.GetLeader(t.Context(), &persysv1.GetLeaderRequest{})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			if err == nil && info.GetAddress() != addr(tt.wantCur) {
				t.Errorf("answered by %s, want %s", info.GetAddress(), addr(tt.wantCur))
			}
			for i, want := range tt.wantCalls {
				if got := f.replicas[i].count(); got != want {
					t.Errorf("replica %d got %d calls, want %d", i, got, want)
				}
			}
			if got := p.Current(); got != addr(tt.wantCur) {
				t.Errorf("current %s, want %s", got, addr(tt.wantCur))
			}
			if tt.wantCode != codes.OK {
				return
			}
			// The next call goes straight to the current scheduler.
			before := f.replicas[tt.wantCur].count()
			if _, err := c.GetLeader(t.Context(), &persysv1.GetLeaderRequest{}); err != nil {
				t.Fatal(err)
			}
			if got := f.replicas[tt.wantCur].count(); got != before+1 {
				t.Errorf("the next call did not go to the current scheduler")
			}
		})
	}
}

func TestPoolClosedAndValidation(t *testing.T) {
	f := newFleet(t, 1)
	p := f.pool(t, f.replicas[0].addr)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c := persysv1grpc.NewControlServiceClient(p)
	if _, err := c.GetLeader(t.Context(), &persysv1.GetLeaderRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("call on a closed pool: %v", err)
	}
	if p.Ready() == nil {
		t.Fatal("a closed pool is ready")
	}
	tlsCfg, err := pki.ClientTLS(f.bundle.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	many := make([]string, leaderconn.MaxConns+1)
	for i := range many {
		many[i] = "h" + strings.Repeat("x", i) + ":1"
	}
	tests := []struct {
		name  string
		addrs []string
		noTLS bool
		want  string
	}{
		{"no address", nil, false, "no scheduler address"},
		{"empty address", []string{"127.0.0.1:1", " "}, false, "address 2"},
		{"no port", []string{"host"}, false, "not host:port"},
		{"port out of range", []string{"host:70000"}, false, "1-65535"},
		{"duplicate", []string{"127.0.0.1:1", "127.0.0.1:1"}, false, "given twice"},
		{"too many", many, false, "at most"},
		{"no tls", []string{"127.0.0.1:1"}, true, "TLS config or transport credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tlsCfg
			if tt.noTLS {
				cfg = nil
			}
			_, err := leaderconn.Dial(leaderconn.Config{Addrs: tt.addrs, TLS: cfg})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
