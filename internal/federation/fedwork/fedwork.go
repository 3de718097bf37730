// Package fedwork owns federated workloads: the apply, list, get and
// delete the federation API serves for them, and the loop that carries
// each decision to its member. A decision (member chosen, federation
// revision, reason) is stored before the member is called; member calls
// are by workload name and carry the federation revision as a label, so
// sending one again changes nothing. With offload, a member that reports
// that no node fits is recorded as a refusal of that revision, the next
// cluster of the placement is chosen, and the refused member's copy is
// deleted, so that at most one member holds the workload. With failover,
// a member not reached for longer than the placement's grace loses the
// workload to the next ready cluster, and the copy it may still run is
// deleted once it is reachable again.
package fedwork

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"
	"sigs.k8s.io/yaml"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedplace"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/member"
	"github.com/persys-dev/compute/internal/gateway/httperr"
	"github.com/persys-dev/compute/internal/manifest"
)

// maxConflicts bounds the retries of a read-modify-write that lost a race.
const maxConflicts = 5

// Config wires a Service.
type Config struct {
	Store *fedstore.Store
	// CallTimeout bounds one call to a member; 0 means 10 s.
	CallTimeout time.Duration
	Logger      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Service serves federated workloads. Safe for concurrent use; Reconcile
// must not run concurrently with itself.
type Service struct {
	cfg  Config
	pool *member.Pool
	// beforeRecordDelete, when set (tests), runs between the members'
	// deletes and the record's: where another writer's change lands.
	beforeRecordDelete func(name string)
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Service{cfg: cfg, pool: member.NewPool(Lookup(cfg.Store), cfg.Now)}
}

// Lookup finds members in the federation's store.
func Lookup(st *fedstore.Store) member.Lookup {
	return func(ctx context.Context, name string) (fedapi.JoinRequest, error) {
		m, err := st.GetMember(ctx, name)
		if err != nil {
			return fedapi.JoinRequest{}, err
		}
		return fedapi.JoinRequest{Name: m.Name, Gateway: m.Gateway, CA: m.CA, Cert: m.Cert, Key: m.Key}, nil
	}
}

// Close releases the member connections.
func (s *Service) Close() { s.pool.Close() }

// split takes the placement block out of a manifest and returns the rest
// as JSON, checked as a member would check it.
func split(body []byte) ([]byte, fedapi.Placement, string, error) {
	var p fedapi.Placement
	raw, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, p, "", httperr.New(http.StatusBadRequest, "manifest: "+err.Error())
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return nil, p, "", httperr.New(http.StatusBadRequest, "manifest: not an object")
	}
	pl, ok := doc["placement"]
	if !ok {
		return nil, p, "", httperr.Field("placement", "required: a federated workload names the member clusters that may run it (placement: {clusters: [a, b]})")
	}
	dec := json.NewDecoder(bytes.NewReader(pl))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, p, "", httperr.Field("placement", err.Error())
	}
	delete(doc, "placement")
	rest, err := json.Marshal(doc)
	if err != nil {
		return nil, p, "", err
	}
	m, err := manifest.Parse(rest)
	if err != nil {
		return nil, p, "", httperr.FromManifest(err)
	}
	return rest, p, m.Metadata.Name, nil
}

// Apply stores a federated workload and its placement decision, then
// sends it to the chosen member. A member that cannot be reached leaves
// the decision stored; the loop sends it later.
func (s *Service) Apply(ctx context.Context, body []byte) (*persysv1.ApplyResponse, error) {
	mjson, pl, name, err := split(body)
	if err != nil {
		return nil, err
	}
	members, err := Members(ctx, s.cfg.Store)
	if err != nil {
		return nil, err
	}
	if err := fedplace.ValidateWorkload(pl, members); err != nil {
		return nil, err
	}
	var (
		w      fedstore.Workload
		result string
	)
	for attempt := 0; ; attempt++ {
		w, result, err = s.decide(ctx, name, mjson, pl, members)
		if !errors.Is(err, fedstore.ErrConflict) || attempt == maxConflicts {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	view, err := s.send(ctx, w)
	if err != nil {
		s.cfg.Logger.Warn("member did not take the workload yet; the loop sends it again", "workload", name, "cluster", w.Decision.Cluster, "err", err)
		view = placeholder(w, "stored for cluster "+w.Decision.Cluster+"; not sent yet: "+err.Error())
	}
	return &persysv1.ApplyResponse{Workload: view, Result: result}, nil
}

// decide reads the stored workload, makes the new revision and decision,
// and stores them (compare-and-swap on the key).
func (s *Service) decide(ctx context.Context, name string, mjson []byte, pl fedapi.Placement, members fedplace.Members) (fedstore.Workload, string, error) {
	cur, rev, err := s.cfg.Store.GetWorkload(ctx, name)
	exists := err == nil
	if err != nil && !errors.Is(err, fedstore.ErrNotFound) {
		return cur, "", err
	}
	if cur.Deleting {
		return cur, "", httperr.New(http.StatusConflict, "workload "+name+" is being deleted; apply it again once it is gone")
	}
	if exists && bytes.Equal(cur.Manifest, mjson) && reflect.DeepEqual(cur.Placement, pl) {
		return cur, "unchanged", nil
	}
	result := "created"
	if exists {
		result = "updated"
	}
	w := cur
	w.Name, w.Manifest, w.Placement = name, mjson, pl
	w.Revision++
	healths, err := s.cfg.Store.Healths(ctx)
	if err != nil {
		return w, "", err
	}
	now := s.cfg.Now()
	resolved := fedplace.Resolve(pl, members)
	if exists && slices.Contains(resolved.Clusters, cur.Decision.Cluster) && healths[cur.Decision.Cluster].State == fedapi.StateReady {
		// An update stays where the workload runs.
		s.setDecision(&w, fedapi.Decision{Cluster: cur.Decision.Cluster, Revision: w.Revision, Reason: "update stays on " + cur.Decision.Cluster, At: now})
	} else {
		c, reason, ok := fedplace.Choose(resolved, w.Revision, healths, w.Refusals)
		if !ok {
			return w, "", httperr.New(http.StatusServiceUnavailable, "workload "+name+": "+reason)
		}
		s.setDecision(&w, fedapi.Decision{Cluster: c, Revision: w.Revision, Reason: reason, At: now})
	}
	if _, err := s.cfg.Store.PutWorkload(ctx, w, rev); err != nil {
		return w, "", err
	}
	s.event(ctx, fedapi.EventPlaced, w, "placed on "+w.Decision.Cluster+" at federation revision "+strconv.FormatInt(w.Revision, 10)+": "+w.Decision.Reason)
	return w, result, nil
}

// Members reads the member clusters as placement sees them.
func Members(ctx context.Context, st *fedstore.Store) (fedplace.Members, error) {
	list, err := st.ListMembers(ctx)
	if err != nil {
		return nil, err
	}
	out := make(fedplace.Members, len(list))
	for _, m := range list {
		out[m.Name] = m.Labels
	}
	return out, nil
}

// setDecision records d, noting a member left behind as stale.
func (s *Service) setDecision(w *fedstore.Workload, d fedapi.Decision) {
	if old := w.Sent.Cluster; old != "" && old != d.Cluster && !slices.Contains(w.Stale, old) {
		w.Stale = append(w.Stale, old)
	}
	// A member chosen again holds the live copy, not a stale one.
	w.Stale = slices.DeleteFunc(w.Stale, func(c string) bool { return c == d.Cluster })
	w.Decision = d
	w.History = append(w.History, d)
}

// memberManifest is the manifest sent to the chosen member: the user's,
// labelled with the member and the federation revision.
func memberManifest(w fedstore.Workload) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(w.Manifest, &doc); err != nil {
		return nil, err
	}
	meta, _ := doc["metadata"].(map[string]any)
	if meta == nil {
		meta = map[string]any{}
		doc["metadata"] = meta
	}
	labels, _ := meta["labels"].(map[string]any)
	if labels == nil {
		labels = map[string]any{}
		meta["labels"] = labels
	}
	labels[fedapi.LabelCluster] = w.Decision.Cluster
	labels[fedapi.LabelRevision] = strconv.FormatInt(w.Decision.Revision, 10)
	return json.Marshal(doc)
}

func (s *Service) memberClient(ctx context.Context, name string) (*client.Client, error) {
	return s.pool.Client(ctx, name)
}

// send applies the decided revision at its member and records that the
// member has it.
func (s *Service) send(ctx context.Context, w fedstore.Workload) (*persysv1.WorkloadView, error) {
	body, err := memberManifest(w)
	if err != nil {
		return nil, err
	}
	c, err := s.memberClient(ctx, w.Decision.Cluster)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	resp, err := c.Apply(cctx, body)
	if err != nil {
		return nil, err
	}
	err = s.update(ctx, w.Name, func(cur *fedstore.Workload) bool {
		if !cur.Decision.Same(w.Decision) || cur.Sent.Same(w.Decision) {
			return false // decided again meanwhile, or recorded
		}
		cur.Sent = w.Decision
		return true
	})
	return resp.GetWorkload(), err
}

// update applies change to the stored workload until it commits; change
// returns false to write nothing.
func (s *Service) update(ctx context.Context, name string, change func(*fedstore.Workload) bool) error {
	for attempt := 0; ; attempt++ {
		cur, rev, err := s.cfg.Store.GetWorkload(ctx, name)
		if err != nil {
			return err
		}
		if !change(&cur) {
			return nil
		}
		_, err = s.cfg.Store.PutWorkload(ctx, cur, rev)
		if !errors.Is(err, fedstore.ErrConflict) || attempt == maxConflicts {
			return err
		}
	}
}

func (s *Service) event(ctx context.Context, typ string, w fedstore.Workload, msg string) {
	e := fedapi.Event{Time: s.cfg.Now(), Type: typ, Cluster: w.Decision.Cluster, Workload: w.Name, Message: msg}
	if err := s.cfg.Store.AddEvent(ctx, e); err != nil {
		s.cfg.Logger.Warn("event not written", "workload", w.Name, "type", typ, "err", err)
	}
	s.cfg.Logger.Info(msg, "workload", w.Name, "cluster", w.Decision.Cluster, "revision", w.Revision, "event", typ)
}

// placeholder is the view of a workload its member did not show.
func placeholder(w fedstore.Workload, why string) *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{Name: w.Name, Labels: map[string]string{
			fedapi.LabelCluster: w.Decision.Cluster, fedapi.LabelRevision: strconv.FormatInt(w.Decision.Revision, 10)}},
		Status: &persysv1.WorkloadStatus{Name: w.Name, State: persysv1.ActualState_ACTUAL_STATE_UNKNOWN, Message: why},
	}
}

// view returns the member's view of w, labelled with its member; with
// history, the federation's decisions come first among its events.
func (s *Service) view(ctx context.Context, w fedstore.Workload, history bool) *persysv1.WorkloadView {
	v, err := s.memberView(ctx, w.Decision.Cluster, w.Name, history)
	if err != nil {
		v = placeholder(w, "cluster "+w.Decision.Cluster+": "+err.Error())
	}
	if v.GetWorkload() == nil {
		v.Workload = &persysv1.Workload{Name: w.Name}
	}
	if v.Workload.Labels == nil {
		v.Workload.Labels = map[string]string{}
	}
	v.Workload.Labels[fedapi.LabelCluster] = w.Decision.Cluster
	if history {
		var evs []*persysv1.Event
		for _, d := range w.History {
			evs = append(evs, &persysv1.Event{Time: timestamppb.New(d.At), Type: "FederationPlaced", Workload: w.Name,
				Message: "cluster " + d.Cluster + " (federation revision " + strconv.FormatInt(d.Revision, 10) + "): " + d.Reason})
		}
		v.Events = append(evs, v.Events...)
	}
	return v
}

func (s *Service) memberView(ctx context.Context, cluster, name string, events bool) (*persysv1.WorkloadView, error) {
	c, err := s.memberClient(ctx, cluster)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	return c.GetWorkload(cctx, name, events)
}

// List returns every federated workload as its member shows it.
func (s *Service) List(ctx context.Context) (*persysv1.ListWorkloadsResponse, error) {
	ws, _, err := s.cfg.Store.ListWorkloads(ctx)
	if err != nil {
		return nil, err
	}
	out := &persysv1.ListWorkloadsResponse{}
	for _, w := range ws {
		out.Workloads = append(out.Workloads, s.view(ctx, w, false))
	}
	return out, nil
}

// Get returns one federated workload with its member's view and the
// federation's decisions among its events when events is true.
func (s *Service) Get(ctx context.Context, name string, events bool) (*persysv1.WorkloadView, error) {
	w, _, err := s.cfg.Store.GetWorkload(ctx, name)
	if err != nil {
		return nil, notFound(err)
	}
	return s.view(ctx, w, events), nil
}

// Delete marks the workload deleted, deletes it at every member that may
// hold it, and then forgets it; a member that cannot be reached is left
// to the loop.
func (s *Service) Delete(ctx context.Context, name string) error {
	if _, _, err := s.cfg.Store.GetWorkload(ctx, name); err != nil {
		return notFound(err)
	}
	if err := s.update(ctx, name, func(w *fedstore.Workload) bool {
		if w.Deleting {
			return false
		}
		w.Deleting = true
		return true
	}); err != nil {
		return err
	}
	// The reconcile loop may write the record meanwhile (a send, an
	// offload) or finish the delete itself: read again and retry, and a
	// record already gone is deleted.
	for attempt := 0; ; attempt++ {
		w, rev, err := s.cfg.Store.GetWorkload(ctx, name)
		if errors.Is(err, fedstore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		err = s.finishDelete(ctx, w, rev)
		if !errors.Is(err, fedstore.ErrConflict) || attempt == maxConflicts {
			return err
		}
	}
}

func (s *Service) finishDelete(ctx context.Context, w fedstore.Workload, rev int64) error {
	for _, c := range holders(w) {
		if err := s.deleteAt(ctx, c, w.Name); err != nil {
			return fmt.Errorf("workload %s marked deleted; cluster %s did not delete it yet (the federation retries): %w", w.Name, c, err)
		}
	}
	if s.beforeRecordDelete != nil {
		s.beforeRecordDelete(w.Name)
	}
	return s.cfg.Store.DeleteWorkload(ctx, w.Name, rev)
}

// holders lists the members that may hold a copy of w.
func holders(w fedstore.Workload) []string {
	out := slices.Clone(w.Stale)
	for _, c := range []string{w.Sent.Cluster, w.Decision.Cluster} {
		if c != "" && !slices.Contains(out, c) {
			out = append(out, c)
		}
	}
	return out
}

func (s *Service) deleteAt(ctx context.Context, cluster, name string) error {
	c, err := s.memberClient(ctx, cluster)
	if errors.Is(err, fedstore.ErrNotFound) {
		return nil // the member left the federation
	}
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.CallTimeout)
	defer cancel()
	if err := c.DeleteWorkload(cctx, name); err != nil && !client.IsNotFound(err) {
		return err
	}
	return nil
}

func notFound(err error) error {
	if errors.Is(err, fedstore.ErrNotFound) {
		return &httperr.Error{Code: http.StatusNotFound, Message: err.Error(),
			Fields: []httperr.FieldError{{Field: "name", Reason: "no federated workload of this name"}}}
	}
	return err
}
