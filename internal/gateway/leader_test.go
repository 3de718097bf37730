package gateway_test

import (
	"context"
	"net"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/gateway/gatewaytest"
	"github.com/persys-dev/compute/internal/pki"
)

// fleet is a set of in-memory schedulers served over mTLS with one CA.
type fleet struct {
	bundle *pki.Bundle
	ctrls  []*gatewaytest.Control
	addrs  []string
}

func newFleet(t *testing.T, n int) *fleet {
	t.Helper()
	bundle, err := pki.Bootstrap(t.TempDir(), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{bundle: bundle}
	for range n {
		c := gatewaytest.NewControl()
		f.ctrls = append(f.ctrls, c)
		f.addrs = append(f.addrs, gatewaytest.ServeControl(t, bundle, c))
	}
	return f
}

// pool dials addrs with the fleet's gateway identity.
func (f *fleet) pool(t *testing.T, addrs ...string) *gateway.SchedulerPool {
	t.Helper()
	tlsCfg, err := pki.ClientTLS(f.bundle.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	p, err := gateway.DialSchedulers(addrs, tlsCfg, nil)
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
	ln.Close()
	return addr
}

var applyReq = &persysv1.ApplyRequest{
	Name: "web",
	Spec: &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, Container: &persysv1.ContainerSpec{Image: "example/web:1"}},
}

func TestSchedulerPoolLeaderFollowing(t *testing.T) {
	const a, b, dead = 0, 1, -1
	tests := []struct {
		name string
		// configured indexes into the fleet (dead: an address where nothing listens)
		configured []int
		setup      func(f *fleet, deadAddr string)
		method     string // ApplyWorkload or ListNodes
		wantCode   codes.Code
		wantCalls  []int // calls of method on a and b
		wantCur    int
	}{
		{
			name:       "follower's FailedPrecondition trailer is followed once",
			configured: []int{a},
			setup:      func(f *fleet, _ string) { f.ctrls[a].SetFollower(f.addrs[b]) },
			method:     "ApplyWorkload", wantCode: codes.OK, wantCalls: []int{1, 1}, wantCur: b,
		},
		{
			name:       "Unavailable with a trailer is followed",
			configured: []int{a, b},
			setup:      func(f *fleet, _ string) { f.ctrls[a].SetRedirect("ListNodes", codes.Unavailable, f.addrs[b]) },
			method:     "ListNodes", wantCode: codes.OK, wantCalls: []int{1, 1}, wantCur: b,
		},
		{
			name:       "a second redirect is returned, not followed",
			configured: []int{a},
			setup: func(f *fleet, _ string) {
				f.ctrls[a].SetFollower(f.addrs[b])
				f.ctrls[b].SetFollower(f.addrs[a])
			},
			method: "ApplyWorkload", wantCode: codes.FailedPrecondition, wantCalls: []int{1, 1}, wantCur: a,
		},
		{
			name:       "FailedPrecondition without a trailer is an answer",
			configured: []int{a, b},
			setup: func(f *fleet, _ string) {
				f.ctrls[a].SetError("ApplyWorkload", status.Error(codes.FailedPrecondition, "workload is not FAILED"))
			},
			method: "ApplyWorkload", wantCode: codes.FailedPrecondition, wantCalls: []int{1, 0}, wantCur: a,
		},
		{
			name:       "Unavailable without a trailer from a reached scheduler is an answer",
			configured: []int{a, b},
			setup: func(f *fleet, _ string) {
				f.ctrls[a].SetError("ApplyWorkload", status.Error(codes.Unavailable, "cache not loaded"))
			},
			method: "ApplyWorkload", wantCode: codes.Unavailable, wantCalls: []int{1, 0}, wantCur: a,
		},
		{
			name:       "a trailer naming the scheduler itself is not followed",
			configured: []int{a, b},
			setup:      func(f *fleet, _ string) { f.ctrls[a].SetFollower(f.addrs[a]) },
			method:     "ApplyWorkload", wantCode: codes.FailedPrecondition, wantCalls: []int{1, 0}, wantCur: a,
		},
		{
			name:       "other codes with a trailer are not followed",
			configured: []int{a, b},
			setup:      func(f *fleet, _ string) { f.ctrls[a].SetRedirect("ListNodes", codes.PermissionDenied, f.addrs[b]) },
			method:     "ListNodes", wantCode: codes.PermissionDenied, wantCalls: []int{1, 0}, wantCur: a,
		},
		{
			name:       "an unreachable configured scheduler fails over to the next",
			configured: []int{dead, b},
			setup:      func(*fleet, string) {},
			method:     "ApplyWorkload", wantCode: codes.OK, wantCalls: []int{0, 1}, wantCur: b,
		},
		{
			name:       "an unreachable leader fails over to the next configured",
			configured: []int{a, b},
			setup:      func(f *fleet, dead string) { f.ctrls[a].SetFollower(dead) },
			method:     "ApplyWorkload", wantCode: codes.OK, wantCalls: []int{1, 1}, wantCur: b,
		},
		{
			name:       "an unreachable leader with nothing else configured",
			configured: []int{a},
			setup:      func(f *fleet, dead string) { f.ctrls[a].SetFollower(dead) },
			method:     "ApplyWorkload", wantCode: codes.Unavailable, wantCalls: []int{1, 0}, wantCur: a,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, 2)
			dead := deadAddr(t)
			addr := func(i int) string {
				if i < 0 {
					return dead
				}
				return f.addrs[i]
			}
			var configured []string
			for _, i := range tt.configured {
				configured = append(configured, addr(i))
			}
			tt.setup(f, dead)
			p := f.pool(t, configured...)
			c := persysv1.NewControlServiceClient(p)
			ctx := t.Context()
			var err error
			switch tt.method {
			case "ApplyWorkload":
				var resp *persysv1.ApplyResponse
				resp, err = c.ApplyWorkload(ctx, applyReq)
				if err == nil && resp.GetResult() != "created" {
					t.Errorf("result %q", resp.GetResult())
				}
			case "ListNodes":
				_, err = c.ListNodes(ctx, &persysv1.ListNodesRequest{})
			}
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("code %v (%v), want %v", got, err, tt.wantCode)
			}
			for i, want := range tt.wantCalls {
				if got := f.ctrls[i].Calls(tt.method); got != want {
					t.Errorf("scheduler %d got %d %s calls, want %d", i, got, tt.method, want)
				}
			}
			if got := p.Current(); got != addr(tt.wantCur) {
				t.Errorf("current %s, want %s", got, addr(tt.wantCur))
			}
			// The next call starts at the current scheduler.
			if tt.wantCode == codes.OK {
				before := f.ctrls[tt.wantCur].Calls("GetLeader")
				if _, err := c.GetLeader(ctx, &persysv1.GetLeaderRequest{}); err != nil {
					t.Fatal(err)
				}
				if got := f.ctrls[tt.wantCur].Calls("GetLeader"); got != before+1 {
					t.Errorf("the next call did not go to the current scheduler")
				}
			}
		})
	}
}

func TestSchedulerPoolStaysWithLeader(t *testing.T) {
	f := newFleet(t, 2)
	f.ctrls[0].SetFollower(f.addrs[1])
	p := f.pool(t, f.addrs...)
	c := persysv1.NewControlServiceClient(p)
	for range 3 {
		if _, err := c.ApplyWorkload(t.Context(), applyReq); err != nil {
			t.Fatal(err)
		}
	}
	if a, b := f.ctrls[0].Calls("ApplyWorkload"), f.ctrls[1].Calls("ApplyWorkload"); a != 1 || b != 3 {
		t.Fatalf("calls a=%d b=%d, want 1 and 3: once redirected, calls go to the leader", a, b)
	}
	// Leadership moves back: b refuses, a leads again.
	f.ctrls[0].SetFollower("")
	f.ctrls[1].SetFollower(f.addrs[0])
	if _, err := c.DeleteWorkload(t.Context(), &persysv1.DeleteRequest{Name: "web"}); status.Code(err) != codes.NotFound {
		t.Fatalf("delete on the new leader: %v, want its NotFound", err)
	}
	if p.Current() != f.addrs[0] {
		t.Fatalf("current %s, want %s", p.Current(), f.addrs[0])
	}
}

func TestSchedulerPoolStreamFollowsLeader(t *testing.T) {
	f := newFleet(t, 2)
	if _, err := f.ctrls[1].ApplyWorkload(t.Context(), applyReq); err != nil {
		t.Fatal(err)
	}
	f.ctrls[0].SetRedirect("WatchWorkload", codes.FailedPrecondition, f.addrs[1])
	p := f.pool(t, f.addrs[0])
	c := persysv1.NewControlServiceClient(p)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	stream, err := c.WatchWorkload(ctx, &persysv1.GetWorkloadRequest{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	view, err := stream.Recv()
	if err != nil {
		t.Fatalf("recv: %v", err)
	}
	if view.GetWorkload().GetName() != "web" {
		t.Fatalf("view %v", view)
	}
	if a, b := f.ctrls[0].Calls("WatchWorkload"), f.ctrls[1].Calls("WatchWorkload"); a != 1 || b != 1 {
		t.Fatalf("watch calls a=%d b=%d, want 1 and 1", a, b)
	}
	if p.Current() != f.addrs[1] {
		t.Fatalf("current %s, want the leader %s", p.Current(), f.addrs[1])
	}
	// A later end of the stream is returned as it is.
	f.ctrls[1].Remove("web")
	if _, err := stream.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("recv after removal: %v, want NotFound", err)
	}
}

func TestSchedulerPoolClosedAndValidation(t *testing.T) {
	f := newFleet(t, 1)
	p := f.pool(t, f.addrs[0])
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	c := persysv1.NewControlServiceClient(p)
	if _, err := c.ListNodes(t.Context(), &persysv1.ListNodesRequest{}); status.Code(err) != codes.Unavailable {
		t.Fatalf("call on a closed pool: %v", err)
	}
	if p.Ready() == nil {
		t.Fatal("a closed pool is ready")
	}

	tlsCfg, err := pki.ClientTLS(f.bundle.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		addrs []string
		noTLS bool
		want  string
	}{
		{"no address", nil, false, "no scheduler address"},
		{"empty address", []string{"127.0.0.1:1", " "}, false, "address 2 is empty"},
		{"duplicate", []string{"127.0.0.1:1", "127.0.0.1:1"}, false, "given twice"},
		{"no tls", []string{"127.0.0.1:1"}, true, "TLS config is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tlsCfg
			if tt.noTLS {
				cfg = nil
			}
			_, err := gateway.DialSchedulers(tt.addrs, cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestGatewayFollowsLeader(t *testing.T) {
	env := gatewaytest.StartWith(t, gatewaytest.Options{Schedulers: 2})
	leaderAddr := env.Controls[1].Addr()
	env.Controls[0].SetFollower(leaderAddr)
	c := httpClient(t, env.Bundle.Admin)

	code, body := call(t, c, "POST", env.Endpoint+"/v1/workloads", []byte(webManifest))
	if code != http.StatusCreated {
		t.Fatalf("apply through a follower: %d %s", code, body)
	}
	if n := env.Controls[1].Calls("ApplyWorkload"); n != 1 {
		t.Fatalf("the leader got %d applies", n)
	}
	code, body = call(t, c, "GET", env.Endpoint+"/v1/leader", nil)
	if code != http.StatusOK {
		t.Fatalf("leader: %d %s", code, body)
	}
	info := &persysv1.LeaderInfo{}
	if err := protojson.Unmarshal(body, info); err != nil {
		t.Fatal(err)
	}
	if info.GetAddress() != leaderAddr || !info.GetIsLeader() {
		t.Fatalf("leader info %v, want the leader %s answering", info, leaderAddr)
	}
	if n := env.Controls[0].Calls("GetLeader"); n != 0 {
		t.Errorf("GetLeader went to the follower after the switch")
	}
	if logs := env.Logs(); !strings.Contains(logs, `"msg":"following scheduler leader"`) || !strings.Contains(logs, leaderAddr) {
		t.Errorf("logs lack the redirect:\n%s", logs)
	}
	// The readiness the persys gateway command serves.
	if err := env.Schedulers.Ready(); err != nil {
		t.Errorf("ready: %v", err)
	}
}
