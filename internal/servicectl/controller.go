package servicectl

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/store"
)

// LabelService is the label every replica carries: the service's name.
const LabelService = "persys.service"

// Workloads is what the controller needs of the scheduler's workload API:
// replicas are applied and deleted through the path user workloads take.
type Workloads interface {
	PrepareSpec(ctx context.Context, who principal.Principal, spec *persysv1.WorkloadSpec) error
	ApplyWorkload(ctx context.Context, who principal.Principal, req *persysv1.ApplyRequest) (*persysv1.Workload, string, error)
	DeleteWorkload(ctx context.Context, name string) error
	WorkloadNames(selector map[string]string) []string
	// WorkloadView is nil when the workload does not exist.
	WorkloadView(name string, withEvents bool, ctx context.Context) *persysv1.WorkloadView
	// NodeViews lists the nodes, or only node only when it is not "".
	NodeViews(only string) []*persysv1.Node
}

// Events records cluster events (asynchronously, best effort).
type Events interface {
	Add(t model.EventType, ev *persysv1.Event)
}

// Config holds the controller's collaborators.
type Config struct {
	Store     *store.Store
	Workloads Workloads
	Events    Events
	Logger    *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Resync looks at every service again this often (default 30s), as a
	// safety net under the watch.
	Resync time.Duration
	// History is how many revisions are kept per service (default 10).
	History int
	// Registry receives the controller's metrics; nil registers none.
	Registry prometheus.Registerer
	// Workers is how many services are stepped at once (default
	// DefaultWorkers).
	Workers int
}

// DefaultWorkers is Config.Workers' default: a step waits on etcd a few
// times, so one service at a time left a 2-CPU scheduler mostly idle, and
// 16 at a time still a quarter busy, in persys bench services (1,000
// services on a loaded machine).
const DefaultWorkers = 64

// Controller runs the services' rollouts.
type Controller struct {
	cfg     Config
	st      *store.Store
	log     *slog.Logger
	metrics *metrics

	mu sync.Mutex
	// dirty holds the services to look at; due the ones to look at again
	// at a time (a replica turns available, a deadline passes); busy the
	// ones a worker is stepping. work wakes idle workers; wake tells Run
	// that a due time was set.
	dirty map[string]bool
	due   map[string]time.Time
	busy  map[string]bool
	work  chan struct{}
	wake  chan struct{}

	revs revisionCache
}

// New builds a controller; Store and Workloads are required.
func New(cfg Config) (*Controller, error) {
	if cfg.Store == nil || cfg.Workloads == nil {
		return nil, errors.New("servicectl: Config.Store and Config.Workloads are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Resync <= 0 {
		cfg.Resync = 30 * time.Second
	}
	if cfg.History <= 0 {
		cfg.History = 10
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.Events == nil {
		cfg.Events = nopEvents{}
	}
	return &Controller{cfg: cfg, st: cfg.Store, log: cfg.Logger, metrics: newMetrics(cfg.Registry), dirty: map[string]bool{},
		due: map[string]time.Time{}, busy: map[string]bool{}, wake: make(chan struct{}, 1), work: make(chan struct{}, cfg.Workers),
		revs: revisionCache{m: map[string]cachedRevision{}}}, nil
}

type nopEvents struct{}

func (nopEvents) Add(model.EventType, *persysv1.Event) {}

// Enqueue asks the controller to look at a service soon.
func (c *Controller) Enqueue(name string) {
	c.mu.Lock()
	c.dirty[name] = true
	c.mu.Unlock()
	c.kick()
}

// kick wakes an idle worker; when every token is taken, enough workers
// are awake already (each takes work until there is none).
func (c *Controller) kick() {
	select {
	case c.work <- struct{}{}:
	default:
	}
}

// Run watches the services and their replicas and steps each changed
// service until ctx ends, cfg.Workers services at a time (a step mostly
// waits on etcd) and never one service twice at once. Run it only while
// leading: one controller acts.
func (c *Controller) Run(ctx context.Context) error {
	c.revs.reset() // another leader may have written revisions meanwhile
	var wg sync.WaitGroup
	wg.Add(1 + c.cfg.Workers)
	go func() { defer wg.Done(); c.watch(ctx) }()
	for range c.cfg.Workers {
		go func() { defer wg.Done(); c.worker(ctx) }()
	}
	defer wg.Wait()
	resync := time.NewTicker(c.cfg.Resync)
	defer resync.Stop()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		c.mu.Lock()
		next := c.popDueLocked(c.cfg.Now())
		pending := len(c.dirty) > 0
		c.mu.Unlock()
		if pending {
			c.kick()
		}
		timer.Reset(next)
		select {
		case <-ctx.Done():
			return nil
		case <-c.wake: // a step set a due time
		case <-timer.C:
		case <-resync.C:
			c.enqueueAll(ctx)
		}
	}
}

// popDueLocked moves due services to dirty and returns how long until the
// next is due.
func (c *Controller) popDueLocked(now time.Time) time.Duration {
	next := time.Hour
	for name, at := range c.due {
		if d := at.Sub(now); d <= 0 {
			c.dirty[name] = true
			delete(c.due, name)
		} else {
			next = min(next, d)
		}
	}
	return next
}

// worker steps dirty services, one at a time, until ctx ends; it sleeps
// while there is none it may take. A worker always looks for work again
// after a step, so a service enqueued while it was being stepped is
// stepped again.
func (c *Controller) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.work:
		}
		for ctx.Err() == nil {
			name := c.take()
			if name == "" {
				break
			}
			c.step(ctx, name)
			c.mu.Lock()
			delete(c.busy, name)
			c.mu.Unlock()
		}
	}
}

// take removes a dirty service that no worker is stepping from the dirty
// set and marks it busy; "" when there is none.
func (c *Controller) take() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	for n := range c.dirty {
		if !c.busy[n] {
			delete(c.dirty, n)
			c.busy[n] = true
			return n
		}
	}
	return ""
}

// step syncs one service and records when to look at it again.
func (c *Controller) step(ctx context.Context, name string) {
	start := time.Now()
	at, err := c.sync(ctx, name)
	c.metrics.steps.Inc()
	c.metrics.stepTime.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() == nil {
		c.log.Warn("service step failed", "service", name, "err", err)
		at = c.cfg.Now().Add(time.Second) // conflicts and etcd hiccups: again soon, never tightly
	}
	if !at.IsZero() {
		c.mu.Lock()
		if cur, ok := c.due[name]; !ok || at.Before(cur) {
			c.due[name] = at
		}
		c.mu.Unlock()
		select { // Run's timer
		case c.wake <- struct{}{}:
		default:
		}
	}
}

func (c *Controller) enqueueAll(ctx context.Context) {
	svcs, _, err := c.st.ListServices(ctx)
	if err != nil {
		c.log.Warn("list services", "err", err)
		return
	}
	for _, s := range svcs {
		c.Enqueue(s.GetName())
	}
}

// watch lists the services and follows their changes, starting over
// when the watch ends.
func (c *Controller) watch(ctx context.Context) {
	for ctx.Err() == nil {
		svcs, rev, err := c.st.ListServices(ctx)
		if err == nil {
			for _, s := range svcs {
				c.Enqueue(s.GetName())
			}
			// Enqueued at once, not through Run's loop: a drain under way
			// picks changed services up, rather than after its pass.
			for name := range c.st.WatchServiceChanges(ctx, rev) {
				c.Enqueue(name)
			}
		} else {
			c.log.Warn("list services", "err", err)
		}
		t := time.NewTimer(time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// TemplateHash is the hex SHA-256 of the template's deterministic
// encoding.
func TemplateHash(t *persysv1.WorkloadSpec) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(t)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// sync takes one step of a service and says when to look again.
func (c *Controller) sync(ctx context.Context, name string) (time.Time, error) {
	svc, rev, err := c.st.GetService(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return time.Time{}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	prior, err := c.st.GetServiceProgress(ctx, name)
	if errors.Is(err, store.ErrNotFound) || err == nil && prior.GetUid() != svc.GetUid() {
		prior, err = &persysv1.ServiceProgress{Name: name, Uid: svc.GetUid()}, nil
	}
	if err != nil {
		return time.Time{}, err
	}
	instances, views := c.replicas(svc, prior)
	if svc.GetDeleting() {
		return c.finishDelete(ctx, svc, rev, views, prior)
	}
	target, err := c.ensureRevision(ctx, svc)
	if err != nil {
		return time.Time{}, err
	}
	in := Input{Now: c.cfg.Now(), Service: name, Replicas: int(svc.GetSpec().GetReplicas()),
		Policy: policyOf(svc.GetSpec().GetUpdate()), Target: target.GetNumber(), TargetHash: target.GetTemplateHash(),
		Promoted: svc.GetPromotedRevision() == target.GetNumber(), Prior: progressFromProto(prior), Instances: instances}
	d := Decide(in)
	if d.RollbackTo != 0 {
		return time.Time{}, c.rollback(ctx, svc, rev, d)
	}
	msg := c.act(ctx, svc, target, d)
	next := progressToProto(svc, d.Progress, in.Now, prior)
	next.Draining = nextDraining(prior, instances, d, in.Now)
	if msg != "" {
		next.Message = msg
	}
	if err := c.writeProgress(ctx, svc, prior, next); err != nil {
		return time.Time{}, err
	}
	return d.RecheckAt, nil
}

// replicas lists the service's replicas (labelled with its name and
// owned by its uid) as decision instances, draining as progress says.
func (c *Controller) replicas(svc *persysv1.Service, progress *persysv1.ServiceProgress) ([]Instance, []*persysv1.WorkloadView) {
	var (
		out   []Instance
		views []*persysv1.WorkloadView
	)
	since := drainingSince(progress)
	for _, n := range c.cfg.Workloads.WorkloadNames(map[string]string{LabelService: svc.GetName()}) {
		v := c.cfg.Workloads.WorkloadView(n, false, nil)
		w := v.GetWorkload()
		if w == nil || w.GetOwner().GetServiceUid() != svc.GetUid() {
			continue
		}
		views = append(views, v)
		i := Instance{Name: n, Hash: w.GetOwner().GetTemplateHash(), Index: indexOf(n), Deleting: w.GetDeleting()}
		i.State, i.ReadySince = replicaState(v)
		i.DrainingSince = since[n]
		out = append(out, i)
	}
	return out, views
}

func indexOf(name string) int {
	k := strings.LastIndexByte(name, '-')
	n, err := strconv.Atoi(name[k+1:])
	if err != nil {
		return -1
	}
	return n
}

// failedAttempts is how many failed starts of a replica count as failed
// for an update, before the retry engine gives up on it.
const failedAttempts = 3

// replicaState classifies a replica, and says since when it is ready.
func replicaState(v *persysv1.WorkloadView) (State, time.Time) {
	st := v.GetStatus()
	switch {
	case replicaReady(v):
		return Ready, st.GetUpdatedAt().AsTime()
	case st.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED, st.GetAttempts() >= failedAttempts:
		return Failed, time.Time{}
	}
	return Starting, time.Time{}
}

// replicaReady decides readiness, in this one place: the replica runs
// the revision asked for and its agent says it is ready (it passes its
// readiness checks, or has none).
func replicaReady(v *persysv1.WorkloadView) bool {
	st := v.GetStatus()
	return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && st.GetReady() &&
		st.GetRevision() == v.GetWorkload().GetRevision()
}

func policyOf(u *persysv1.ServiceUpdatePolicy) Policy {
	return Policy{MaxUnavailable: int(u.GetMaxUnavailable()), MaxSurge: int(u.GetMaxSurge()),
		MinReady:         time.Duration(u.GetMinReadySeconds()) * time.Second,
		ProgressDeadline: time.Duration(u.GetProgressDeadlineSeconds()) * time.Second,
		AutoRollback:     u.GetAutoRollback(), Canary: int(u.GetCanary()), Paused: u.GetPaused(),
		DrainDelay: time.Duration(u.GetDrainDelayMs()) * time.Millisecond}
}

// drainingSince maps each draining replica to when it left the endpoints.
func drainingSince(p *persysv1.ServiceProgress) map[string]time.Time {
	out := make(map[string]time.Time, len(p.GetDraining()))
	for _, d := range p.GetDraining() {
		out[d.GetReplica()] = d.GetSince().AsTime()
	}
	return out
}

// nextDraining is the draining list after decision d: the replicas still
// draining (not deleted, now or before) and the ones d drains, since now.
func nextDraining(prior *persysv1.ServiceProgress, is []Instance, d Decision, now time.Time) []*persysv1.ServiceEndpointDrain {
	var out []*persysv1.ServiceEndpointDrain
	for _, i := range is {
		switch {
		case i.Deleting || slices.Contains(d.Delete, i.Name):
		case i.draining():
			out = append(out, &persysv1.ServiceEndpointDrain{Replica: i.Name, Since: timestamppb.New(i.DrainingSince)})
		case slices.Contains(d.Drain, i.Name):
			out = append(out, &persysv1.ServiceEndpointDrain{Replica: i.Name, Since: timestamppb.New(now)})
		}
	}
	return out
}

// ensureRevision returns the revision of the service's template, storing
// a new one (with the template's applier) when the template is new.
func (c *Controller) ensureRevision(ctx context.Context, svc *persysv1.Service) (*persysv1.ServiceRevision, error) {
	hash := TemplateHash(svc.GetSpec().GetTemplate())
	if r := c.revs.get(svc.GetName(), svc.GetUid(), hash); r != nil {
		return r, nil
	}
	revs, err := c.st.ListServiceRevisions(ctx, svc.GetName())
	if err != nil {
		return nil, err
	}
	var last uint64
	for _, r := range revs {
		if r.GetTemplateHash() == hash {
			c.revs.put(svc.GetName(), svc.GetUid(), r)
			return r, nil
		}
		last = max(last, r.GetNumber())
	}
	r := &persysv1.ServiceRevision{Service: svc.GetName(), Number: last + 1, TemplateHash: hash,
		Template: svc.GetSpec().GetTemplate(), CreatedAt: timestamppb.New(c.cfg.Now()),
		AppliedBy: svc.GetAppliedBy(), AppliedRole: svc.GetAppliedRole(), Cause: "apply"}
	var protect []uint64
	if p, err := c.st.GetServiceProgress(ctx, svc.GetName()); err == nil {
		protect = []uint64{p.GetCurrentGoodRevision(), p.GetPreviousGoodRevision()}
	}
	c.revs.forget(svc.GetName())
	if err := c.st.PutServiceRevision(ctx, r, c.cfg.History, protect...); err != nil {
		return nil, err
	}
	c.revs.put(svc.GetName(), svc.GetUid(), r)
	c.log.Info("service revision", "service", svc.GetName(), "revision", r.GetNumber(), "hash", hash[:hashLen])
	return r, nil
}

// act carries out a decision's deletes and creates; the message says
// what failed (empty when everything did).
func (c *Controller) act(ctx context.Context, svc *persysv1.Service, target *persysv1.ServiceRevision, d Decision) string {
	var problems []string
	for _, n := range d.Delete {
		if err := c.cfg.Workloads.DeleteWorkload(ctx, n); err != nil && !errors.Is(err, store.ErrNotFound) {
			problems = append(problems, fmt.Sprintf("delete %s: %v", n, err))
			continue
		}
		c.metrics.replicas.WithLabelValues("delete").Inc()
		c.cfg.Events.Add(model.EventReplicaDeleted, &persysv1.Event{Workload: EventSubject(svc.GetName()), Message: "replica " + n})
	}
	who := principal.Principal{Name: target.GetAppliedBy(), Role: pki.Role(target.GetAppliedRole())}
	labels := maps.Clone(svc.GetSpec().GetSelector())
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelService] = svc.GetName()
	for _, cr := range d.Create {
		spec := proto.CloneOf(target.GetTemplate())
		err := c.cfg.Workloads.PrepareSpec(ctx, who, spec)
		if err == nil {
			_, _, err = c.cfg.Workloads.ApplyWorkload(ctx, who, &persysv1.ApplyRequest{Name: cr.Name, Labels: labels, Spec: spec,
				Owner: &persysv1.ServiceOwner{Service: svc.GetName(), ServiceUid: svc.GetUid(),
					Revision: target.GetNumber(), TemplateHash: target.GetTemplateHash(), Spread: svc.GetSpec().GetSpread()}})
		}
		if err != nil {
			problems = append(problems, fmt.Sprintf("create %s: %v", cr.Name, err))
			continue
		}
		c.metrics.replicas.WithLabelValues("create").Inc()
		c.cfg.Events.Add(model.EventReplicaCreated, &persysv1.Event{Workload: EventSubject(svc.GetName()),
			Revision: target.GetNumber(), Message: "replica " + cr.Name})
	}
	if len(problems) > 0 {
		c.log.Warn("service replicas", "service", svc.GetName(), "problems", strings.Join(problems, "; "))
		return strings.Join(problems, "; ")
	}
	return ""
}

// EventSubject is the Workload field of a service's events.
func EventSubject(service string) string { return "service/" + service }

// rollback returns the service's template to revision d.RollbackTo: the
// progress first (it remembers the revision left), then the spec.
func (c *Controller) rollback(ctx context.Context, svc *persysv1.Service, rev int64, d Decision) error {
	revs, err := c.st.ListServiceRevisions(ctx, svc.GetName())
	if err != nil {
		return err
	}
	var to *persysv1.ServiceRevision
	for _, r := range revs {
		if r.GetNumber() == d.RollbackTo {
			to = r
		}
	}
	prior, _ := c.st.GetServiceProgress(ctx, svc.GetName())
	next := progressToProto(svc, d.Progress, c.cfg.Now(), prior)
	next.Draining = prior.GetDraining() // the next step deletes them
	if to == nil {
		next.Phase = persysv1.RolloutPhase_ROLLOUT_PHASE_FAILED
		next.Message = d.Progress.Message + fmt.Sprintf("; revision %d is no longer kept: update stopped", d.RollbackTo)
		return c.writeProgress(ctx, svc, prior, next)
	}
	if err := c.writeProgress(ctx, svc, prior, next); err != nil {
		return err
	}
	if err := c.setTemplate(ctx, svc, rev, to); err != nil {
		return err
	}
	c.metrics.rollbacks.Inc()
	c.log.Warn("service rolled back", "service", svc.GetName(), "from", d.Progress.Revision, "to", to.GetNumber(), "why", d.Progress.Message)
	c.cfg.Events.Add(model.EventRolledBack, &persysv1.Event{Workload: EventSubject(svc.GetName()), Revision: to.GetNumber(),
		Message: d.Progress.Message})
	return nil
}

// setTemplate writes revision to's template (and applier) as the
// service's template, if the service is still at mod revision rev.
func (c *Controller) setTemplate(ctx context.Context, svc *persysv1.Service, rev int64, to *persysv1.ServiceRevision) error {
	next := proto.CloneOf(svc)
	next.Spec.Template = to.GetTemplate()
	next.AppliedBy, next.AppliedRole = to.GetAppliedBy(), to.GetAppliedRole()
	next.Generation++
	next.UpdatedAt = timestamppb.New(c.cfg.Now())
	_, err := c.st.UpdateService(ctx, next, rev)
	return err
}

func (c *Controller) writeProgress(ctx context.Context, svc *persysv1.Service, prior, next *persysv1.ServiceProgress) error {
	if proto.Equal(prior, next) {
		return nil
	}
	if prior.GetPhase() != next.GetPhase() {
		c.phaseEvent(svc.GetName(), next)
	}
	err := c.st.PutServiceProgress(ctx, next)
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted meanwhile
	}
	return err
}

func (c *Controller) phaseEvent(name string, p *persysv1.ServiceProgress) {
	ev := &persysv1.Event{Workload: EventSubject(name), Revision: p.GetRevision(), Message: p.GetMessage()}
	switch p.GetPhase() {
	case persysv1.RolloutPhase_ROLLOUT_PHASE_COMPLETE:
		ev.Message = fmt.Sprintf("revision %d: %d replicas available", p.GetRevision(), p.GetAvailable())
		c.cfg.Events.Add(model.EventRolloutComplete, ev)
	case persysv1.RolloutPhase_ROLLOUT_PHASE_FAILED:
		c.metrics.failed.Inc()
		c.cfg.Events.Add(model.EventRolloutFailed, ev)
	}
}

// finishDelete drains and then deletes the replicas of a deleted
// service, then deletes its keys; it says when to look again for a drain.
func (c *Controller) finishDelete(ctx context.Context, svc *persysv1.Service, rev int64, views []*persysv1.WorkloadView,
	prior *persysv1.ServiceProgress) (time.Time, error) {
	delay := time.Duration(svc.GetSpec().GetUpdate().GetDrainDelayMs()) * time.Millisecond
	now, since := c.cfg.Now(), drainingSince(prior)
	next := proto.CloneOf(prior)
	next.Draining = nil
	var recheck time.Time
	for _, v := range views {
		name := v.GetWorkload().GetName()
		switch at, ok := since[name]; {
		case v.GetWorkload().GetDeleting():
		case delay > 0 && !ok:
			next.Draining = append(next.Draining, &persysv1.ServiceEndpointDrain{Replica: name, Since: timestamppb.New(now)})
			recheck = earliest(recheck, now.Add(delay))
		case delay > 0 && now.Before(at.Add(delay)):
			next.Draining = append(next.Draining, &persysv1.ServiceEndpointDrain{Replica: name, Since: timestamppb.New(at)})
			recheck = earliest(recheck, at.Add(delay))
		default:
			if err := c.cfg.Workloads.DeleteWorkload(ctx, name); err != nil && !errors.Is(err, store.ErrNotFound) {
				return time.Time{}, err
			}
		}
	}
	if len(views) > 0 {
		// The replicas' removal brings the service back here.
		return recheck, c.writeProgress(ctx, svc, prior, next)
	}
	c.revs.forget(svc.GetName())
	if err := c.st.DeleteServiceKeys(ctx, svc.GetName(), rev); err != nil {
		return time.Time{}, err
	}
	c.log.Info("service deleted", "service", svc.GetName())
	c.cfg.Events.Add(model.EventServiceDeleted, &persysv1.Event{Workload: EventSubject(svc.GetName())})
	return time.Time{}, nil
}

var phaseToProto = map[Phase]persysv1.RolloutPhase{
	PhaseProgressing:       persysv1.RolloutPhase_ROLLOUT_PHASE_PROGRESSING,
	PhaseComplete:          persysv1.RolloutPhase_ROLLOUT_PHASE_COMPLETE,
	PhasePaused:            persysv1.RolloutPhase_ROLLOUT_PHASE_PAUSED,
	PhaseAwaitingPromotion: persysv1.RolloutPhase_ROLLOUT_PHASE_AWAITING_PROMOTION,
	PhaseFailed:            persysv1.RolloutPhase_ROLLOUT_PHASE_FAILED,
	PhaseRollingBack:       persysv1.RolloutPhase_ROLLOUT_PHASE_ROLLING_BACK,
}

func progressFromProto(p *persysv1.ServiceProgress) Progress {
	out := Progress{Revision: p.GetRevision(), CurrentGood: p.GetCurrentGoodRevision(), PreviousGood: p.GetPreviousGoodRevision(),
		UpdatedAvailable: int(p.GetUpdatedAvailable()), RolledBackFrom: p.GetRolledBackFrom(), Message: p.GetMessage()}
	if p.GetProgressAt() != nil {
		out.ProgressAt = p.GetProgressAt().AsTime()
	}
	for ph, pp := range phaseToProto {
		if pp == p.GetPhase() {
			out.Phase = ph
		}
	}
	return out
}

// progressToProto is the stored form of p, with conditions whose
// transition times carry over from prior while their status holds.
func progressToProto(svc *persysv1.Service, p Progress, now time.Time, prior *persysv1.ServiceProgress) *persysv1.ServiceProgress {
	out := &persysv1.ServiceProgress{Name: svc.GetName(), Uid: svc.GetUid(), ObservedGeneration: svc.GetGeneration(),
		Revision: p.Revision, Replicas: int32(p.Replicas), Ready: int32(p.Ready), Updated: int32(p.Updated),
		Available: int32(p.Available), Phase: phaseToProto[p.Phase], CurrentGoodRevision: p.CurrentGood,
		PreviousGoodRevision: p.PreviousGood, RolledBackFrom: p.RolledBackFrom, Message: p.Message,
		UpdatedAvailable: int32(p.UpdatedAvailable)}
	if !p.ProgressAt.IsZero() {
		out.ProgressAt = timestamppb.New(p.ProgressAt)
	}
	floor := int(svc.GetSpec().GetReplicas() - svc.GetSpec().GetUpdate().GetMaxUnavailable())
	conds := []*persysv1.ServiceCondition{
		{Type: "Available", Status: p.Available >= floor, Reason: fmt.Sprintf("%d of %d available, at least %d needed", p.Available, svc.GetSpec().GetReplicas(), max(floor, 0))},
		{Type: "Progressing", Status: p.Phase == PhaseProgressing || p.Phase == PhaseRollingBack, Reason: p.Phase.String()},
	}
	if p.RolledBackFrom != 0 {
		conds = append(conds, &persysv1.ServiceCondition{Type: "RolledBack", Status: true,
			Reason: fmt.Sprintf("revision %d failed; back to revision %d", p.RolledBackFrom, p.CurrentGood)})
	}
	for _, cd := range conds {
		cd.LastTransition = timestamppb.New(now)
		for _, old := range prior.GetConditions() {
			if old.GetType() == cd.GetType() && old.GetStatus() == cd.GetStatus() {
				cd.LastTransition = old.GetLastTransition()
			}
		}
	}
	out.Conditions = conds
	return out
}
