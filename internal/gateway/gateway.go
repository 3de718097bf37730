// Package gateway owns the northbound REST+JSON API of Persys Compute. It
// terminates HTTPS with mutual TLS (users are identified by their client
// certificate), turns manifests and query parameters into ControlService
// requests for the scheduler, and maps gRPC status codes to HTTP once, here
// at the boundary. The gateway holds no state: every answer comes from the
// scheduler. Callers build the handler with New, dial the scheduler with
// DialScheduler and serve with Serve.
package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
)

// Config wires the gateway to the scheduler.
type Config struct {
	// Control is the scheduler's ControlService; required.
	Control persysv1.ControlServiceClient
	// Logger receives one line per request; nil discards.
	Logger *slog.Logger
	// Registry receives the request metrics; nil registers nothing.
	Registry prometheus.Registerer
	// MaxBodyBytes bounds request bodies; 0 means manifest.MaxSize.
	MaxBodyBytes int64
	// CallTimeout bounds each unary call to the scheduler; 0 means 30s.
	// Drain calls are bounded by their own timeout plus 10 s instead.
	CallTimeout time.Duration
	// TokenCacheTTL is how long a resolved API token is trusted without
	// asking the scheduler again; 0 means 10s, negative disables the cache.
	TokenCacheTTL time.Duration
	// Revocations, when set, refuses revoked client certificates on every
	// request (401), also on connections opened before the revocation;
	// the TLS layer refuses them at new handshakes.
	Revocations pki.RevocationChecker
}

// Metadata keys the gateway adds to every scheduler call so that the
// scheduler can attribute changes (audit events) to the user.
const (
	MetadataUser = authz.MetadataUser
	MetadataRole = authz.MetadataRole
)

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
	control     persysv1.ControlServiceClient
	log         *slog.Logger
	maxBody     int64
	callTimeout time.Duration
	metrics     *metrics
	// tokens resolves bearer tokens (auth.go); auditMetrics counts audit
	// events (audit.go).
	tokens       *tokenCache
	auditMetrics *auditMetrics
	anonAudit    *bucket
	revocations  pki.RevocationChecker
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
		metrics:     newMetrics(cfg.Registry),
	}
	g.tokens = newTokenCache(cfg.Control, cfg.TokenCacheTTL)
	g.revocations = cfg.Revocations
	g.anonAudit = newBucket(anonAuditRate, anonAuditBurst)
	g.auditMetrics = newAuditMetrics(cfg.Registry)
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.maxBody <= 0 {
		g.maxBody = manifest.MaxSize
	}
	if g.callTimeout <= 0 {
		g.callTimeout = 30 * time.Second
	}

	mux := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range g.routes() {
		mux.Handle(rt.method+" "+rt.path, g.instrument(rt.method+" "+rt.path, g.authorize(rt, checkPathNames(rt.path, rt.handler))))
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	// A known path with another method answers 405 with Allow; anything
	// else answers a JSON 404.
	for path, methods := range allowed {
		allow := strings.Join(methods, ", ")
		mux.Handle(path, g.instrument("method-not-allowed", func(w http.ResponseWriter, r *http.Request) (int, error) {
			w.Header().Set("Allow", allow)
			return 0, &httpError{code: http.StatusMethodNotAllowed, msg: fmt.Sprintf("method %s is not allowed on %s (allowed: %s)", r.Method, r.URL.Path, allow)}
		}))
	}
	mux.Handle("/", g.instrument("unmatched", func(_ http.ResponseWriter, r *http.Request) (int, error) {
		return 0, &httpError{code: http.StatusNotFound, msg: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path)}
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
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			fields = append(fields, strings.TrimSuffix(seg[1:len(seg)-1], "..."))
		}
	}
	if len(fields) == 0 {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) (int, error) {
		for _, f := range fields {
			if v := r.PathValue(f); model.NameProblem(v) != "" {
				return 0, fieldError(f, fmt.Sprintf("%q cannot name an object: %s", v, model.NameProblem(v)))
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
		{"GET", "/v1/cluster/summary", readers, g.summary},
		{"GET", "/v1/events", readers, g.listEvents},
		{"GET", "/openapi.json", nil, g.openAPI},
		{"GET", "/healthz", nil, g.healthz},
	}
	base = append(base, g.logRoutes()...)
	base = append(base, g.secretRoutes()...)
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
		auth := g.authenticate(r)
		note := &auditNote{}
		ctx := context.WithValue(context.WithValue(r.Context(), authKey{}, auth), auditNoteKey{}, note)
		user, method := "", ""
		if id := auth.id; id != nil {
			user, method = id.User, id.Method
			md := metadata.Pairs(MetadataUser, id.User)
			if id.Role != "" {
				md.Append(MetadataRole, string(id.Role))
			}
			ctx = metadata.NewOutgoingContext(ctx, md)
		}
		r = r.WithContext(ctx)
		code, err := h(sw, r)
		if err != nil {
			code = writeError(sw, err)
		} else if sw.code == 0 && code != 0 {
			sw.WriteHeader(code)
		}
		if sw.code != 0 {
			code = sw.code
		}
		if mutating(r.Method) {
			g.auditRequest(r.Context(), auditEvent(r, name, auth, code, err, note), auth.id == nil)
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

// writeJSON writes a protobuf message as lowerCamel protojson.
func writeJSON(w http.ResponseWriter, code int, m proto.Message) (int, error) {
	b, err := jsonOut.Marshal(m)
	if err != nil {
		return 0, fmt.Errorf("encoding response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
	return code, nil
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
			return nil, &httpError{code: http.StatusRequestEntityTooLarge,
				msg: fmt.Sprintf("%s is larger than the limit of %d bytes", what, tooBig.Limit)}
		}
		return nil, &httpError{code: http.StatusBadRequest, msg: fmt.Sprintf("reading request body: %v", err)}
	}
	if want != "" && len(bytes.TrimSpace(body)) == 0 {
		return nil, &httpError{code: http.StatusBadRequest, msg: "request body is empty: send " + want}
	}
	return body, nil
}

func (g *gateway) apply(w http.ResponseWriter, r *http.Request) (int, error) {
	body, err := readBody(w, r, g.maxBody, "manifest", "a workload manifest (YAML or JSON)")
	if err != nil {
		return 0, err
	}
	m, err := manifest.Parse(body)
	if err != nil {
		return 0, manifestError(err)
	}
	req := m.ToApplyRequest()
	noteWorkload(r, req.GetName())
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.ApplyWorkload(ctx, req)
	if err != nil {
		return 0, err
	}
	code := http.StatusOK
	if resp.GetResult() == "created" {
		code = http.StatusCreated
	}
	return writeJSON(w, code, resp)
}

// applyManifests applies every workload of a manifest stream in one
// ApplyWorkloads call. The stream is validated whole first, so an invalid
// document is a 400 and nothing is applied; once the call succeeds the
// answer is 200 and each item's failure is in its result.
func (g *gateway) applyManifests(w http.ResponseWriter, r *http.Request) (int, error) {
	body, err := readBody(w, r, manifest.MaxStreamSize, "manifest stream",
		"workload manifests (YAML documents separated by --- lines, or one JSON object)")
	if err != nil {
		return 0, err
	}
	ms, err := manifest.ParseAll(body)
	if err != nil {
		return 0, manifestError(err)
	}
	req := &persysv1.ApplyWorkloadsRequest{Items: make([]*persysv1.ApplyRequest, len(ms))}
	for i, m := range ms {
		req.Items[i] = m.ToApplyRequest()
	}
	noteWorkloads(r, len(ms))
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.ApplyWorkloads(ctx, req)
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (g *gateway) listWorkloads(w http.ResponseWriter, r *http.Request) (int, error) {
	sel, err := parseSelector(r.URL.Query().Get("selector"))
	if err != nil {
		return 0, err
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{LabelSelector: sel})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (g *gateway) getWorkload(w http.ResponseWriter, r *http.Request) (int, error) {
	events, err := parseBool(r.URL.Query(), "events")
	if err != nil {
		return 0, err
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	view, err := g.control.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: r.PathValue("name"), WithEvents: events})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, view)
}

func (g *gateway) deleteWorkload(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.DeleteWorkload(ctx, &persysv1.DeleteRequest{Name: r.PathValue("name")})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusAccepted, resp)
}

func (g *gateway) retry(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	view, err := g.control.RetryWorkload(ctx, &persysv1.RetryRequest{Name: r.PathValue("name")})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, view)
}

func (g *gateway) listNodes(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.ListNodes(ctx, &persysv1.ListNodesRequest{})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (g *gateway) getNode(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	node, err := g.control.GetNode(ctx, &persysv1.GetNodeRequest{Id: r.PathValue("id")})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, node)
}

func (g *gateway) cordon(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	node, err := g.control.CordonNode(ctx, &persysv1.CordonRequest{Id: r.PathValue("id")})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, node)
}

func (g *gateway) uncordon(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	node, err := g.control.UncordonNode(ctx, &persysv1.CordonRequest{Id: r.PathValue("id")})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, node)
}

// drain is a long call: the scheduler answers when every workload moved or
// the drain timeout passed, so the call is bounded by that timeout plus
// drainSlack instead of the usual call timeout. An incomplete drain is
// still 200; the body's complete and workloads say what did not move.
func (g *gateway) drain(w http.ResponseWriter, r *http.Request) (int, error) {
	timeout := defaultDrainTimeout
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := parseTimeout("timeout", s, maxDrainTimeout)
		if err != nil {
			return 0, err
		}
		timeout = d
	}
	// Whole seconds, rounded up, and the call's deadline from the same.
	secs := int64((timeout + time.Second - 1) / time.Second)
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(secs)*time.Second+drainSlack)
	defer cancel()
	resp, err := g.control.DrainNode(ctx, &persysv1.DrainRequest{Id: r.PathValue("id"), TimeoutSeconds: secs})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (g *gateway) leader(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	info, err := g.control.GetLeader(ctx, &persysv1.GetLeaderRequest{})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, info)
}

func (g *gateway) summary(w http.ResponseWriter, r *http.Request) (int, error) {
	ctx, cancel := g.callCtx(r)
	defer cancel()
	s, err := g.control.GetClusterSummary(ctx, &persysv1.ClusterSummaryRequest{})
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, s)
}

func (g *gateway) listEvents(w http.ResponseWriter, r *http.Request) (int, error) {
	q := r.URL.Query()
	req := &persysv1.ListEventsRequest{Workload: q.Get("workload"), Type: q.Get("type")}
	if len(req.Type) > 64 {
		return 0, fieldError("type", "longer than 64 characters")
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxEventsLimit {
			return 0, fieldError("limit", fmt.Sprintf("must be an integer from 1 to %d, got %q", maxEventsLimit, s))
		}
		req.Limit = int32(n)
	}
	ctx, cancel := g.callCtx(r)
	defer cancel()
	resp, err := g.control.ListEvents(ctx, req)
	if err != nil {
		return 0, err
	}
	return writeJSON(w, http.StatusOK, resp)
}

func (g *gateway) healthz(w http.ResponseWriter, _ *http.Request) (int, error) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok\n")
	return http.StatusOK, nil
}

func (g *gateway) openAPI(w http.ResponseWriter, _ *http.Request) (int, error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(openAPIDocument())
	return http.StatusOK, nil
}

// parseSelector reads "k=v,k2=v2" into a map.
func parseSelector(s string) (map[string]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	sel := map[string]string{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" {
			return nil, fieldError("selector", fmt.Sprintf("%q is not of the form key=value", part))
		}
		if old, dup := sel[k]; dup && old != v {
			return nil, fieldError("selector", fmt.Sprintf("key %q is given twice with different values", k))
		}
		sel[k] = v
	}
	return sel, nil
}

// parseTimeout reads a query duration: a Go duration (90s, 2m) or whole
// seconds, more than 0 and at most limit.
func parseTimeout(name, s string, limit time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(s)
	if err != nil {
		n, nerr := strconv.Atoi(s)
		if nerr != nil {
			return 0, fieldError(name, fmt.Sprintf("must be a duration such as 60s or 2m, got %q", s))
		}
		d = time.Duration(n) * time.Second
	}
	if d <= 0 || d > limit {
		return 0, fieldError(name, fmt.Sprintf("must be more than 0 and at most %s, got %s", limit, s))
	}
	return d, nil
}

func parseBool(q map[string][]string, name string) (bool, error) {
	vals := q[name]
	if len(vals) == 0 || vals[0] == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(vals[0])
	if err != nil {
		return false, fieldError(name, fmt.Sprintf("must be true or false, got %q", vals[0]))
	}
	return b, nil
}
