// Package audit owns the gateway's audit events: building the one event
// each answered mutating request (POST, PUT, PATCH, DELETE) becomes,
// allowed or refused, and recording it through the scheduler's
// RecordAudit. An event says who (user and how authenticated), what
// (method, path and the workload or node) and the result (HTTP status,
// allowed, denied or unrouted). Bodies, secret values and tokens never
// enter an event. Requests without any identity are recorded at a bounded
// rate, since anyone who reaches the port can send them.
//
// The gateway puts a Note in each request's context (NewContext) for the
// handlers to fill (NoteWorkload, NoteWorkloads), builds the event once the
// request is answered (Event) and hands it to an Auditor. A failure to
// record is logged at error level and counted in
// persys_gateway_audit_failures_total; the request's answer stands.
package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/httperr"
)

const (
	callTimeout    = 5 * time.Second
	maxAuditPath   = 400
	maxAuditDetail = 400
)

// Requests without any identity are audited at most AnonymousRate per
// second (bursts of anonymousBurst): each would otherwise be an etcd
// write kept for the audit retention.
const (
	AnonymousRate  = 20
	anonymousBurst = 100
)

// Sink records an audit event: the scheduler's RecordAudit.
type Sink interface {
	RecordAudit(ctx context.Context, in *persysv1.RecordAuditRequest, opts ...grpc.CallOption) (*persysv1.RecordAuditResponse, error)
}

// Config wires an Auditor.
type Config struct {
	// Sink records the events; required.
	Sink Sink
	// Logger receives failures and suppressions; nil discards.
	Logger *slog.Logger
	// Registry receives the audit metrics; nil registers nothing.
	Registry prometheus.Registerer
}

// Auditor records audit events. Safe for concurrent use.
type Auditor struct {
	sink    Sink
	log     *slog.Logger
	metrics *metrics
	anon    *bucket
	now     func() time.Time
}

// New returns an Auditor. It panics when cfg.Sink is nil or the metrics
// cannot be registered, both programming errors.
func New(cfg Config) *Auditor {
	if cfg.Sink == nil {
		panic("audit: Config.Sink is nil")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Auditor{sink: cfg.Sink, log: log, metrics: newMetrics(cfg.Registry),
		anon: newBucket(AnonymousRate, anonymousBurst), now: time.Now}
}

type metrics struct {
	recorded   *prometheus.CounterVec
	failures   prometheus.Counter
	suppressed prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
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

// Note is filled by handlers that learn the resource only from the body
// (apply names its workload in the manifest; a manifest stream is noted by
// its count, its names would not fit one event).
type Note struct {
	workload  string
	workloads int
}

type noteKey struct{}

// NewContext returns ctx carrying an empty Note for the request's event.
func NewContext(ctx context.Context) context.Context {
	return context.WithValue(ctx, noteKey{}, &Note{})
}

func noteFrom(r *http.Request) *Note {
	n, _ := r.Context().Value(noteKey{}).(*Note)
	return n
}

// NoteWorkload records the workload a request acts on, for its event.
func NoteWorkload(r *http.Request, name string) {
	if n := noteFrom(r); n != nil {
		n.workload = name
	}
}

// NoteWorkloads records how many workloads a request sends to the
// scheduler, for its event.
func NoteWorkloads(r *http.Request, count int) {
	if n := noteFrom(r); n != nil {
		n.workloads = count
	}
}

// Answer is how the gateway answered one request.
type Answer struct {
	// Route is the route's "METHOD pattern", or a name without " /" when
	// no route matched.
	Route string
	// Permission is what the route needs; "" for public routes.
	Permission authz.Permission
	// Caller is who authentication found, nil for no one.
	Caller *authn.Identity
	Code   int
	// Err is the error answered, nil for success.
	Err error
}

// Event builds the audit event of one answered request r (whose context
// carries its Note).
func Event(r *http.Request, a Answer) *persysv1.Event {
	actor := "anonymous"
	if a.Caller != nil && a.Caller.User != "" {
		actor = a.Caller.User
	}
	routed := strings.Contains(a.Route, " /")
	// allowed: the route's authorization passed; denied: refused for the
	// identity (401, 403); unrouted: no route matched (404, 405), so no
	// authorization took place.
	denied := a.Code == http.StatusUnauthorized || a.Code == http.StatusForbidden
	result := strconv.Itoa(a.Code) + " allowed"
	switch {
	case denied:
		result = strconv.Itoa(a.Code) + " denied"
	case !routed:
		result = strconv.Itoa(a.Code) + " unrouted"
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
	note := noteFrom(r)
	switch {
	case strings.HasPrefix(a.Route, http.MethodPost+" /v1/workloads") || strings.Contains(a.Route, "/v1/workloads/{name}"):
		ev.Workload = r.PathValue("name")
		if ev.Workload == "" && note != nil {
			ev.Workload = note.workload
		}
	case strings.Contains(a.Route, "/v1/nodes/{id}"):
		ev.NodeId = r.PathValue("id")
	}
	ev.Message = message(r, a, note, denied, routed)
	// Keep within the scheduler's limits even for odd user names.
	if len(ev.Workload) > 253 {
		ev.Workload = ""
	}
	if len(ev.NodeId) > 253 {
		ev.NodeId = ""
	}
	return ev
}

// message is the event's detail: how the caller was identified, the role
// and permission, the count of workloads, the client address, and why the
// request was refused.
func message(r *http.Request, a Answer, note *Note, denied, routed bool) string {
	msg := []string{"via " + a.Caller.Describe()}
	if a.Caller != nil && a.Caller.Role != "" {
		msg = append(msg, "role "+string(a.Caller.Role))
	}
	if a.Permission != "" && routed {
		msg = append(msg, "needs "+string(a.Permission))
	}
	if note != nil && note.workloads > 0 {
		msg = append(msg, fmt.Sprintf("%d workloads", note.workloads))
	}
	if host := r.RemoteAddr; host != "" {
		msg = append(msg, "from "+host)
	}
	if a.Err != nil && (denied || a.Code >= 400) {
		d := httperr.Detail(a.Err).Message
		if len(d) > maxAuditDetail {
			d = d[:maxAuditDetail] + "…"
		}
		msg = append(msg, "refused: "+d)
	}
	return strings.Join(msg, "; ")
}

// Record records the audit event of one answered mutating request,
// within the anonymous rate for requests without any identity.
func (a *Auditor) Record(ctx context.Context, ev *persysv1.Event, anonymous bool) {
	if anonymous {
		ok, report := a.anon.allow(a.now())
		if !ok {
			a.metrics.suppressed.Inc()
			if report > 0 {
				a.log.Warn("audit events of anonymous refusals suppressed", "count", report,
					"rate_per_second", AnonymousRate, "last_action", ev.GetAction())
			}
			return
		}
	}
	a.record(ctx, ev)
}

// record sends ev to the sink; a failure is logged and counted.
func (a *Auditor) record(ctx context.Context, ev *persysv1.Event) {
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), callTimeout)
	defer cancel()
	_, err := a.sink.RecordAudit(cctx, &persysv1.RecordAuditRequest{Event: ev})
	if err != nil {
		a.metrics.failures.Inc()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("scheduler did not answer within %s: %w", callTimeout, err)
		}
		a.log.Error("audit event not recorded", "actor", ev.GetActor(), "action", ev.GetAction(),
			"result", ev.GetResult(), "err", err)
		return
	}
	kind := "allowed"
	if strings.HasSuffix(ev.GetResult(), "denied") {
		kind = "denied"
	}
	a.metrics.recorded.WithLabelValues(kind).Inc()
}
