package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// ShutdownTimeout bounds how long Serve waits for requests in flight
// (open wait requests among them) once its context ends.
const ShutdownTimeout = 10 * time.Second

// Serve answers HTTPS on ln with h until ctx ends, then shuts down
// gracefully. tlsCfg must require and verify client certificates (as
// pki.ServerTLS does): a client without a certificate of the cluster CA is
// refused at the handshake. It returns nil after a clean shutdown.
func Serve(ctx context.Context, ln net.Listener, h http.Handler, tlsCfg *tls.Config) error {
	if tlsCfg == nil {
		return errors.New("gateway: serve: TLS config is required")
	}
	if tlsCfg.ClientAuth == tls.NoClientCert {
		return errors.New("gateway: serve: TLS config must require client certificates")
	}
	// Streams (followed logs) never end alone: a shutdown ends them, so
	// that it waits only for calls that do.
	stopStreams := make(chan struct{})
	srv := &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg.Clone(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		// Handshake failures (clients without a cluster certificate) are
		// worth a warning, not a crash or stderr noise in another format.
		ErrorLog: log.New(slogWriter{}, "", 0),
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.WithoutCancel(ctx), streamStopKey{}, (<-chan struct{})(stopStreams))
		},
	}
	srv.RegisterOnShutdown(func() { close(stopStreams) })
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeTLS(ln, "", "") }()
	select {
	case err := <-errc:
		return fmt.Errorf("gateway: serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		_ = srv.Close()
		return fmt.Errorf("gateway: shutting down: %w", err)
	}
	return nil
}

// slogWriter forwards net/http's internal log lines to the default slog
// logger at warning level.
type slogWriter struct{}

func (slogWriter) Write(p []byte) (int, error) {
	msg := string(p)
	if n := len(msg); n > 0 && msg[n-1] == '\n' {
		msg = msg[:n-1]
	}
	slog.Warn("https server", "component", "gateway", "detail", msg)
	return len(p), nil
}
