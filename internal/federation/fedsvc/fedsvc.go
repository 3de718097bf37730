// Package fedsvc owns federated services: the apply, list, get and
// delete the federation API serves for them, and the loop that keeps
// each member's share. A federated service's replicas are divided among
// the clusters of its placement (fedplace.Spread); each member with a
// share receives an ordinary service with that many replicas, so that
// the member's own service controller runs its rollouts and health. The
// division is stored (compare-and-swap) before any member is called; a
// member call is by service name and carries the federation revision as
// a label, so sending a share again changes nothing. With failover, a
// member past the grace loses its share to the others; once it is Ready
// again its share comes back and the others shrink to theirs. With
// offload, the replicas a member's placement leaves pending because no
// node fits them go to the next members, and the member keeps what fits
// (a cap, for that revision).
package fedsvc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// maxHistory bounds the divisions kept per service.
const maxHistory = 50

// Config wires a Controller.
type Config struct {
	Store *fedstore.Store
	// Lookup finds a member's gateway and identity.
	Lookup member.Lookup
	// CallTimeout bounds one call to a member; 0 means 10 s.
	CallTimeout time.Duration
	Logger      *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Registry receives the metrics; nil keeps them unregistered.
	Registry prometheus.Registerer
}

// Controller serves federated services. Safe for concurrent use;
// Reconcile must not run concurrently with itself.
type Controller struct {
	cfg     Config
	pool    *member.Pool
	metrics *metrics
	// beforeRecordDelete, when set (tests), runs between the members'
	// deletes and the record's: where another writer's change lands.
	beforeRecordDelete func(name string)
}

// New returns a Controller.
func New(cfg Config) *Controller {
	if cfg.CallTimeout <= 0 {
		cfg.CallTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Controller{cfg: cfg, pool: member.NewPool(cfg.Lookup, cfg.Now), metrics: newMetrics(cfg.Registry)}
}

// Close releases the member connections.
func (c *Controller) Close() { c.pool.Close() }

// split takes the placement block out of a service manifest and returns
// the rest as JSON, checked as a member would check it, with its name
// and replicas.
func split(body []byte) ([]byte, fedapi.Placement, *manifest.ServiceManifest, error) {
	var p fedapi.Placement
	raw, err := yaml.YAMLToJSON(body)
	if err != nil {
		return nil, p, nil, httperr.New(http.StatusBadRequest, "manifest: "+err.Error())
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil || doc == nil {
		return nil, p, nil, httperr.New(http.StatusBadRequest, "manifest: not an object")
	}
	pl, ok := doc["placement"]
	if !ok {
		return nil, p, nil, httperr.Field("placement", "required: a federated service names the member clusters that run its replicas (placement: {clusters: [a, b]} or clusterSelector)")
	}
	dec := json.NewDecoder(bytes.NewReader(pl))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, p, nil, httperr.Field("placement", err.Error())
	}
	delete(doc, "placement")
	rest, err := json.Marshal(doc)
	if err != nil {
		return nil, p, nil, err
	}
	m, err := manifest.ParseService(rest)
	if err != nil {
		return nil, p, nil, httperr.FromManifest(err)
	}
	return rest, p, m, nil
}

func replicasOf(m *manifest.ServiceManifest) int {
	if m.Spec.Replicas == nil {
		return 1
	}
	return *m.Spec.Replicas
}

// members reads the member clusters as placement sees them.
func (c *Controller) members(ctx context.Context) (fedplace.Members, error) {
	list, err := c.cfg.Store.ListMembers(ctx)
	if err != nil {
		return nil, err
	}
	out := make(fedplace.Members, len(list))
	for _, m := range list {
		out[m.Name] = m.Labels
	}
	return out, nil
}

// Apply stores a federated service and the division of its replicas,
// then sends each ready member its share. A member that cannot be
// reached keeps its share stored; the loop sends it later.
func (c *Controller) Apply(ctx context.Context, body []byte) (*persysv1.ApplyServiceResponse, error) {
	mjson, pl, m, err := split(body)
	if err != nil {
		return nil, err
	}
	members, err := c.members(ctx)
	if err != nil {
		return nil, err
	}
	replicas := replicasOf(m)
	if err := fedplace.ValidateService(pl, members, replicas); err != nil {
		return nil, err
	}
	var (
		v      fedstore.Service
		result string
	)
	for attempt := 0; ; attempt++ {
		v, result, err = c.decide(ctx, m.Metadata.Name, mjson, replicas, pl, members)
		if !errors.Is(err, fedstore.ErrConflict) || attempt == maxConflicts {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	healths, err := c.cfg.Store.Healths(ctx)
	if err != nil {
		return nil, err
	}
	if err := c.sync(ctx, v.Name, healths); err != nil {
		c.cfg.Logger.Warn("a member did not take its share yet; the loop sends it again", "service", v.Name, "err", err)
	}
	v, _, err = c.cfg.Store.GetService(ctx, v.Name)
	if err != nil {
		return nil, err
	}
	return &persysv1.ApplyServiceResponse{Service: c.view(ctx, v, false), Result: result}, nil
}

// decide reads the stored service, makes the new revision and division,
// and stores them (compare-and-swap on the key).
func (c *Controller) decide(ctx context.Context, name string, mjson []byte, replicas int, pl fedapi.Placement, members fedplace.Members) (fedstore.Service, string, error) {
	cur, rev, err := c.cfg.Store.GetService(ctx, name)
	exists := err == nil
	if err != nil && !errors.Is(err, fedstore.ErrNotFound) {
		return cur, "", err
	}
	if cur.Deleting {
		return cur, "", httperr.New(http.StatusConflict, "service "+name+" is being deleted; apply it again once it is gone")
	}
	if exists && bytes.Equal(cur.Manifest, mjson) && cur.Replicas == replicas && reflect.DeepEqual(cur.Placement, pl) {
		return cur, "unchanged", nil
	}
	result := "created"
	if exists {
		result = "updated"
	}
	v := cur
	v.Name, v.Manifest, v.Replicas, v.Placement = name, mjson, replicas, pl
	v.Revision++
	v.Caps = nil // a new revision tries every member in full again
	healths, err := c.cfg.Store.Healths(ctx)
	if err != nil {
		return v, "", err
	}
	shares, reason, ok := fedplace.Spread(fedplace.Resolve(pl, members), replicas, healths, c.cfg.Now())
	if !ok {
		return v, "", httperr.New(http.StatusServiceUnavailable, "service "+name+": "+reason)
	}
	c.setDecision(&v, shares, reason)
	if _, err := c.cfg.Store.PutService(ctx, v, rev); err != nil {
		return v, "", err
	}
	c.metrics.divisions.WithLabelValues(causeApply).Inc()
	c.event(ctx, v, fmt.Sprintf("replicas divided at federation revision %d: %s", v.Revision, v.Decision.Reason))
	return v, result, nil
}

func (c *Controller) setDecision(v *fedstore.Service, shares fedapi.Shares, reason string) {
	v.Decision = fedapi.ServiceDecision{Shares: shares, Revision: v.Revision, Seq: v.Decision.Seq + 1, Reason: reason, At: c.cfg.Now()}
	v.History = append(v.History, v.Decision)
	if len(v.History) > maxHistory {
		v.History = slices.Clone(v.History[len(v.History)-maxHistory:])
	}
}

// memberManifest is the service a member receives: the user's, with the
// member's share of replicas, labelled with the member and the
// federation revision.
func memberManifest(v fedstore.Service, cluster string, replicas int) ([]byte, error) {
	var doc map[string]any
	if err := json.Unmarshal(v.Manifest, &doc); err != nil {
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
	labels[fedapi.LabelCluster] = cluster
	labels[fedapi.LabelRevision] = strconv.FormatInt(v.Revision, 10)
	spec, _ := doc["spec"].(map[string]any)
	if spec == nil {
		return nil, errors.New("service " + v.Name + ": stored manifest has no spec")
	}
	spec["replicas"] = replicas
	return json.Marshal(doc)
}

// sync sends the current division to every ready member that has not
// taken it and deletes the service at ready members left without a
// share.
func (c *Controller) sync(ctx context.Context, name string, healths map[string]fedapi.Health) error {
	v, _, err := c.cfg.Store.GetService(ctx, name)
	if err != nil {
		return err
	}
	ready := func(cl string) bool { return healths[cl].State == fedapi.StateReady }
	d := v.Decision
	var errs []error
	for _, cl := range slices.Sorted(maps.Keys(d.Shares)) {
		if !ready(cl) || v.Sent[cl] == d.Seq {
			continue
		}
		if err := c.send(ctx, v, cl, d.Shares[cl]); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", cl, err))
			continue
		}
		errs = append(errs, c.update(ctx, name, func(cur *fedstore.Service) bool {
			if cur.Decision.Seq != d.Seq {
				return false // divided again meanwhile
			}
			if cur.Sent == nil {
				cur.Sent = map[string]int64{}
			}
			cur.Sent[cl] = d.Seq
			return true
		}))
	}
	for _, cl := range slices.Sorted(maps.Keys(v.Sent)) {
		if d.Shares[cl] > 0 || !ready(cl) {
			continue
		}
		if err := c.deleteAt(ctx, cl, name); err != nil {
			errs = append(errs, fmt.Errorf("cluster %s: %w", cl, err))
			continue
		}
		c.cfg.Logger.Info("service removed from a member left without a share", "service", name, "cluster", cl)
		errs = append(errs, c.update(ctx, name, func(cur *fedstore.Service) bool {
			if cur.Decision.Shares[cl] > 0 {
				return false
			}
			delete(cur.Sent, cl)
			return true
		}))
	}
	return errors.Join(errs...)
}

func (c *Controller) send(ctx context.Context, v fedstore.Service, cluster string, replicas int) error {
	body, err := memberManifest(v, cluster, replicas)
	if err != nil {
		return err
	}
	mc, err := c.pool.Client(ctx, cluster)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	_, err = mc.ApplyService(cctx, body)
	c.metrics.call("apply", err)
	return err
}

func (c *Controller) deleteAt(ctx context.Context, cluster, name string) error {
	mc, err := c.pool.Client(ctx, cluster)
	if errors.Is(err, fedstore.ErrNotFound) {
		return nil // the member left the federation
	}
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.CallTimeout)
	defer cancel()
	err = mc.DeleteService(cctx, name)
	if client.IsNotFound(err) {
		err = nil
	}
	c.metrics.call("delete", err)
	return err
}

// update applies change to the stored service until it commits; change
// returns false to write nothing.
func (c *Controller) update(ctx context.Context, name string, change func(*fedstore.Service) bool) error {
	for attempt := 0; ; attempt++ {
		cur, rev, err := c.cfg.Store.GetService(ctx, name)
		if err != nil {
			return err
		}
		if !change(&cur) {
			return nil
		}
		_, err = c.cfg.Store.PutService(ctx, cur, rev)
		if !errors.Is(err, fedstore.ErrConflict) || attempt == maxConflicts {
			return err
		}
	}
}

func (c *Controller) event(ctx context.Context, v fedstore.Service, msg string) {
	e := fedapi.Event{Time: c.cfg.Now().UTC(), Type: fedapi.EventSpread, Service: v.Name, Message: msg}
	if err := c.cfg.Store.AddEvent(ctx, e); err != nil {
		c.cfg.Logger.Warn("event not written", "service", v.Name, "err", err)
	}
	c.cfg.Logger.Info(msg, "service", v.Name, "revision", v.Revision, "seq", v.Decision.Seq, "event", fedapi.EventSpread)
}

// Delete marks the service deleted, deletes it at every member that may
// hold it, and then forgets it; a member that cannot be reached is left
// to the loop.
func (c *Controller) Delete(ctx context.Context, name string) error {
	if _, _, err := c.cfg.Store.GetService(ctx, name); err != nil {
		return notFound(err)
	}
	if err := c.update(ctx, name, func(v *fedstore.Service) bool {
		if v.Deleting {
			return false
		}
		v.Deleting = true
		return true
	}); err != nil {
		return err
	}
	// The reconcile loop may write the record meanwhile (a send, an
	// offload) or finish the delete itself: read again and retry, and a
	// record already gone is deleted.
	for attempt := 0; ; attempt++ {
		v, rev, err := c.cfg.Store.GetService(ctx, name)
		if errors.Is(err, fedstore.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		err = c.finishDelete(ctx, v, rev)
		if !errors.Is(err, fedstore.ErrConflict) || attempt == maxConflicts {
			return err
		}
	}
}

func (c *Controller) finishDelete(ctx context.Context, v fedstore.Service, rev int64) error {
	for _, cl := range holders(v) {
		if err := c.deleteAt(ctx, cl, v.Name); err != nil {
			return fmt.Errorf("service %s marked deleted; cluster %s did not delete it yet (the federation retries): %w", v.Name, cl, err)
		}
	}
	if c.beforeRecordDelete != nil {
		c.beforeRecordDelete(v.Name)
	}
	return c.cfg.Store.DeleteService(ctx, v.Name, rev)
}

// holders lists the members that may hold the service, by name.
func holders(v fedstore.Service) []string {
	set := map[string]bool{}
	for cl := range v.Sent {
		set[cl] = true
	}
	for cl := range v.Decision.Shares {
		set[cl] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Holds reports whether the service has a share or may have a copy on
// cluster.
func Holds(v fedstore.Service, cluster string) bool {
	return slices.Contains(holders(v), cluster)
}

func notFound(err error) error {
	if errors.Is(err, fedstore.ErrNotFound) {
		return &httperr.Error{Code: http.StatusNotFound, Message: err.Error(),
			Fields: []httperr.FieldError{{Field: "name", Reason: "no federated service of this name"}}}
	}
	return err
}
