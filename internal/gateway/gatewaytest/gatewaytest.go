// Package gatewaytest runs a real gateway, over real mutual TLS with
// certificates from internal/pki, in front of an in-memory ControlService
// that stands in for the scheduler. Leader following is tested against
// real schedulers (internal/testutil/realsched), not here. It exists for tests
// of the gateway and of its clients (internal/client, internal/cli);
// production code must not import it. The in-memory service keeps
// workloads, nodes and events in maps, streams WatchWorkload from its own
// change notifications, cordons and drains nodes, and lets a test inject an
// error per method or per applied workload, and count calls.
package gatewaytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/gateway"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/pki"
)

// Control is an in-memory ControlService. The zero value is not usable;
// use NewControl.
type Control struct {
	persysv1grpc.UnimplementedControlServiceServer

	mu      sync.Mutex
	views   map[string]*persysv1.WorkloadView
	nodes   map[string]*persysv1.Node
	events  []*persysv1.Event
	audits  []*persysv1.Event
	summary *persysv1.ClusterSummary
	errs    map[string]error
	// applyErrs fail the apply of one workload, by name.
	applyErrs map[string]error
	calls     map[string]int
	changed   chan struct{}
	uids      int
	onApply   func(name string)

	// addr is where ServeControl serves it.
	addr      string
	leader    *persysv1.LeaderInfo
	lastDrain *persysv1.DrainRequest
	drainLeft time.Duration
}

// SetOnApply makes f run after every successful apply of a workload
// (ApplyWorkload, or an item of ApplyWorkloads) with the workload's name
// (outside the lock, so f may call SetStatus); nil clears it.
func (c *Control) SetOnApply(f func(name string)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.onApply = f
}

// NewControl returns an empty in-memory ControlService.
func NewControl() *Control {
	return &Control{
		views:     map[string]*persysv1.WorkloadView{},
		nodes:     map[string]*persysv1.Node{},
		errs:      map[string]error{},
		applyErrs: map[string]error{},
		calls:     map[string]int{},
		changed:   make(chan struct{}),
		summary:   &persysv1.ClusterSummary{},
	}
}

// Addr returns the address ServeControl serves c on ("" before).
func (c *Control) Addr() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.addr
}

// SetLeader sets what GetLeader answers; nil restores the default (this
// Control's own address as the leader).
func (c *Control) SetLeader(info *persysv1.LeaderInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if info == nil {
		c.leader = nil
		return
	}
	c.leader = proto.Clone(info).(*persysv1.LeaderInfo)
}

// LastDrain returns the last DrainRequest received and how long its
// context had left when it arrived (0 without a deadline).
func (c *Control) LastDrain() (*persysv1.DrainRequest, time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastDrain == nil {
		return nil, 0
	}
	return proto.Clone(c.lastDrain).(*persysv1.DrainRequest), c.drainLeft
}

// SetError makes method (for example "ApplyWorkload") fail with err; nil
// clears it.
func (c *Control) SetError(method string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.errs, method)
		return
	}
	c.errs[method] = err
}

// SetApplyError makes the apply of the workload called name fail with err,
// through ApplyWorkload or as its item's error in ApplyWorkloads; nil
// clears it.
func (c *Control) SetApplyError(name string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.applyErrs, name)
		return
	}
	c.applyErrs[name] = err
}

// Calls reports how often method was called.
func (c *Control) Calls(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calls[method]
}

// enter counts a call and returns the injected error, if any.
func (c *Control) enter(_ context.Context, method string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls[method]++
	return c.errs[method]
}

// notify wakes every watcher; call with mu held.
func (c *Control) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// SetStatus replaces the status of a workload and wakes its watchers.
func (c *Control) SetStatus(name string, st *persysv1.WorkloadStatus) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.views[name]
	if !ok {
		return fmt.Errorf("workload %q not found", name)
	}
	st = proto.Clone(st).(*persysv1.WorkloadStatus)
	st.Name, st.Uid = name, v.GetWorkload().GetUid()
	v.Status = st
	c.notify()
	return nil
}

// SetAssignment replaces the placement of a workload.
func (c *Control) SetAssignment(name string, a *persysv1.Assignment) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.views[name]
	if !ok {
		return fmt.Errorf("workload %q not found", name)
	}
	v.Assignment = proto.Clone(a).(*persysv1.Assignment)
	c.notify()
	return nil
}

// Remove forgets a workload, ending its watches with NotFound.
func (c *Control) Remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.views, name)
	c.notify()
}

// AddNode stores a node.
func (c *Control) AddNode(n *persysv1.Node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodes[n.GetId()] = proto.Clone(n).(*persysv1.Node)
}

// AddEvent appends an event.
func (c *Control) AddEvent(e *persysv1.Event) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.events = append(c.events, proto.Clone(e).(*persysv1.Event))
}

// RecordAudit keeps the gateway's audit events apart from the others
// (Audits, and ListEvents with type Audit).
func (c *Control) RecordAudit(ctx context.Context, req *persysv1.RecordAuditRequest) (*persysv1.RecordAuditResponse, error) {
	if err := c.enter(ctx, "RecordAudit"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.audits = append(c.audits, proto.Clone(req.GetEvent()).(*persysv1.Event))
	return &persysv1.RecordAuditResponse{}, nil
}

// Audits returns the audit events recorded so far.
func (c *Control) Audits() []*persysv1.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*persysv1.Event, 0, len(c.audits))
	for _, e := range c.audits {
		out = append(out, proto.Clone(e).(*persysv1.Event))
	}
	return out
}

// SetSummary sets what GetClusterSummary answers.
func (c *Control) SetSummary(s *persysv1.ClusterSummary) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.summary = proto.Clone(s).(*persysv1.ClusterSummary)
}

func notFound(kind, name string) error {
	return status.Errorf(codes.NotFound, "%s %q not found", kind, name)
}

// ApplyWorkload creates the workload (revision 1, PENDING), reports
// unchanged for an equal spec and labels, and otherwise bumps the revision.
func (c *Control) ApplyWorkload(ctx context.Context, req *persysv1.ApplyRequest) (*persysv1.ApplyResponse, error) {
	if err := c.enter(ctx, "ApplyWorkload"); err != nil {
		return nil, err
	}
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name: required")
	}
	return c.apply(req)
}

// ApplyWorkloads refuses the whole call, with the real scheduler's
// manifest.ValidateApplyItems, when
// it holds no item, more than 1,000, an item the manifest rules refuse or
// a name twice (InvalidArgument with a BadRequest naming items[i]...).
// Otherwise it applies each item as ApplyWorkload does, in order; an item
// fails with what SetApplyError set for its name, else with what
// SetError set for "ApplyWorkload".
func (c *Control) ApplyWorkloads(ctx context.Context, req *persysv1.ApplyWorkloadsRequest) (*persysv1.ApplyWorkloadsResponse, error) {
	if err := c.enter(ctx, "ApplyWorkloads"); err != nil {
		return nil, err
	}
	items := req.GetItems()
	if err := manifest.ValidateApplyItems(items); err != nil {
		var merr *manifest.Error
		if !errors.As(err, &merr) {
			return nil, status.Error(codes.Internal, err.Error())
		}
		return nil, invalid(merr)
	}
	c.mu.Lock()
	itemErr := c.errs["ApplyWorkload"]
	c.mu.Unlock()
	out := &persysv1.ApplyWorkloadsResponse{Results: make([]*persysv1.ApplyResult, len(items))}
	for i, it := range items {
		r := &persysv1.ApplyResult{Name: it.GetName()}
		out.Results[i] = r
		err := itemErr
		if err == nil {
			var resp *persysv1.ApplyResponse
			if resp, err = c.apply(it); err == nil {
				r.Result, r.Workload = resp.GetResult(), resp.GetWorkload()
				continue
			}
		}
		st := status.Convert(err)
		r.ErrorCode, r.ErrorMessage = int32(st.Code()), st.Message()
	}
	return out, nil
}

// invalid is InvalidArgument with the fields as a BadRequest, as the real
// scheduler answers.
func invalid(merr *manifest.Error) error {
	st := status.New(codes.InvalidArgument, merr.Error())
	if d, err := st.WithDetails(merr.BadRequest()); err == nil {
		st = d
	}
	return st.Err()
}

// apply creates or updates one workload; ApplyWorkload and every item of
// ApplyWorkloads go through it.
func (c *Control) apply(req *persysv1.ApplyRequest) (*persysv1.ApplyResponse, error) {
	c.mu.Lock()
	if err := c.applyErrs[req.GetName()]; err != nil {
		c.mu.Unlock()
		return nil, err
	}
	now := timestamppb.Now()
	result := "created"
	v, ok := c.views[req.GetName()]
	switch {
	case !ok:
		c.uids++
		v = &persysv1.WorkloadView{
			Workload: &persysv1.Workload{
				Name: req.GetName(), Uid: fmt.Sprintf("uid-%d", c.uids), Labels: req.GetLabels(),
				Spec: req.GetSpec(), Revision: 1, CreatedAt: now, UpdatedAt: now,
			},
			Status: &persysv1.WorkloadStatus{Name: req.GetName(), Uid: fmt.Sprintf("uid-%d", c.uids), State: persysv1.ActualState_ACTUAL_STATE_PENDING},
		}
		c.views[req.GetName()] = v
	case proto.Equal(v.GetWorkload().GetSpec(), req.GetSpec()) && mapsEqual(v.GetWorkload().GetLabels(), req.GetLabels()):
		result = "unchanged"
	default:
		result = "updated"
		v.Workload.Spec, v.Workload.Labels = req.GetSpec(), req.GetLabels()
		v.Workload.Revision++
		v.Workload.UpdatedAt = now
	}
	if result != "unchanged" {
		c.notify()
	}
	resp := &persysv1.ApplyResponse{Workload: proto.Clone(v).(*persysv1.WorkloadView), Result: result}
	hook := c.onApply
	c.mu.Unlock()
	if hook != nil {
		hook(req.GetName())
	}
	return resp, nil
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func (c *Control) view(name string, withEvents bool) (*persysv1.WorkloadView, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.views[name]
	if !ok {
		return nil, notFound("workload", name)
	}
	out := proto.Clone(v).(*persysv1.WorkloadView)
	if withEvents {
		for _, e := range c.events {
			if e.GetWorkload() == name {
				out.Events = append(out.Events, proto.Clone(e).(*persysv1.Event))
			}
		}
	}
	return out, nil
}

// GetWorkload returns one workload.
func (c *Control) GetWorkload(ctx context.Context, req *persysv1.GetWorkloadRequest) (*persysv1.WorkloadView, error) {
	if err := c.enter(ctx, "GetWorkload"); err != nil {
		return nil, err
	}
	return c.view(req.GetName(), req.GetWithEvents())
}

// ListWorkloads returns the workloads matching the selector, by name.
func (c *Control) ListWorkloads(ctx context.Context, req *persysv1.ListWorkloadsRequest) (*persysv1.ListWorkloadsResponse, error) {
	if err := c.enter(ctx, "ListWorkloads"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := &persysv1.ListWorkloadsResponse{}
	for _, v := range c.views {
		match := true
		for k, want := range req.GetLabelSelector() {
			if got, ok := v.GetWorkload().GetLabels()[k]; !ok || got != want {
				match = false
			}
		}
		if match {
			out.Workloads = append(out.Workloads, proto.Clone(v).(*persysv1.WorkloadView))
		}
	}
	sort.Slice(out.Workloads, func(i, j int) bool {
		return out.Workloads[i].GetWorkload().GetName() < out.Workloads[j].GetWorkload().GetName()
	})
	return out, nil
}

// DeleteWorkload removes the workload at once.
func (c *Control) DeleteWorkload(ctx context.Context, req *persysv1.DeleteRequest) (*persysv1.DeleteResponse, error) {
	if err := c.enter(ctx, "DeleteWorkload"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.views[req.GetName()]; !ok {
		return nil, notFound("workload", req.GetName())
	}
	delete(c.views, req.GetName())
	c.notify()
	return &persysv1.DeleteResponse{}, nil
}

// RetryWorkload moves a FAILED workload back to PENDING.
func (c *Control) RetryWorkload(ctx context.Context, req *persysv1.RetryRequest) (*persysv1.WorkloadView, error) {
	if err := c.enter(ctx, "RetryWorkload"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.views[req.GetName()]
	if !ok {
		return nil, notFound("workload", req.GetName())
	}
	if v.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_FAILED {
		return nil, status.Errorf(codes.FailedPrecondition, "workload %q is %s, not FAILED", req.GetName(), v.GetStatus().GetState())
	}
	v.Status = &persysv1.WorkloadStatus{Name: req.GetName(), Uid: v.GetWorkload().GetUid(), State: persysv1.ActualState_ACTUAL_STATE_PENDING}
	c.notify()
	return proto.Clone(v).(*persysv1.WorkloadView), nil
}

// WatchWorkload sends the current view and then every change until the
// workload is gone (NotFound) or the caller leaves.
func (c *Control) WatchWorkload(req *persysv1.GetWorkloadRequest, stream grpc.ServerStreamingServer[persysv1.WorkloadView]) error {
	if err := c.enter(stream.Context(), "WatchWorkload"); err != nil {
		return err
	}
	var last *persysv1.WorkloadView
	for {
		c.mu.Lock()
		v, ok := c.views[req.GetName()]
		changed := c.changed
		var snap *persysv1.WorkloadView
		if ok {
			snap = proto.Clone(v).(*persysv1.WorkloadView)
		}
		c.mu.Unlock()
		if !ok {
			return notFound("workload", req.GetName())
		}
		if last == nil || !proto.Equal(last, snap) {
			if err := stream.Send(snap); err != nil {
				return err
			}
			last = snap
		}
		select {
		case <-changed:
		case <-stream.Context().Done():
			return status.FromContextError(stream.Context().Err()).Err()
		}
	}
}

// ListNodes returns the nodes by id.
func (c *Control) ListNodes(ctx context.Context, _ *persysv1.ListNodesRequest) (*persysv1.ListNodesResponse, error) {
	if err := c.enter(ctx, "ListNodes"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := &persysv1.ListNodesResponse{}
	for _, n := range c.nodes {
		out.Nodes = append(out.Nodes, proto.Clone(n).(*persysv1.Node))
	}
	sort.Slice(out.Nodes, func(i, j int) bool { return out.Nodes[i].GetId() < out.Nodes[j].GetId() })
	return out, nil
}

// GetNode returns one node.
func (c *Control) GetNode(ctx context.Context, req *persysv1.GetNodeRequest) (*persysv1.Node, error) {
	if err := c.enter(ctx, "GetNode"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[req.GetId()]
	if !ok {
		return nil, notFound("node", req.GetId())
	}
	return proto.Clone(n).(*persysv1.Node), nil
}

// GetClusterSummary returns what SetSummary stored.
func (c *Control) GetClusterSummary(ctx context.Context, _ *persysv1.ClusterSummaryRequest) (*persysv1.ClusterSummary, error) {
	if err := c.enter(ctx, "GetClusterSummary"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return proto.Clone(c.summary).(*persysv1.ClusterSummary), nil
}

// ListEvents returns the events of one workload (or all), the last limit.
func (c *Control) ListEvents(ctx context.Context, req *persysv1.ListEventsRequest) (*persysv1.ListEventsResponse, error) {
	if err := c.enter(ctx, "ListEvents"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := &persysv1.ListEventsResponse{}
	events := c.events
	if req.GetType() != "" {
		events = nil
		for _, e := range append(slices.Clone(c.events), c.audits...) {
			if strings.EqualFold(e.GetType(), req.GetType()) {
				events = append(events, e)
			}
		}
	}
	for _, e := range events {
		if req.GetWorkload() == "" || e.GetWorkload() == req.GetWorkload() {
			out.Events = append(out.Events, proto.Clone(e).(*persysv1.Event))
		}
	}
	if n := int(req.GetLimit()); n > 0 && len(out.Events) > n {
		out.Events = out.Events[len(out.Events)-n:]
	}
	return out, nil
}

func (c *Control) setCordon(ctx context.Context, method, id string, cordoned bool) (*persysv1.Node, error) {
	if err := c.enter(ctx, method); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[id]
	if !ok {
		return nil, notFound("node", id)
	}
	n.Cordoned = cordoned
	if !cordoned {
		n.Draining = false
	}
	return proto.Clone(n).(*persysv1.Node), nil
}

// CordonNode marks a node cordoned.
func (c *Control) CordonNode(ctx context.Context, req *persysv1.CordonRequest) (*persysv1.Node, error) {
	return c.setCordon(ctx, "CordonNode", req.GetId(), true)
}

// UncordonNode clears a node's cordoned and draining marks.
func (c *Control) UncordonNode(ctx context.Context, req *persysv1.CordonRequest) (*persysv1.Node, error) {
	return c.setCordon(ctx, "UncordonNode", req.GetId(), false)
}

// DrainNode cordons the node and moves each workload on it (by status, else
// assignment) at once to the first other READY node that is neither
// cordoned nor draining, by id; with no such node the workload stays,
// unmoved with NO_FEASIBLE_NODE. The moved workloads are RUNNING on their
// new node with an assignment of cause "drain".
func (c *Control) DrainNode(ctx context.Context, req *persysv1.DrainRequest) (*persysv1.DrainResponse, error) {
	if err := c.enter(ctx, "DrainNode"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.lastDrain = proto.Clone(req).(*persysv1.DrainRequest)
	c.drainLeft = 0
	if dl, ok := ctx.Deadline(); ok {
		c.drainLeft = time.Until(dl)
	}
	n, ok := c.nodes[req.GetId()]
	if !ok {
		return nil, notFound("node", req.GetId())
	}
	n.Cordoned = true
	var target string
	ids := make([]string, 0, len(c.nodes))
	for id := range c.nodes {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		o := c.nodes[id]
		if id != n.GetId() && o.GetState() == persysv1.NodeState_NODE_STATE_READY && !o.GetCordoned() && !o.GetDraining() {
			target = id
			break
		}
	}
	names := make([]string, 0, len(c.views))
	for name := range c.views {
		names = append(names, name)
	}
	sort.Strings(names)
	resp := &persysv1.DrainResponse{Complete: true}
	for _, name := range names {
		v := c.views[name]
		on := v.GetStatus().GetNodeId()
		if on == "" {
			on = v.GetAssignment().GetNodeId()
		}
		if on != n.GetId() {
			continue
		}
		if target == "" {
			resp.Complete = false
			resp.Workloads = append(resp.Workloads, &persysv1.DrainResult{
				Workload: name, Result: "unmoved",
				Reason:  persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE,
				Message: "no other ready node",
			})
			continue
		}
		v.Assignment = &persysv1.Assignment{
			Name: name, Uid: v.GetWorkload().GetUid(), NodeId: target, Revision: v.GetWorkload().GetRevision(),
			PlacedAt: timestamppb.Now(), Cause: "drain",
		}
		v.Status = &persysv1.WorkloadStatus{
			Name: name, Uid: v.GetWorkload().GetUid(), State: persysv1.ActualState_ACTUAL_STATE_RUNNING,
			NodeId: target, Revision: v.GetWorkload().GetRevision(),
		}
		resp.Workloads = append(resp.Workloads, &persysv1.DrainResult{Workload: name, Result: "moved", ToNode: target})
	}
	c.notify()
	resp.Node = proto.Clone(n).(*persysv1.Node)
	return resp, nil
}

// GetLeader answers what SetLeader stored, else this Control itself as
// the leader.
func (c *Control) GetLeader(ctx context.Context, _ *persysv1.GetLeaderRequest) (*persysv1.LeaderInfo, error) {
	if err := c.enter(ctx, "GetLeader"); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.leader != nil:
		return proto.Clone(c.leader).(*persysv1.LeaderInfo), nil
	default:
		return &persysv1.LeaderInfo{Address: c.addr, Id: "scheduler", IsLeader: true}, nil
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Env is a running gateway in front of one Control.
type Env struct {
	// Control is the scheduler the gateway calls.
	Control *Control
	// Endpoint is the gateway's base URL, https://127.0.0.1:PORT.
	Endpoint string
	// Bundle holds the CA and the scheduler, gateway and admin identities.
	Bundle *pki.Bundle
	// Config is an admin's persysctl config for the gateway.
	Config *client.Config
	// Registry holds the gateway's metrics.
	Registry *prometheus.Registry

	logs *syncBuffer
}

// Logs returns the gateway's JSON log lines so far.
func (e *Env) Logs() string { return e.logs.String() }

// Options change what StartWith starts.
type Options struct {
	// CallTimeout is the gateway's Config.CallTimeout (0: its default).
	CallTimeout time.Duration
}

// ServeControl serves ctrl over gRPC with mutual TLS on a loopback port,
// with the scheduler identity of bundle, admitting only the gateway role
// as the real scheduler does, until the test ends. It returns the address.
func ServeControl(t testing.TB, bundle *pki.Bundle, ctrl *Control) string {
	t.Helper()
	schedTLS, err := pki.ServerTLS(bundle.Scheduler)
	if err != nil {
		t.Fatalf("scheduler tls: %v", err)
	}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(schedTLS)),
		grpc.UnaryInterceptor(grpcauth.RequireRole(pki.RoleGateway)),
		grpc.StreamInterceptor(grpcauth.RequireRoleStream(pki.RoleGateway)),
	)
	persysv1grpc.RegisterControlServiceServer(srv, ctrl)
	sln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	go func() { _ = srv.Serve(sln) }()
	t.Cleanup(srv.Stop)
	addr := sln.Addr().String()
	ctrl.mu.Lock()
	ctrl.addr = addr
	ctrl.mu.Unlock()
	return addr
}

// Start is StartWith with one scheduler and default options.
func Start(t testing.TB) *Env {
	t.Helper()
	return StartWith(t, Options{})
}

// StartWith bootstraps a CA in a temporary directory, serves a Control
// (see ServeControl), and serves the gateway over HTTPS with mTLS on
// loopback in front of it.
// Everything stops when the test ends.
func StartWith(t testing.TB, o Options) *Env {
	t.Helper()
	dir := t.TempDir()
	bundle, err := pki.Bootstrap(dir, nil, nil, nil)
	if err != nil {
		t.Fatalf("bootstrap pki: %v", err)
	}
	ctrl := NewControl()
	addr := ServeControl(t, bundle, ctrl)

	gwClientTLS, err := pki.ClientTLS(bundle.Gateway, "")
	if err != nil {
		t.Fatalf("gateway client tls: %v", err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	conn, err := gateway.DialScheduler(addr, gwClientTLS)
	if err != nil {
		t.Fatalf("dial scheduler: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })

	reg := prometheus.NewRegistry()
	h := gateway.New(gateway.Config{
		Control:     persysv1grpc.NewControlServiceClient(conn),
		Logger:      log,
		Registry:    reg,
		CallTimeout: o.CallTimeout,
	})
	gwTLS, err := pki.ServerTLS(bundle.Gateway)
	if err != nil {
		t.Fatalf("gateway tls: %v", err)
	}
	gln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gateway.Serve(ctx, gln, h, gwTLS) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway serve: %v", err)
			}
		case <-time.After(gateway.ShutdownTimeout + 5*time.Second):
			t.Errorf("gateway did not shut down")
		}
	})

	endpoint := "https://" + gln.Addr().String()
	return &Env{
		Control:  ctrl,
		Endpoint: endpoint,
		Bundle:   bundle,
		Config:   &client.Config{Endpoint: endpoint, CA: bundle.CA, Cert: bundle.Admin.Cert, Key: bundle.Admin.Key},
		Registry: reg,
		logs:     logs,
	}
}

// IssueUser issues a client certificate with role for a user named name
// and returns its files.
func (e *Env) IssueUser(t testing.TB, name string, role pki.Role) pki.Files {
	t.Helper()
	ca, err := pki.LoadCA(e.Bundle.Dir)
	if err != nil {
		t.Fatalf("load ca: %v", err)
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: name, Role: role})
	if err != nil {
		t.Fatalf("issue %s: %v", name, err)
	}
	if err := pki.WriteIdentity(e.Bundle.Dir, name, certPEM, keyPEM); err != nil {
		t.Fatalf("write identity %s: %v", name, err)
	}
	return pki.Files{CA: e.Bundle.CA, Cert: filepath.Join(e.Bundle.Dir, name+".crt"), Key: filepath.Join(e.Bundle.Dir, name+".key")}
}

// Client returns an admin client of the gateway.
func (e *Env) Client(t testing.TB) *client.Client {
	t.Helper()
	c, err := client.New(e.Config)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
