// Package gateway owns the northbound REST+JSON API of Persys Compute:
// the route table, which ties each route to its permission and its
// handler, and the handlers, which turn manifests and query parameters
// into ControlService requests for the scheduler. It terminates HTTPS with
// mutual TLS. The gateway holds no state: every answer comes from the
// scheduler. Callers build the handler with New over a ControlService
// client (leaderconn.Pool to follow the leader of several scheduler
// replicas, or DialScheduler for one) and serve it with Serve.
//
// Every request goes through instrument, which asks package authn who is
// asking, runs the route (authorize checks the route's permission from
// permissions.go, with internal/authz's table), writes errors through
// package httperr (gRPC codes mapped to HTTP once, here at the boundary),
// hands mutating requests to package audit, and logs and counts the
// answer. The files:
//   - gateway.go: Config, New, the route table and instrument;
//     handlers.go, wait.go, logs.go, watch.go, endpoints.go, services.go,
//     secrets.go, identity.go: the REST handlers;
//   - permissions.go: what each route needs and the authorize step;
//   - openapi.go: serves the document package openapi builds from the
//     gateway's body types and limits;
//   - console.go: mounts the web console (package console) at /ui/;
//   - errors.go: the error body's types (package httperr's);
//   - serve.go, metrics.go, dial.go: serving, metrics and dialling.
//
// Following the scheduler leader is internal/leaderconn's.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/gateway/audit"
	"github.com/persys-dev/compute/internal/gateway/authn"
	"github.com/persys-dev/compute/internal/gateway/console"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
)

// Config wires the gateway to the scheduler.
type Config struct {
	// Control is the scheduler's ControlService; required.
	Control persysv1grpc.ControlServiceClient
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
	// Registry receives the request metrics; nil registers nothing.
	Registry prometheus.Registerer
	// MaxBodyBytes bounds request bodies; 0 means manifest.MaxSize.
	MaxBodyBytes int64
	// CallTimeout bounds each unary call to the scheduler; 0 means 30s.
	// Drain calls are bounded by their own timeout plus 10 s instead.
	CallTimeout time.Duration
	// FollowWriteTimeout bounds each write of a followed log: a client
	// that reads slower is cut off. 0 means FollowWriteTimeout (10s).
	FollowWriteTimeout time.Duration
	// TokenCacheTTL is how long a resolved API token is trusted without
	// asking the scheduler again; 0 means 10s, negative disables the cache.
	TokenCacheTTL time.Duration
	// Revocations, when set, refuses revoked client certificates on every
	// request (401), also on connections opened before the revocation;
	// the TLS layer refuses them at new handshakes.
	Revocations pki.RevocationChecker
}

const (
	defaultWaitTimeout  = 60 * time.Second
	maxWaitTimeout      = time.Hour
	defaultDrainTimeout = 2 * time.Minute
	maxDrainTimeout     = time.Hour
	// drainSlack is how much longer than its own timeout a drain call may
	// take, for the scheduler to collect and send its answer.
	drainSlack     = 10 * time.Second
	maxEventsLimit = 10000
)

var jsonOut = protojson.MarshalOptions{EmitUnpopulated: false, UseProtoNames: false}

type gateway struct {
	control     persysv1grpc.ControlServiceClient
	log         *slog.Logger
	maxBody     int64
	callTimeout time.Duration
	// followWrite bounds each write of a followed log (logs.go).
	followWrite time.Duration
	metrics     *metrics
	// auth identifies the caller of every request (package authn);
	// audit records an event for each mutating one (package audit).
	auth  *authn.Authenticator
	audit *audit.Auditor
	// console serves the web console at /ui/ (console.go).
	console *console.Console
}

type route struct {
	method, path string
	// roles may call the route; nil admits every verified client.
	roles   []pki.Role
	handler func(w http.ResponseWriter, r *http.Request) (int, error)
}

// Who may call what: viewers read, operators and admins also change
// (workloads, and cordon, uncordon and drain of nodes).
var (
	readers = []pki.Role{pki.RoleAdmin, pki.RoleOperator, pki.RoleViewer}
	writers = []pki.Role{pki.RoleAdmin, pki.RoleOperator}
)

// New returns the gateway's HTTP handler. It panics when cfg.Control is nil
// or the metrics cannot be registered, both programming errors.
func New(cfg Config) http.Handler {
	if cfg.Control == nil {
		panic("gateway: Config.Control is nil")
	}
	g := &gateway{
		control:     cfg.Control,
		log:         cfg.Logger,
		maxBody:     cfg.MaxBodyBytes,
		callTimeout: cfg.CallTimeout,
		followWrite: cfg.FollowWriteTimeout,
		metrics:     newMetrics(cfg.Registry),
	}
	g.initConsole()
	g.auth = authn.New(authn.Config{Tokens: cfg.Control, TokenCacheTTL: cfg.TokenCacheTTL,
		Revocations: cfg.Revocations, Sessions: true})
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.maxBody <= 0 {
		g.maxBody = manifest.MaxSize
	}
	if g.callTimeout <= 0 {
		g.callTimeout = 30 * time.Second
	}
	g.audit = audit.New(audit.Config{Sink: cfg.Control, Logger: g.log, Registry: cfg.Registry})

	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range g.routes() {
		mux.Handle(rt.method+" "+rt.path, g.instrument(rt.method+" "+rt.path, loginRedirect(rt, g.authorize(rt, checkPathNames(rt.path, rt.handler)))))
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	// A known path with another method answers 405 with Allow; anything
	// else answers a JSON 404.
	for path, methods := range allowed {
		allow := strings.Join(methods, ", ")
		mux.Handle(path, g.instrument("method-not-allowed", func(w http.ResponseWriter, r *http.Request) (int, error) {
			w.Header().Set("Allow", allow)
			return 0, httperr.New(http.StatusMethodNotAllowed, fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow))
		}))
	}
	mux.Handle("/", g.instrument("unmatched", func(_ http.ResponseWriter, r *http.Request) (int, error) {
		return 0, httperr.New(http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	}))
	return mux
}

// checkPathNames refuses with 400, naming the path field, a request whose
// {name} or {id} cannot name an object (model.NameProblem) — a '/' that
// came as %2F, a space, a control character — before any handler or the
// scheduler sees it; the handlers may check their own stricter rules.
func checkPathNames(path string, h func(http.ResponseWriter, *http.Request) (int, error)) func(http.ResponseWriter, *http.Request) (int, error) {
	var fields []string
	for _, seg := range strings.Split(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") && seg != "{$}" {
			fields = append(fields, strings.TrimSuffix(seg[1:len(seg)-1], "..."))
		}
	}
	if len(fields) == 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) (int, error) {
		for _, f := range fields {
			if v := r.PathValue(f); model.NameProblem(v) != "" {
				return 0, httperr.Field(f, fmt.Sprintf("%q cannot name an object: %s", v, model.NameProblem(v)))
			}
		}
		return h(w, r)
	}
}

func (g *gateway) routes() []route {
	base := []route{
		{"POST", "/v1/workloads", writers, g.apply},
		{"POST", "/v1/manifests", writers, g.applyManifests},
		{"GET", "/v1/workloads", readers, g.listWorkloads},
		{"GET", "/v1/workloads/{name}", readers, g.getWorkload},
		{"DELETE", "/v1/workloads/{name}", writers, g.deleteWorkload},
		{"GET", "/v1/workloads/{name}/wait", readers, g.wait},
		{"POST", "/v1/workloads/{name}/retry", writers, g.retry},
		{"GET", "/v1/nodes", readers, g.listNodes},
		{"GET", "/v1/nodes/{id}", readers, g.getNode},
		{"POST", "/v1/nodes/{id}/cordon", writers, g.cordon},
		{"POST", "/v1/nodes/{id}/uncordon", writers, g.uncordon},
		{"POST", "/v1/nodes/{id}/drain", writers, g.drain},
		{"GET", "/v1/leader", readers, g.leader},
		{"GET", "/v1/version", readers, g.version},
		{"GET", "/v1/cluster/summary", readers, g.summary},
		{"GET", "/v1/events", readers, g.listEvents},
		{"GET", "/openapi.json", nil, g.openAPI},
		{"GET", "/healthz", nil, g.healthz},
	}
	base = append(base, g.logRoutes()...)
	base = append(base, g.serviceRoutes()...)
	base = append(base, g.secretRoutes()...)
	base = append(base, g.consoleRoutes()...)
	return append(base, g.identityRoutes()...)
}

// statusWriter remembers the status code a handler wrote.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.code == 0 {
		s.code = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.code == 0 {
		s.code = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// instrument runs a handler, writes its error as JSON, and records the
// request in the log and the metrics under the route's name.
func (g *gateway) instrument(name string, h func(http.ResponseWriter, *http.Request) (int, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w}
		auth := g.auth.Authenticate(r)
		ctx := audit.NewContext(authn.NewContext(r.Context(), auth))
		user, method := "", ""
		if id := auth.ID; id != nil {
			user, method = id.User, id.Method
			md := metadata.Pairs(contract.MetadataUser, id.User)
			if id.Role != "" {
				md.Append(contract.MetadataRole, string(id.Role))
			}
			ctx = metadata.NewOutgoingContext(ctx, md)
		}
		r = r.WithContext(ctx)
		code, err := h(sw, r)
		if err != nil {
			code = httperr.Write(sw, err)
		} else if sw.code == 0 && code != 0 {
			sw.WriteHeader(code)
		}
		if sw.code != 0 {
			code = sw.code
		}
		if authn.Mutating(r.Method) {
			ev := audit.Event(r, audit.Answer{Route: name, Permission: RoutePermission(name), Caller: auth.ID, Code: code, Err: err})
			g.audit.Record(r.Context(), ev, auth.ID == nil)
		}
		elapsed := time.Since(start)
		g.metrics.observe(name, code, elapsed)
		attrs := []any{
			"method", r.Method,
			"path", r.URL.Path,
			"route", name,
			"status", code,
			"duration_ms", float64(elapsed.Microseconds()) / 1000,
			"user", user,
			"auth", method,
		}
		switch {
		case err != nil && code >= 500:
			g.log.Error("request", append(attrs, "err", err)...)
		case err != nil:
			g.log.Info("request", append(attrs, "err", err)...)
		default:
			g.log.Info("request", attrs...)
		}
	})
}

// writeJSON writes a protobuf message as lowerCamel protojson with enum
// values in the canonical spelling of package contract (RUNNING,
// IMAGE_NOT_FOUND), the spelling of error bodies and metric labels.
func writeJSON(w http.ResponseWriter, code int, m proto.Message) (int, error) {
	b, err := contract.MarshalJSON(jsonOut, m)
	if err != nil {
		return 0, fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return code, nil
}

// answer makes one scheduler call within the request's call timeout and
// writes its answer as JSON with code: the shape of most routes.
func answer(g *gateway, w http.ResponseWriter, r *http.Request, code int, call func(context.Context) (proto.Message, error)) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	m, err := call(ctx)
	if err != nil {
		return 0, err
	}
	return writeJSON(w, code, m)
}

func (g *gateway) callCtx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), g.callTimeout)
}

// readBody reads a request body of at most limit bytes: past it a 413
// naming what is too large; when empty, a 400 asking for want (want "":
// an empty body is the caller's to judge).
func readBody(w http.ResponseWriter, r *http.Request, limit int64, what, want string) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, httperr.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("%s is larger than the limit of %d bytes", what, tooBig.Limit))
		}
		return nil, httperr.New(http.StatusBadRequest, fmt.Sprintf("reading request body: %v", err))
	}
	if want != "" && len(bytes.TrimSpace(body)) == 0 {
		return nil, httperr.New(http.StatusBadRequest, "request body is empty: send "+want)
	}
	return body, nil
}
