package realsched

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/leaderconn"
	"github.com/persys-dev/compute/internal/pki"
)

// Gateway is a real gateway in front of the cluster's schedulers.
type Gateway struct {
	// Endpoint is the gateway's base URL (https://127.0.0.1:port).
	Endpoint string
	// Pool is the gateway's leader-following pool.
	Pool *leaderconn.Pool
}

// StartGateway serves a gateway over mTLS that reaches the schedulers at
// addrs (default: all replicas, in start order) through a leaderconn.Pool,
// logging to the cluster's log sink. cfg, when given, edits the gateway's
// configuration. It stops when the test ends.
func (c *Cluster) StartGateway(t testing.TB, cfg func(*gateway.Config), addrs ...string) *Gateway {
	t.Helper()
	if len(addrs) == 0 {
		addrs = c.Addrs
	}
	log := slog.New(slog.NewJSONHandler(c.logs, nil)).With("component", "gateway")
	clientTLS, err := pki.ClientTLS(c.Bundle.Gateway, "")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := leaderconn.Dial(leaderconn.Config{Addrs: addrs, TLS: clientTLS, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	serverTLS, err := pki.ServerTLS(c.Bundle.Gateway)
	if err != nil {
		t.Fatal(err)
	}
	// As the persys gateway command: a client may come with a token instead.
	serverTLS.ClientAuth = tls.VerifyClientCertIfGiven
	gc := gateway.Config{Control: persysv1grpc.NewControlServiceClient(pool), Logger: log}
	if cfg != nil {
		cfg(&gc)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = gateway.Serve(ctx, ln, gateway.New(gc), serverTLS) }()
	t.Cleanup(func() { cancel(); wg.Wait(); _ = pool.Close() })
	return &Gateway{Endpoint: "https://" + ln.Addr().String(), Pool: pool}
}

// Config is an admin's persysctl configuration for the gateway.
func (c *Cluster) Config(gw *Gateway) *client.Config {
	return &client.Config{Endpoint: gw.Endpoint, CA: c.Bundle.CA, Cert: c.Bundle.Admin.Cert, Key: c.Bundle.Admin.Key}
}

// Client returns an admin client of the gateway, closed when the test
// ends.
func (c *Cluster) Client(t testing.TB, gw *Gateway) *client.Client {
	t.Helper()
	cl, err := client.New(c.Config(gw))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
