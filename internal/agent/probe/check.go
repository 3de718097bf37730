// Package probe runs a workload's health checks on the agent: one Prober
// per running instance, a goroutine that runs its startup, liveness and
// readiness checks (http, tcp, exec) at their intervals and keeps the
// result as a Snapshot (health state, ready, the last changed output).
//
// The caller (the agent) starts a Prober when an instance with checks
// runs, reads Snapshot for every status it reports, acts on
// Snapshot.LivenessFailed (it stops the instance and reports the failure)
// and Stops the Prober when the instance goes; Stop waits for the
// goroutine, so nothing outlives the instance. How the instance is reached
// is the caller's Target; the package never talks to a runtime.
package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Defaults of a HealthCheck's zero fields.
const (
	DefaultInterval         = 10 * time.Second
	DefaultTimeout          = time.Second
	DefaultFailureThreshold = 3
	DefaultSuccessThreshold = 1
	// DefaultStatusMin and DefaultStatusMax bound the HTTP status codes
	// that pass when the check names none.
	DefaultStatusMin = 200
	DefaultStatusMax = 399
	// MaxOutput bounds the output kept of one check.
	MaxOutput = 1024
)

// Target reaches one running instance.
type Target interface {
	// Address returns the host:port where the agent reaches the
	// instance's port (a container port, a VM's guest port).
	Address(ctx context.Context, port uint32) (string, error)
	// Exec runs argv inside the instance and returns its exit code and
	// combined output.
	Exec(ctx context.Context, argv []string) (exitCode int, output []byte, err error)
}

// Result is one check's outcome.
type Result struct {
	OK     bool
	Output string
}

// Run runs hc once against t, bounded by hc's timeout scaled by second
// (time.Second outside tests).
func Run(ctx context.Context, hc *persysv1.HealthCheck, t Target, second time.Duration) Result {
	ctx, cancel := context.WithTimeout(ctx, scaled(hc.GetTimeoutSeconds(), DefaultTimeout, second))
	defer cancel()
	switch hc.GetType() {
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP:
		return runHTTP(ctx, hc, t)
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP:
		return runTCP(ctx, hc, t)
	case persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC:
		return runExec(ctx, hc, t)
	}
	return Result{Output: fmt.Sprintf("unknown check type %s", hc.GetType())}
}

// scaled is n units of second, or def (in real seconds, scaled the same
// way) when n is 0.
func scaled(n int32, def time.Duration, second time.Duration) time.Duration {
	if n <= 0 {
		return def / time.Second * second
	}
	return time.Duration(n) * second
}

// httpClient does not follow redirects: a redirect's own status is the
// answer (3xx passes by default), as a load balancer's check sees it;
// following it could leave the instance.
var httpClient = &http.Client{
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	Transport: &http.Transport{
		// Every check opens its own connection: a kept one could hide a
		// listener that stopped accepting.
		DisableKeepAlives: true,
		Proxy:             nil,
	},
}

func runHTTP(ctx context.Context, hc *persysv1.HealthCheck, t Target) Result {
	addr, err := t.Address(ctx, hc.GetPort())
	if err != nil {
		return Result{Output: "no address: " + err.Error()}
	}
	path := hc.GetPath()
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return Result{Output: err.Error()}
	}
	req.Header.Set("User-Agent", "persys-agent-probe")
	resp, err := httpClient.Do(req)
	if err != nil {
		return Result{Output: trimErr(err)}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxOutput))
	lo, hi := hc.GetExpectedStatusMin(), hc.GetExpectedStatusMax()
	if lo == 0 && hi == 0 {
		lo, hi = DefaultStatusMin, DefaultStatusMax
	}
	code := uint32(resp.StatusCode)
	out := fmt.Sprintf("HTTP %d", resp.StatusCode)
	if b := strings.TrimSpace(string(body)); b != "" {
		out += ": " + b
	}
	return Result{OK: code >= lo && code <= hi, Output: clip(out)}
}

func runTCP(ctx context.Context, hc *persysv1.HealthCheck, t Target) Result {
	addr, err := t.Address(ctx, hc.GetPort())
	if err != nil {
		return Result{Output: "no address: " + err.Error()}
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return Result{Output: trimErr(err)}
	}
	_ = conn.Close()
	return Result{OK: true, Output: "connected to " + addr}
}

func runExec(ctx context.Context, hc *persysv1.HealthCheck, t Target) Result {
	code, out, err := t.Exec(ctx, hc.GetCommand())
	switch {
	case ctx.Err() != nil:
		// Killed at the timeout: its exit code says nothing.
		return Result{Output: "timed out"}
	case err != nil:
		return Result{Output: "exec: " + trimErr(err)}
	}
	text := strings.TrimSpace(string(out))
	if code != 0 {
		prefix := fmt.Sprintf("exit code %d", code)
		if text == "" {
			text = prefix
		} else {
			text = prefix + ": " + text
		}
	}
	return Result{OK: code == 0, Output: clip(text)}
}

func trimErr(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "timed out"
	}
	return clip(err.Error())
}

// clip bounds s to MaxOutput bytes without cutting a character.
func clip(s string) string {
	if len(s) <= MaxOutput {
		return s
	}
	s = s[:MaxOutput]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
