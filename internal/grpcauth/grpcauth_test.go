package grpcauth_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// agentStub answers HealthCheck with the caller's common name.
type agentStub struct {
	persysv1grpc.UnimplementedAgentServiceServer
}

func (agentStub) HealthCheck(ctx context.Context, _ *persysv1.HealthCheckRequest) (*persysv1.HealthCheckResponse, error) {
	id, ok := grpcauth.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Internal, "no identity in context")
	}
	return &persysv1.HealthCheckResponse{NodeId: id.CommonName, Healthy: true}, nil
}

func TestRequireRole(t *testing.T) {
	b, err := pki.Bootstrap(t.TempDir(), []string{"node-1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(b.Agents["node-1"])
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.UnaryInterceptor(grpcauth.RequireRole(pki.RoleScheduler)))
	persysv1grpc.RegisterAgentServiceServer(srv, agentStub{})
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	dial := func(t *testing.T, f pki.Files) *grpc.ClientConn {
		t.Helper()
		cfg, err := pki.ClientTLS(f, "")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		return conn
	}

	tests := []struct {
		name     string
		files    pki.Files
		wantCode codes.Code
	}{
		{name: "scheduler admitted", files: b.Scheduler, wantCode: codes.OK},
		{name: "gateway refused", files: b.Gateway, wantCode: codes.PermissionDenied},
		{name: "admin refused", files: b.Admin, wantCode: codes.PermissionDenied},
		{name: "agent refused", files: b.Agents["node-1"], wantCode: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn := dial(t, tt.files)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			resp, err := persysv1grpc.NewAgentServiceClient(conn).HealthCheck(ctx, &persysv1.HealthCheckRequest{})
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("HealthCheck code = %s (%v), want %s", got, err, tt.wantCode)
			}
			if tt.wantCode == codes.OK && resp.GetNodeId() != "scheduler" {
				t.Fatalf("handler saw caller %q, want scheduler", resp.GetNodeId())
			}
			// The health protocol is open to every authenticated peer.
			if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatalf("grpc.health.v1 Check: %v", err)
			}
		})
	}
}

func TestPolicy(t *testing.T) {
	b, err := pki.Bootstrap(t.TempDir(), []string{"node-1"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(b.Scheduler)
	if err != nil {
		t.Fatal(err)
	}
	policy := grpcauth.Policy{
		Methods: map[string][]pki.Role{
			persysv1grpc.AgentService_HealthCheck_FullMethodName:   {pki.RoleAgent},
			persysv1grpc.AgentService_ListWorkloads_FullMethodName: nil,
		},
		Default: []pki.Role{pki.RoleGateway},
	}
	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)),
		grpc.UnaryInterceptor(policy.Unary()), grpc.StreamInterceptor(policy.Stream()))
	persysv1grpc.RegisterAgentServiceServer(srv, agentStub{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)

	call := map[string]func(context.Context, persysv1grpc.AgentServiceClient) error{
		"HealthCheck": func(ctx context.Context, c persysv1grpc.AgentServiceClient) error {
			_, err := c.HealthCheck(ctx, &persysv1.HealthCheckRequest{})
			return err
		},
		"ListWorkloads": func(ctx context.Context, c persysv1grpc.AgentServiceClient) error {
			_, err := c.ListWorkloads(ctx, &persysv1.ListAgentWorkloadsRequest{})
			return err
		},
		"GetWorkloadStatus": func(ctx context.Context, c persysv1grpc.AgentServiceClient) error {
			_, err := c.GetWorkloadStatus(ctx, &persysv1.GetWorkloadStatusRequest{Name: "x"})
			return err
		},
	}
	tests := []struct {
		name     string
		files    pki.Files
		method   string
		wantCode codes.Code
	}{
		{name: "listed method, listed role", files: b.Agents["node-1"], method: "HealthCheck", wantCode: codes.OK},
		{name: "listed method, other role", files: b.Gateway, method: "HealthCheck", wantCode: codes.PermissionDenied},
		{name: "method denied to all", files: b.Gateway, method: "ListWorkloads", wantCode: codes.PermissionDenied},
		{name: "default role", files: b.Gateway, method: "GetWorkloadStatus", wantCode: codes.Unimplemented},
		{name: "default, other role", files: b.Admin, method: "GetWorkloadStatus", wantCode: codes.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := pki.ClientTLS(tt.files, "")
			if err != nil {
				t.Fatal(err)
			}
			conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err = call[tt.method](ctx, persysv1grpc.NewAgentServiceClient(conn))
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("%s code = %s (%v), want %s", tt.method, got, err, tt.wantCode)
			}
		})
	}
}
