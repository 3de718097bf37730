package gateway

import (
	"crypto/tls"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// DialScheduler returns a client connection to one scheduler's gRPC
// endpoint at addr over mutual TLS, without leader following (for several
// replicas use leaderconn.Dial). The connection is lazy: errors of
// reaching the scheduler show up on the first call.
func DialScheduler(addr string, tlsCfg *tls.Config) (*grpc.ClientConn, error) {
	if addr == "" {
		return nil, errors.New("gateway: scheduler address is empty")
	}
	if tlsCfg == nil {
		return nil, errors.New("gateway: scheduler TLS config is required")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)))
	if err != nil {
		return nil, fmt.Errorf("gateway: dialing scheduler %s: %w", addr, err)
	}
	return conn, nil
}
