package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/leaderconn"
	"github.com/persys-dev/compute/internal/pki"
)

// The gateway process. The watchers scenario runs a real gateway in a
// child process (this binary, re-executed as "persys
// bench-gateway-process CONFIG", GatewayProcessCommand): its memory, CPU
// time and goroutines are then its own, apart from the watchers' clients
// in the bench. It serves HTTPS with mutual TLS on loopback, forwards to
// the scheduler's mTLS listener as persys gateway does, answers
// /memstats on a plain loopback port and ends when its standard input
// closes.

// GatewayProcessCommand is the hidden command, the first argument, that
// runs a binary as the bench's gateway process; the second argument is
// its configuration as JSON.
const GatewayProcessCommand = "bench-gateway-process"

type gwProcConfig struct {
	// Scheduler is the scheduler's mTLS address for API clients.
	Scheduler string `json:"scheduler"`
	// CA, Cert and Key are the gateway's identity (role gateway).
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// validate accepts a loopback scheduler and absolute files only.
func (c gwProcConfig) validate() error {
	if err := loopbackHostPort(c.Scheduler); err != nil {
		return fmt.Errorf("scheduler: %q: %w", c.Scheduler, err)
	}
	for _, f := range []struct{ field, path string }{{"ca", c.CA}, {"cert", c.Cert}, {"key", c.Key}} {
		if !filepath.IsAbs(f.path) {
			return fmt.Errorf("%s: %q: want an absolute file path", f.field, f.path)
		}
	}
	return nil
}

// RunGatewayProcess runs the bench's gateway process with the JSON
// configuration raw until stdin closes or a signal ends it; it writes its
// ready line to stdout.
func RunGatewayProcess(raw string, stdin io.Reader, stdout io.Writer) error {
	if len(raw) > 64<<10 {
		return errors.New("configuration: longer than 64 KiB")
	}
	var cfg gwProcConfig
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		// The bench holds the other end: EOF means it is gone.
		_, _ = io.Copy(io.Discard, stdin)
		cancel()
	}()

	files := pki.Files{CA: cfg.CA, Cert: cfg.Cert, Key: cfg.Key}
	clientTLS, err := pki.ClientTLS(files, "")
	if err != nil {
		return err
	}
	serverTLS, err := pki.ServerTLS(files)
	if err != nil {
		return err
	}
	pool, err := leaderconn.Dial(leaderconn.Config{Addrs: []string{cfg.Scheduler}, TLS: clientTLS})
	if err != nil {
		return err
	}
	defer pool.Close()
	h := gateway.New(gateway.Config{Control: persysv1grpc.NewControlServiceClient(pool), Logger: slog.New(slog.DiscardHandler)})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("gateway listener: %w", err)
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return fmt.Errorf("memstats listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /memstats", serveMemSample)
	msrv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = msrv.Serve(mln) }()
	defer msrv.Close()

	errc := make(chan error, 1)
	go func() { errc <- gateway.Serve(ctx, ln, h, serverTLS) }()
	line, _ := json.Marshal(schedProcReady{Addr: ln.Addr().String(), MetricsAddr: mln.Addr().String()})
	if _, err := fmt.Fprintf(stdout, "%s\n", line); err != nil {
		cancel()
		<-errc
		return err
	}
	select {
	case <-ctx.Done():
		return <-errc
	case err := <-errc:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("gateway ended: %w", err)
	}
}

// startGatewayProc starts the gateway process in front of the scheduler's
// client listener, with the bundle's gateway identity.
func startGatewayProc(ctx context.Context, c *Cluster) (*childProc, error) {
	if c.ClientAddr == "" || c.bundle == nil {
		return nil, errors.New("bench: a gateway needs the scheduler's mTLS listener (ClusterOptions.ClientTLS)")
	}
	f := c.bundle.Gateway
	return startChild(ctx, "gateway process", GatewayProcessCommand,
		gwProcConfig{Scheduler: c.ClientAddr, CA: f.CA, Cert: f.Cert, Key: f.Key}, c.fail)
}
