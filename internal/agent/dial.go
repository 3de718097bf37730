package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
)

// DialScheduler opens one client connection to the scheduler replicas at
// addrs (host:port each), tried in order, for Config.Control and
// Config.Channel. It does not
// follow the leader; with several replicas use DialSchedulers. Each
// address's certificate is verified against its own host (a DNS name or
// an IP address).
func DialScheduler(addrs []string, tlsCfg *tls.Config, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	if len(addrs) == 0 {
		return nil, errors.New("agent: scheduler address is required")
	}
	if tlsCfg == nil {
		return nil, errors.New("agent: dial scheduler: a TLS configuration is required")
	}
	state := resolver.State{}
	for i, addr := range addrs {
		addr = strings.TrimSpace(addr)
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "" || port == "" {
			return nil, fmt.Errorf("agent: scheduler address %d %q is not host:port", i+1, addr)
		}
		state.Addresses = append(state.Addresses, resolver.Address{Addr: addr, ServerName: host})
	}
	r := manual.NewBuilderWithScheme("persys-scheduler")
	r.InitialState(state)
	all := []grpc.DialOption{
		grpc.WithResolvers(r),
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           grpcbackoff.Config{BaseDelay: 500 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: 5 * time.Second},
			MinConnectTimeout: 5 * time.Second,
		}),
	}
	conn, err := grpc.NewClient(r.Scheme()+":///scheduler", append(all, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("agent: dial scheduler: %w", err)
	}
	return conn, nil
}
