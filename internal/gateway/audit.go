package gateway

// Audit: every mutating request (POST, PUT, PATCH, DELETE), allowed or
// refused, becomes one audit event recorded through the scheduler's
// RecordAudit: who (user and how authenticated), what (method, path and
// the workload or node), and the result (HTTP status, allowed or denied).
// Bodies, secret values and tokens never enter an audit event. A failure to
// record is logged at error level and counted in
// persys_gateway_audit_failures_total; the request's answer stands.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

const (
	auditCallTimeout = 5 * time.Second
	maxAuditPath     = 400
	maxAuditDetail   = 400
)

type auditMetrics struct {
	recorded   *prometheus.CounterVec
	failures   prometheus.Counter
	suppressed prometheus.Counter
}

func newAuditMetrics(reg prometheus.Registerer) *auditMetrics {
	m := &auditMetrics{
		recorded: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "persys", Subsystem: "gateway", Name: "audit_events_total",
			Help: "Audit events recorded through the scheduler, by result (allowed or denied).",
		}, []string{"result"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "persys", Subsystem: "gateway", Name: "audit_failures_total",
			Help: "Audit events that could not be recorded (each is also logged at error level).",
		}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "persys", Subsystem: "gateway", Name: "audit_suppressed_total",
			Help: "Audit events of refused requests without any identity that were not recorded because they came faster than " +
				"the anonymous audit rate (a flood must not fill etcd); logged at most every 10 s.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.recorded, m.failures, m.suppressed)
	}
	return m
}

// auditNote is filled by handlers that learn the resource only from the
// body (apply names its workload in the manifest; a manifest stream is
// noted by its count, its names would not fit one event).
type auditNote struct {
	workload  string
	workloads int
}

type auditNoteKey struct{}

// noteWorkload records the workload a request acts on, for its audit event.
func noteWorkload(r *http.Request, name string) {
	if n, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		n.workload = name
	}
}

// noteWorkloads records how many workloads a request sends to the
// scheduler, for its audit event.
func noteWorkloads(r *http.Request, n int) {
	if note, ok := r.Context().Value(auditNoteKey{}).(*auditNote); ok {
		note.workloads = n
	}
}

// auditEvent builds the audit event of one answered request.
func auditEvent(r *http.Request, route string, a authn.Result, code int, err error, note *auditNote) *persysv1.Event {
	actor := "anonymous"
	if a.ID != nil && a.ID.User != "" {
		actor = a.ID.User
	}
	// allowed: the route's authorization passed; denied: refused for the
	// identity (401, 403); unrouted: no route matched (404, 405), so no
	// authorization took place.
	denied := code == http.StatusUnauthorized || code == http.StatusForbidden
	result := strconv.Itoa(code) + " allowed"
	switch {
	case denied:
		result = strconv.Itoa(code) + " denied"
	case !strings.Contains(route, " /"):
		result = strconv.Itoa(code) + " unrouted"
	}
	path := r.URL.Path
	if len(path) > maxAuditPath {
		path = path[:maxAuditPath] + "…"
	}
	ev := &persysv1.Event{
		Type:   "Audit",
		Time:   timestamppb.Now(),
		Actor:  actor,
		Action: r.Method + " " + path,
		Result: result,
	}
	switch {
	case strings.HasPrefix(route, http.MethodPost+" /v1/workloads") || strings.Contains(route, "/v1/workloads/{name}"):
		ev.Workload = r.PathValue("name")
		if ev.Workload == "" && note != nil {
			ev.Workload = note.workload
		}
	case strings.Contains(route, "/v1/nodes/{id}"):
		ev.NodeId = r.PathValue("id")
	}
	msg := []string{"via " + a.ID.Describe()}
	if a.ID != nil && a.ID.Role != "" {
		msg = append(msg, "role "+string(a.ID.Role))
	}
	if p := RoutePermission(route); p != "" && strings.Contains(route, " /") {
		msg = append(msg, "needs "+string(p))
	}
	if note != nil && note.workloads > 0 {
		msg = append(msg, fmt.Sprintf("%d workloads", note.workloads))
	}
	if host := r.RemoteAddr; host != "" {
		msg = append(msg, "from "+host)
	}
	if err != nil && (denied || code >= 400) {
		d := httperr.Detail(err).Message
		if len(d) > maxAuditDetail {
			d = d[:maxAuditDetail] + "…"
		}
		msg = append(msg, "refused: "+d)
	}
	ev.Message = strings.Join(msg, "; ")
	// Keep within the scheduler's limits even for odd user names.
	if len(ev.Workload) > 253 {
		ev.Workload = ""
	}
	if len(ev.NodeId) > 253 {
		ev.NodeId = ""
	}
	return ev
}

// Requests without any identity are audited at most anonAuditRate per
// second (bursts of anonAuditBurst): anyone who reaches the port can send
// them, and each would otherwise be an etcd write kept for the audit
// retention.
const (
	anonAuditRate  = 20
	anonAuditBurst = 100
	suppressLogGap = 10 * time.Second
)

// bucket is a token bucket.
type bucket struct {
	mu           sync.Mutex
	rate, burst  float64
	tokens       float64
	last         time.Time
	suppressed   int
	lastReported time.Time
}

func newBucket(rate, burst float64) *bucket { return &bucket{rate: rate, burst: burst, tokens: burst} }

// allow takes a token at now; when there is none it counts a suppression
// and returns, every suppressLogGap, how many to report.
func (b *bucket) allow(now time.Time) (ok bool, report int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.last.IsZero() && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	}
	if now.After(b.last) {
		b.last = now
	}
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	b.suppressed++
	if now.Sub(b.lastReported) >= suppressLogGap {
		report, b.suppressed, b.lastReported = b.suppressed, 0, now
	}
	return false, report
}

// auditRequest records the audit event of one answered mutating request,
// within the anonymous rate for requests without any identity.
func (g *gateway) auditRequest(ctx context.Context, ev *persysv1.Event, anonymous bool) {
	if anonymous {
		ok, report := g.anonAudit.allow(time.Now())
		if !ok {
			g.auditMetrics.suppressed.Inc()
			if report > 0 {
				g.log.Warn("audit events of anonymous refusals suppressed", "count", report,
					"rate_per_second", anonAuditRate, "last_action", ev.GetAction())
			}
			return
		}
	}
	g.audit(ctx, ev)
}

// audit records ev through the scheduler; a failure is logged and counted.
func (g *gateway) audit(ctx context.Context, ev *persysv1.Event) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), auditCallTimeout)
	defer cancel()
	_, err := g.control.RecordAudit(cctx, &persysv1.RecordAuditRequest{Event: ev})
	if err != nil {
		g.auditMetrics.failures.Inc()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("scheduler did not answer within %s: %w", auditCallTimeout, err)
		}
		g.log.Error("audit event not recorded", "actor", ev.GetActor(), "action", ev.GetAction(),
			"result", ev.GetResult(), "err", err)
		return
	}
	kind := "allowed"
	if strings.HasSuffix(ev.GetResult(), "denied") {
		kind = "denied"
	}
	g.auditMetrics.recorded.WithLabelValues(kind).Inc()
}
