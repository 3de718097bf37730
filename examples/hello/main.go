// Command hello is the example workload of Persys Compute: a tiny static
// HTTP server meant to be built into a FROM scratch image. It listens on
// $PORT (default 8080), logs its start with $GREETING when set, answers
// GET / with a greeting ($GREETING when set)
// and the hostname and GET /healthz with "ok", and exits promptly on
// SIGTERM or SIGINT so that stopping its container is fast.
//
// For tests, "hello exit CODE" exits at once with CODE instead of serving,
// and "hello probe URL" fetches URL once a second and logs the first line
// of each answer (service-to-service checks in compose tests).
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) == 3 && os.Args[1] == "exit" {
		code, err := strconv.Atoi(os.Args[2])
		if err != nil || code < 0 || code > 255 {
			log.Fatalf("hello: exit code %q: want an integer in 0..255", os.Args[2])
		}
		os.Exit(code)
	}
	if len(os.Args) == 3 && os.Args[1] == "probe" {
		probe(os.Args[2])
		return
	}
	if err := run(); err != nil {
		log.Fatalf("hello: %v", err)
	}
}

func run() error {
	addr := ":8080"
	if port := os.Getenv("PORT"); port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("PORT %q: want a port number in 1..65535", port)
		}
		addr = ":" + port
	}
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		// The greeting comes from the environment on every request, so
		// an env change in the manifest shows in the answer.
		if g := os.Getenv("GREETING"); g != "" {
			fmt.Fprintf(w, "hello from persys\ngreeting: %s\nhostname: %s\n", g, host)
			return
		}
		fmt.Fprintf(w, "hello from persys\nhostname: %s\n", host)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprint(w, "ok")
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	// The start line names the greeting, so that an env change shows in
	// the log as well as in the answer.
	if g := os.Getenv("GREETING"); g != "" {
		log.Printf("hello: listening on %s, greeting %q", addr, g)
	} else {
		log.Printf("hello: listening on %s", addr)
	}

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// probe fetches url once a second until SIGTERM and logs what it got.
func probe(url string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	client := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		resp, err := client.Get(url)
		if err != nil {
			log.Printf("probe: %s: %v", url, err)
		} else {
			var line [128]byte
			n, _ := resp.Body.Read(line[:])
			resp.Body.Close()
			first, _, _ := strings.Cut(string(line[:n]), "\n")
			log.Printf("probe: %s: %d %s", url, resp.StatusCode, first)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
