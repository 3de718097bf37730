// Package api owns the federation's HTTPS API, on the gateway's shape:
// JSON bodies, the gateway's error body naming the invalid fields
// (httperr), and roles taken from the caller's client certificate of the
// federation CA (viewer reads; admin joins and removes members). Routes:
//
//	GET    /v1/clusters         members with their health
//	POST   /v1/clusters         join a member (fedapi.JoinRequest)
//	GET    /v1/clusters/{name}  one member
//	DELETE /v1/clusters/{name}  remove a member (nothing changes at the member)
//	POST   /v1/clusters/{name}/labels  set and remove a member's labels (fedapi.LabelsRequest)
//	GET    /v1/events           the federation's events and the members' relayed ones (?cluster=NAME&workload=NAME&limit=N);
//	                            with follow=true (and since, since_index to resume) a stream of new ones;
//	                            the body also decodes as the gateway's event list
//	POST   /v1/workloads        apply a federated workload (a manifest with a placement block)
//	GET    /v1/workloads        federated workloads as their members show them
//	GET    /v1/workloads/{name} one, with the federation's decisions among its events
//	DELETE /v1/workloads/{name} delete it at every member that may hold it
//	POST   /v1/services         apply a federated service (replicas divided among members)
//	GET    /v1/services         federated services, progress added up over members
//	GET    /v1/services/{name}  one, with the divisions and the members' events
//	DELETE /v1/services/{name}  delete it at every member that holds it
//	GET    /v1/nodes            every member's nodes, each labelled with its cluster
//	GET    /v1/nodes/{id}       one node, by CLUSTER/NODE or by an id no two members share
//	GET    /v1/leader           the leading replica (the gateway's LeaderInfo)
//	GET    /v1/services/{name}/history  the rollout revisions of the member with the largest share
//	POST   /v1/services/{name}/scale    {"replicas": N}: the federated service's replicas, divided again
//	POST   /v1/services/{name}/undo     {"toRevision": N}: back at the largest share's member, then everywhere
//	POST   /v1/services/{name}/pause, /resume  spec.update.paused of the federated service
//	POST   /v1/services/{name}/promote  forwarded to every member with a share
//
// Workload answers are the gateway's protobuf JSON, so persysctl reads
// them unchanged; each view carries the fedapi.LabelCluster label.
//
// Of several replicas on one etcd, only the leader changes anything; a
// follower answers reads and refuses changes with 503 naming the leader.
//
// A join is checked in full before anything is stored: the fields, then
// one probe of the member's gateway with the identity it issued.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"

	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fednodes"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/fedsvc"
	"github.com/persys-dev/compute/internal/federation/fedwork"
	"github.com/persys-dev/compute/internal/federation/health"
	"github.com/persys-dev/compute/internal/federation/member"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/pki"
)

// maxBody bounds a request body (a join carries three PEM texts).
const maxBody = 1 << 20

// checkTimeout bounds the probe a join makes.
const checkTimeout = 10 * time.Second

// Config wires the API.
type Config struct {
	Store *fedstore.Store
	// Workloads serves the workload routes; nil leaves them out.
	Workloads *fedwork.Service
	// Services serves the service routes; nil leaves them out.
	Services *fedsvc.Controller
	// Nodes serves GET /v1/nodes; nil leaves it out.
	Nodes    *fednodes.Lister
	Grace    time.Duration
	Logger   *slog.Logger
	Registry prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Leader, when set, says whether this replica leads; a follower
	// answers reads and refuses changes with 503, naming the leader.
	// Nil means this process is the only replica.
	Leader Leadership
	// Self is this replica's API URL, as GET /v1/leader names it.
	Self string
}

// Leadership is what the API needs of the election.
type Leadership interface {
	Leading() bool
	// Leader is the leader's URL; "" while none is known.
	Leader() string
}

type api struct {
	cfg      Config
	requests *prometheus.CounterVec
}

// New returns the API's handler. Serve it over TLS that requires and
// verifies client certificates of the federation CA.
func New(cfg Config) http.Handler {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	a := &api{cfg: cfg, requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "persys", Subsystem: "federation", Name: "requests_total",
		Help: "HTTP requests answered by the federation API, by route and status code.",
	}, []string{"route", "code"})}
	if cfg.Registry != nil {
		cfg.Registry.MustRegister(a.requests)
	}
	mux := http.NewServeMux()
	a.route(mux, "GET /v1/clusters", pki.RoleViewer, a.listClusters)
	a.route(mux, "POST /v1/clusters", pki.RoleAdmin, a.join)
	a.route(mux, "GET /v1/clusters/{name}", pki.RoleViewer, a.getCluster)
	a.route(mux, "DELETE /v1/clusters/{name}", pki.RoleAdmin, a.leave)
	a.route(mux, "POST /v1/clusters/{name}/labels", pki.RoleAdmin, a.label)
	a.route(mux, "GET /v1/events", pki.RoleViewer, a.events)
	a.route(mux, "GET /v1/leader", pki.RoleViewer, a.leader)
	if cfg.Workloads != nil {
		a.route(mux, "POST /v1/workloads", pki.RoleOperator, a.applyWorkload)
		a.route(mux, "GET /v1/workloads", pki.RoleViewer, a.listWorkloads)
		a.route(mux, "GET /v1/workloads/{name}", pki.RoleViewer, a.getWorkload)
		a.route(mux, "DELETE /v1/workloads/{name}", pki.RoleOperator, a.deleteWorkload)
		a.route(mux, "POST /v1/manifests", pki.RoleOperator, func(http.ResponseWriter, *http.Request) (any, int, error) {
			return nil, 0, httperr.New(http.StatusBadRequest, "the federation applies one workload per manifest: apply each document on its own")
		})
	}
	if cfg.Services != nil {
		a.route(mux, "POST /v1/services", pki.RoleOperator, a.applyService)
		a.route(mux, "GET /v1/services", pki.RoleViewer, a.listServices)
		a.route(mux, "GET /v1/services/{name}", pki.RoleViewer, a.getService)
		a.route(mux, "DELETE /v1/services/{name}", pki.RoleOperator, a.deleteService)
		a.route(mux, "GET /v1/services/{name}/history", pki.RoleViewer, a.serviceHistory)
		a.route(mux, "POST /v1/services/{name}/scale", pki.RoleOperator, a.scaleService)
		a.route(mux, "POST /v1/services/{name}/undo", pki.RoleOperator, a.undoService)
		a.route(mux, "POST /v1/services/{name}/pause", pki.RoleOperator, a.pauseService(true))
		a.route(mux, "POST /v1/services/{name}/resume", pki.RoleOperator, a.pauseService(false))
		a.route(mux, "POST /v1/services/{name}/promote", pki.RoleOperator, a.promoteService)
	}
	if cfg.Nodes != nil {
		a.route(mux, "GET /v1/nodes", pki.RoleViewer, a.listNodes)
		a.route(mux, "GET /v1/nodes/{id...}", pki.RoleViewer, a.getNode)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.requests.WithLabelValues("unknown", strconv.Itoa(httperr.Write(w, httperr.New(http.StatusNotFound, "no route "+r.Method+" "+r.URL.Path)))).Inc()
	})
	return mux
}

type handler func(w http.ResponseWriter, r *http.Request) (any, int, error)

// route registers h behind the role check; h returns the body and code
// of a success or an error written once here.
func (a *api) route(mux *http.ServeMux, pattern string, need pki.Role, h handler) {
	mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		code := 0
		defer func() {
			a.requests.WithLabelValues(pattern, strconv.Itoa(code)).Inc()
			if r.Method != http.MethodGet {
				// One line per change, naming who asked.
				id, _ := pki.PeerIdentity(r.TLS)
				a.cfg.Logger.Info("request", "route", pattern, "path", r.URL.Path, "status", code, "user", id.CommonName, "role", id.Role)
			}
		}()
		if err := authorize(r, need); err != nil {
			code = httperr.Write(w, err)
			return
		}
		if err := a.mayChange(r); err != nil {
			code = httperr.Write(w, err)
			return
		}
		body, c, err := h(w, r)
		if err != nil {
			code = httperr.Write(w, err)
			return
		}
		if st, ok := body.(streamed); ok {
			code = int(st)
			return
		}
		data, err := encode(body)
		if err != nil {
			code = httperr.Write(w, err)
			return
		}
		code = c
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_, _ = w.Write(data)
	})
}

// mayChange refuses a change on a follower, naming the leader: the decisions
// are the leader's, so that one replica at a time places and sends.
func (a *api) mayChange(r *http.Request) error {
	if r.Method == http.MethodGet || a.cfg.Leader == nil || a.cfg.Leader.Leading() {
		return nil
	}
	leader := a.cfg.Leader.Leader()
	if leader == "" {
		return httperr.New(http.StatusServiceUnavailable, "this federation replica is not the leader and no leader is known yet; try again shortly")
	}
	return httperr.New(http.StatusServiceUnavailable, "this federation replica is not the leader; send changes to the leader at "+leader)
}

// leader answers the gateway's LeaderInfo shape, so that persysctl
// leader works against the federation.
func (a *api) leader(_ http.ResponseWriter, _ *http.Request) (any, int, error) {
	info := &persysv1.LeaderInfo{Address: a.cfg.Self, Id: a.cfg.Self, IsLeader: true}
	if a.cfg.Leader != nil {
		info.Address, info.IsLeader = a.cfg.Leader.Leader(), a.cfg.Leader.Leading()
		info.Id = info.Address
	}
	return info, http.StatusOK, nil
}

// rank orders the user roles: a higher role may do what a lower may.
var rank = map[pki.Role]int{pki.RoleViewer: 1, pki.RoleOperator: 2, pki.RoleAdmin: 3}

func authorize(r *http.Request, need pki.Role) error {
	id, err := pki.PeerIdentity(r.TLS)
	if err != nil {
		return httperr.New(http.StatusUnauthorized, "authentication required: present a client certificate of the federation CA")
	}
	if rank[id.Role] < rank[need] {
		return httperr.New(http.StatusForbidden, fmt.Sprintf("%s %q may not %s %s: needs role %s", id.Role, id.CommonName, r.Method, r.URL.Path, need))
	}
	return nil
}

func (a *api) listClusters(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	members, err := a.cfg.Store.ListMembers(r.Context())
	if err != nil {
		return nil, 0, err
	}
	healths, err := a.cfg.Store.Healths(r.Context())
	if err != nil {
		return nil, 0, err
	}
	out := fedapi.ClusterList{Clusters: make([]fedapi.Cluster, 0, len(members))}
	for _, m := range members {
		out.Clusters = append(out.Clusters, view(m, healths))
	}
	return out, http.StatusOK, nil
}

func (a *api) getCluster(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	m, err := a.cfg.Store.GetMember(r.Context(), r.PathValue("name"))
	if err != nil {
		return nil, 0, storeErr(err)
	}
	healths, err := a.cfg.Store.Healths(r.Context())
	if err != nil {
		return nil, 0, err
	}
	return view(m, healths), http.StatusOK, nil
}

// view is a member as the API shows it, without its private key.
func view(m fedstore.Member, healths map[string]fedapi.Health) fedapi.Cluster {
	c := fedapi.Cluster{Name: m.Name, Gateway: m.Gateway, JoinedAt: m.JoinedAt, Labels: m.Labels, Health: health.Initial(m.JoinedAt)}
	if h, ok := healths[m.Name]; ok {
		c.Health = h
	}
	if leaf, err := pki.ParseCertPEM([]byte(m.Cert)); err == nil {
		c.IdentityExpires = leaf.NotAfter
		if id, err := pki.IdentityFromCert(leaf); err == nil {
			c.Identity = id.CommonName + " (" + string(id.Role) + ")"
		}
	}
	return c
}

func (a *api) join(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	var req fedapi.JoinRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, 0, httperr.New(http.StatusBadRequest, "invalid join request body: "+err.Error())
	}
	now := a.cfg.Now()
	id, err := member.Parse(req, now)
	if err != nil {
		return nil, 0, err
	}
	ctx := r.Context()
	if _, err := a.cfg.Store.GetMember(ctx, req.Name); err == nil {
		return nil, 0, duplicate(req.Name)
	} else if !errors.Is(err, fedstore.ErrNotFound) {
		return nil, 0, err
	}
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	sum, err := member.Check(cctx, id)
	if err != nil {
		a.cfg.Logger.Info("join refused", "cluster", req.Name, "gateway", req.Gateway, "err", err)
		return nil, 0, err
	}
	m := fedstore.Member{Name: req.Name, Gateway: id.Gateway, CA: req.CA, Cert: req.Cert, Key: req.Key, JoinedAt: now, Labels: req.Labels}
	if err := a.cfg.Store.CreateMember(ctx, m); err != nil {
		if errors.Is(err, fedstore.ErrExists) {
			return nil, 0, duplicate(req.Name)
		}
		return nil, 0, err
	}
	h, _ := health.Step(health.Initial(now), health.Probe{At: a.cfg.Now(), Summary: sum}, now, a.cfg.Grace)
	if err := a.cfg.Store.PutHealth(ctx, m.Name, h); err != nil {
		return nil, 0, err
	}
	msg := fmt.Sprintf("cluster %s joined at %s as %s (%s)", m.Name, m.Gateway, id.Identity.CommonName, id.Identity.Role)
	if err := a.cfg.Store.AddEvent(ctx, fedapi.Event{Time: now, Type: fedapi.EventJoined, Cluster: m.Name, Message: msg}); err != nil {
		a.cfg.Logger.Warn("join event not written", "cluster", m.Name, "err", err)
	}
	a.cfg.Logger.Info("cluster joined", "cluster", m.Name, "gateway", m.Gateway, "identity", id.Identity.CommonName)
	return view(m, map[string]fedapi.Health{m.Name: h}), http.StatusCreated, nil
}

func duplicate(name string) error {
	return &httperr.Error{Code: http.StatusConflict, Message: "cluster " + name + " is already a member",
		Fields: []httperr.FieldError{{Field: "name", Reason: fmt.Sprintf("%q is already a member: remove it first or pick another name", name)}}}
}

func (a *api) label(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	var req fedapi.LabelsRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, 0, httperr.New(http.StatusBadRequest, "invalid labels request body: "+err.Error())
	}
	if err := member.ValidateLabels("set", req.Set); err != nil {
		return nil, 0, err
	}
	for i, k := range req.Remove {
		if strings.TrimSpace(k) == "" {
			return nil, 0, httperr.Field(fmt.Sprintf("remove[%d]", i), "empty label key")
		}
	}
	name := r.PathValue("name")
	m, err := a.cfg.Store.UpdateMemberLabels(r.Context(), name, req.Set, req.Remove)
	if err != nil {
		return nil, 0, storeErr(err)
	}
	healths, err := a.cfg.Store.Healths(r.Context())
	if err != nil {
		return nil, 0, err
	}
	a.cfg.Logger.Info("cluster labels changed", "cluster", name, "labels", m.Labels)
	return view(m, healths), http.StatusOK, nil
}

func (a *api) leave(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	name := r.PathValue("name")
	if err := a.holding(r.Context(), name); err != nil {
		return nil, 0, err
	}
	if err := a.cfg.Store.DeleteMember(r.Context(), name); err != nil {
		return nil, 0, storeErr(err)
	}
	if err := a.cfg.Store.AddEvent(r.Context(), fedapi.Event{Time: a.cfg.Now(), Type: fedapi.EventLeft, Cluster: name, Message: "cluster " + name + " removed from the federation"}); err != nil {
		a.cfg.Logger.Warn("leave event not written", "cluster", name, "err", err)
	}
	a.cfg.Logger.Info("cluster removed", "cluster", name)
	return struct{}{}, http.StatusOK, nil
}

// holding refuses to remove a member that federated workloads are placed
// on or may still have a copy on: the federation could no longer reach
// them there.
func (a *api) holding(ctx context.Context, name string) error {
	ws, _, err := a.cfg.Store.ListWorkloads(ctx)
	if err != nil {
		return err
	}
	var held []string
	for _, w := range ws {
		if w.Decision.Cluster == name || slices.Contains(w.Stale, name) {
			held = append(held, w.Name)
		}
	}
	svcs, _, err := a.cfg.Store.ListServices(ctx)
	if err != nil {
		return err
	}
	for _, v := range svcs {
		if fedsvc.Holds(v, name) {
			held = append(held, "service "+v.Name)
		}
	}
	if len(held) == 0 {
		return nil
	}
	return &httperr.Error{Code: http.StatusConflict, Message: "cluster " + name + " holds federated workloads",
		Fields: []httperr.FieldError{{Field: "name", Reason: fmt.Sprintf("federated workloads are placed on %s or have a copy there: %s; delete them first", name, strings.Join(held, ", "))}}}
}

func (a *api) events(w http.ResponseWriter, r *http.Request) (any, int, error) {
	q := r.URL.Query()
	if q.Get("follow") == "true" {
		return a.followEvents(w, r)
	}
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return nil, 0, httperr.Field("limit", fmt.Sprintf("%q must be a whole number >= 0", s))
		}
		limit = n
	}
	// workload is persysctl's filter (events --workload); it also picks a
	// federated service's events by name.
	evs, err := a.cfg.Store.FindEvents(r.Context(), fedstore.EventFilter{Cluster: q.Get("cluster"), Object: q.Get("workload")}, limit)
	if err != nil {
		return nil, 0, err
	}
	return fedapi.EventList{Events: evs}, http.StatusOK, nil
}

func storeErr(err error) error {
	if errors.Is(err, fedstore.ErrNotFound) {
		return &httperr.Error{Code: http.StatusNotFound, Message: err.Error(),
			Fields: []httperr.FieldError{{Field: "name", Reason: "no member cluster of this name"}}}
	}
	return err
}

// encode writes protobuf answers as the gateway does (persysctl decodes
// them with the same rules) and the federation's own types as JSON.
func encode(body any) ([]byte, error) {
	if m, ok := body.(proto.Message); ok {
		b, err := contract.MarshalJSON(protojson.MarshalOptions{}, m)
		return append(b, '\n'), err
	}
	b, err := json.Marshal(body)
	return append(b, '\n'), err
}

func (a *api) applyWorkload(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, 0, httperr.New(http.StatusBadRequest, "reading the manifest: "+err.Error())
	}
	if len(body) > maxBody {
		return nil, 0, httperr.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("manifest larger than %d bytes", maxBody))
	}
	resp, err := a.cfg.Workloads.Apply(r.Context(), body)
	if err != nil {
		return nil, 0, err
	}
	code := http.StatusOK
	if resp.GetResult() == "created" {
		code = http.StatusCreated
	}
	return resp, code, nil
}

func (a *api) listWorkloads(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	sel, err := parseSelector(r.URL.Query().Get("selector"))
	if err != nil {
		return nil, 0, err
	}
	out, err := a.cfg.Workloads.List(r.Context())
	if err != nil || len(sel) == 0 {
		return out, http.StatusOK, err
	}
	out.Workloads = slices.DeleteFunc(out.Workloads, func(v *persysv1.WorkloadView) bool {
		for k, want := range sel {
			if got, ok := v.GetWorkload().GetLabels()[k]; !ok || got != want {
				return true
			}
		}
		return false
	})
	return out, http.StatusOK, nil
}

// parseSelector reads the gateway's label selector: key=value[,key=value].
func parseSelector(raw string) (map[string]string, error) {
	if raw == "" {
		return nil, nil
	}
	sel := map[string]string{}
	for _, part := range strings.Split(raw, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, httperr.Field("selector", fmt.Sprintf("%q is not key=value", part))
		}
		sel[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return sel, nil
}

func (a *api) getWorkload(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	out, err := a.cfg.Workloads.Get(r.Context(), r.PathValue("name"), r.URL.Query().Get("events") == "true")
	return out, http.StatusOK, err
}

func (a *api) deleteWorkload(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	if err := a.cfg.Workloads.Delete(r.Context(), r.PathValue("name")); err != nil {
		return nil, 0, err
	}
	return &persysv1.DeleteResponse{}, http.StatusOK, nil
}

func (a *api) applyService(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, 0, httperr.New(http.StatusBadRequest, "reading the manifest: "+err.Error())
	}
	if len(body) > maxBody {
		return nil, 0, httperr.New(http.StatusRequestEntityTooLarge, fmt.Sprintf("manifest larger than %d bytes", maxBody))
	}
	resp, err := a.cfg.Services.Apply(r.Context(), body)
	if err != nil {
		return nil, 0, err
	}
	code := http.StatusOK
	if resp.GetResult() == "created" {
		code = http.StatusCreated
	}
	return resp, code, nil
}

func (a *api) listServices(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	out, err := a.cfg.Services.List(r.Context())
	return out, http.StatusOK, err
}

func (a *api) getService(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	out, err := a.cfg.Services.Get(r.Context(), r.PathValue("name"), r.URL.Query().Get("events") == "true")
	return out, http.StatusOK, err
}

func (a *api) deleteService(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	if err := a.cfg.Services.Delete(r.Context(), r.PathValue("name")); err != nil {
		return nil, 0, err
	}
	return &persysv1.DeleteServiceResponse{}, http.StatusAccepted, nil
}

func (a *api) serviceHistory(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	out, err := a.cfg.Services.History(r.Context(), r.PathValue("name"))
	return out, http.StatusOK, err
}

func (a *api) getNode(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	n, err := a.cfg.Nodes.Get(r.Context(), r.PathValue("id"))
	switch {
	case errors.Is(err, fednodes.ErrNotFound), errors.Is(err, fedstore.ErrNotFound):
		return nil, 0, &httperr.Error{Code: http.StatusNotFound, Message: err.Error(), Fields: []httperr.FieldError{{Field: "id", Reason: err.Error()}}}
	case errors.Is(err, fednodes.ErrAmbiguous):
		return nil, 0, &httperr.Error{Code: http.StatusConflict, Message: err.Error(), Fields: []httperr.FieldError{{Field: "id", Reason: err.Error()}}}
	case err != nil:
		return nil, 0, httperr.New(http.StatusServiceUnavailable, err.Error())
	}
	return n, http.StatusOK, nil
}

func (a *api) listNodes(_ http.ResponseWriter, r *http.Request) (any, int, error) {
	nodes, missed, err := a.cfg.Nodes.List(r.Context())
	if err != nil {
		return nil, 0, err
	}
	for _, m := range missed {
		a.cfg.Logger.Info("member nodes not listed", "err", m)
	}
	return &persysv1.ListNodesResponse{Nodes: nodes}, http.StatusOK, nil
}
