package probe

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/testutil/eventually"
)

// local is a Target on this machine: every port is addr's, commands run
// as local processes.
type local struct{ addr string }

func (l local) Address(context.Context, uint32) (string, error) { return l.addr, nil }

func (l local) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		return ee.ExitCode(), out, nil
	}
	return 0, out, err
}

// server answers with the status code held in code.
func server(t *testing.T, code *atomic.Int32) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(int(code.Load()))
		_, _ = w.Write([]byte("state " + http.StatusText(int(code.Load()))))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestRun(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	httpAddr := server(t, &code)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	httpCheck := func(path string, lo, hi uint32) *persysv1.HealthCheck {
		return &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP, Path: path, Port: 80,
			ExpectedStatusMin: lo, ExpectedStatusMax: hi}
	}
	tcp := &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP, Port: 80}
	execCheck := func(argv ...string) *persysv1.HealthCheck {
		return &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC, Command: argv}
	}
	tests := []struct {
		name   string
		code   int32
		hc     *persysv1.HealthCheck
		addr   string
		ok     bool
		output string
	}{
		{"http 200 passes by default", 200, httpCheck("/healthz", 0, 0), httpAddr, true, "HTTP 200: state OK"},
		{"http 302 passes by default", 302, httpCheck("/healthz", 0, 0), httpAddr, true, "HTTP 302"},
		{"http 503 fails", 503, httpCheck("/healthz", 0, 0), httpAddr, false, "HTTP 503: state Service Unavailable"},
		{"http 200 outside the expected 204", 200, httpCheck("/healthz", 204, 204), httpAddr, false, "HTTP 200"},
		{"http 503 inside an expected range", 503, httpCheck("/healthz", 500, 599), httpAddr, true, "HTTP 503"},
		{"http default path is /", 200, httpCheck("", 0, 0), httpAddr, false, "HTTP 404"},
		{"http refused", 200, httpCheck("/healthz", 0, 0), closedAddr, false, "refused"},
		{"tcp connects", 200, tcp, ln.Addr().String(), true, "connected to " + ln.Addr().String()},
		{"tcp refused", 200, tcp, closedAddr, false, "refused"},
		{"exec exit 0", 200, execCheck("sh", "-c", "echo fine"), "", true, "fine"},
		{"exec exit 3", 200, execCheck("sh", "-c", "echo broken; exit 3"), "", false, "exit code 3: broken"},
		{"exec exit 4 silently", 200, execCheck("sh", "-c", "exit 4"), "", false, "exit code 4"},
		{"exec times out", 200, &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC,
			Command: []string{"sleep", "5"}, TimeoutSeconds: 1}, "", false, "timed out"},
		{"unknown type", 200, &persysv1.HealthCheck{}, "", false, "unknown check type"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code.Store(tc.code)
			// Seconds are real but for the timeout case: a loaded machine
			// may take a while to start a process.
			second := time.Second
			if tc.hc.GetTimeoutSeconds() > 0 {
				second = 50 * time.Millisecond
			}
			r := Run(context.Background(), tc.hc, local{tc.addr}, second)
			if r.OK != tc.ok || !strings.Contains(r.Output, tc.output) {
				t.Fatalf("Run = %v %q, want %v with %q", r.OK, r.Output, tc.ok, tc.output)
			}
		})
	}
}

func TestClip(t *testing.T) {
	s := strings.Repeat("é", MaxOutput) // two bytes each
	got := clip(s)
	if len(got) > MaxOutput || !strings.HasPrefix(s, got) || len(got) < MaxOutput-1 {
		t.Fatalf("clip gave %d bytes", len(got))
	}
}

func TestState(t *testing.T) {
	hc := func(fail, succ int32) *persysv1.HealthCheck {
		return &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP, FailureThreshold: fail, SuccessThreshold: succ}
	}
	type step struct {
		kind   string
		ok     bool
		health persysv1.HealthState
		ready  bool
		failed bool
	}
	const (
		starting  = persysv1.HealthState_HEALTH_STATE_STARTING
		healthy   = persysv1.HealthState_HEALTH_STATE_HEALTHY
		unhealthy = persysv1.HealthState_HEALTH_STATE_UNHEALTHY
	)
	tests := []struct {
		name    string
		checks  Checks
		initial persysv1.HealthState
		ready   bool
		steps   []step
	}{
		{"readiness needs its success threshold", Checks{Readiness: hc(2, 2)}, starting, false, []step{
			{Readiness, true, starting, false, false},
			{Readiness, true, healthy, true, false},
			{Readiness, false, healthy, true, false}, // below the failure threshold
			{Readiness, false, unhealthy, false, false},
			{Readiness, true, unhealthy, false, false},
			{Readiness, true, healthy, true, false},
		}},
		{"liveness alone is ready at once and fails at its threshold", Checks{Liveness: hc(2, 1)}, healthy, true, []step{
			{Liveness, false, unhealthy, true, false},
			{Liveness, true, healthy, true, false},
			{Liveness, false, unhealthy, true, false},
			{Liveness, false, unhealthy, false, true},
		}},
		{"startup gates readiness", Checks{Startup: hc(3, 1), Readiness: hc(1, 1)}, starting, false, []step{
			{Startup, false, starting, false, false},
			{Startup, true, starting, false, false},
			{Readiness, true, healthy, true, false},
		}},
		{"startup failing its threshold fails the instance", Checks{Startup: hc(2, 1), Readiness: hc(1, 1)}, starting, false, []step{
			{Startup, false, starting, false, false},
			{Startup, false, unhealthy, false, true},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := newState(tc.checks)
			if s := st.initial(); s.Health != tc.initial || s.Ready != tc.ready {
				t.Fatalf("initial = %s ready %v, want %s ready %v", s.Health, s.Ready, tc.initial, tc.ready)
			}
			for i, sp := range tc.steps {
				s := st.record(sp.kind, Result{OK: sp.ok, Output: "out"}, time.Unix(int64(i), 0))
				if s.Health != sp.health || s.Ready != sp.ready || s.LivenessFailed != sp.failed {
					t.Fatalf("step %d (%s %v) = %s ready %v failed %v, want %s ready %v failed %v", i, sp.kind, sp.ok,
						s.Health, s.Ready, s.LivenessFailed, sp.health, sp.ready, sp.failed)
				}
			}
		})
	}
}

// TestOutputOnlyOnChange: a repeated result keeps the output and time of
// the first, so an unchanged workload's report stays unchanged.
func TestOutputOnlyOnChange(t *testing.T) {
	st := newState(Checks{Readiness: &persysv1.HealthCheck{}})
	a := st.record(Readiness, Result{OK: false, Output: "HTTP 503: at 1"}, time.Unix(1, 0))
	b := st.record(Readiness, Result{OK: false, Output: "HTTP 503: at 2"}, time.Unix(2, 0))
	if b.Output != a.Output || !b.CheckedAt.Equal(a.CheckedAt) || b.Check != Readiness {
		t.Fatalf("repeated failure changed the output: %+v then %+v", a, b)
	}
	c := st.record(Readiness, Result{OK: true, Output: "HTTP 200"}, time.Unix(3, 0))
	if c.Output != "HTTP 200" || !c.CheckedAt.Equal(time.Unix(3, 0)) {
		t.Fatalf("a changed result kept the old output: %+v", c)
	}
}

func TestProber(t *testing.T) {
	var code atomic.Int32
	code.Store(200)
	addr := server(t, &code)
	fast := &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP, Path: "/healthz", Port: 80,
		IntervalSeconds: 1, FailureThreshold: 2, TimeoutSeconds: 100}
	changes := make(chan Snapshot, 100)
	p := Start(context.Background(), Options{
		Checks:   Checks{Readiness: fast, Liveness: &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC, Command: []string{"true"}, IntervalSeconds: 1, TimeoutSeconds: 100}},
		Target:   local{addr},
		OnChange: func(s Snapshot) { changes <- s },
		Second:   20 * time.Millisecond,
	})
	defer p.Stop()
	eventually.Eventually(t, "ready", 10*time.Second, func() (bool, string) {
		s := p.Snapshot()
		return s.Ready && s.Health == persysv1.HealthState_HEALTH_STATE_HEALTHY, s.Health.String()
	})
	code.Store(503)
	eventually.Eventually(t, "not ready", 10*time.Second, func() (bool, string) {
		s := p.Snapshot()
		return !s.Ready && s.Health == persysv1.HealthState_HEALTH_STATE_UNHEALTHY && strings.HasPrefix(s.Output, "HTTP 503"), s.Output
	})
	if s := p.Snapshot(); s.LivenessFailed {
		t.Fatal("a readiness failure failed the instance")
	}
	if len(changes) == 0 {
		t.Fatal("OnChange was never called")
	}
}

func TestProberLivenessFailure(t *testing.T) {
	var results atomic.Int32
	p := Start(context.Background(), Options{
		Checks: Checks{Liveness: &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC,
			Command: []string{"sh", "-c", "echo dead; exit 1"}, IntervalSeconds: 1, FailureThreshold: 3, TimeoutSeconds: 100}},
		Target:   local{},
		OnResult: func(string, persysv1.HealthCheckType, bool) { results.Add(1) },
		Second:   20 * time.Millisecond,
	})
	eventually.Eventually(t, "liveness failure", 10*time.Second, func() (bool, string) {
		s := p.Snapshot()
		return s.LivenessFailed, s.Output
	})
	if s := p.Snapshot(); s.Detail != "liveness check failed: exit code 1: dead" || s.Check != Liveness {
		t.Fatalf("snapshot %+v", s)
	}
	if n := results.Load(); n != 3 {
		t.Fatalf("%d checks ran before the failure, want 3 (the threshold)", n)
	}
	p.Stop()
	p.Stop() // a second Stop returns too
}

// TestProberStopsWithContext: the goroutine ends with its context.
func TestProberStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	p := Start(ctx, Options{Checks: Checks{Readiness: &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP, Port: 1}},
		Target: local{"127.0.0.1:1"}, Second: 20 * time.Millisecond})
	cancel()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("prober goroutine still runs after its context ended")
	}
}
