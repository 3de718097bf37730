package servicectl_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/persys-dev/compute/internal/runtime/sim"
	"github.com/persys-dev/compute/internal/scheduler"
	"github.com/persys-dev/compute/internal/servicectl"
	"github.com/persys-dev/compute/internal/testutil/eventually"
	"github.com/persys-dev/compute/internal/testutil/realsched"
)

const wait = 60 * time.Second

func serviceRequest(replicas int32, image string) *persysv1.ApplyServiceRequest {
	return &persysv1.ApplyServiceRequest{Name: "web", Spec: &persysv1.ServiceSpec{
		Replicas: replicas,
		Selector: map[string]string{"app": "web"},
		Update:   &persysv1.ServiceUpdatePolicy{MaxSurge: 1, MaxUnavailable: 0, AutoRollback: true, ProgressDeadlineSeconds: 120},
		Template: &persysv1.WorkloadSpec{
			Type: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
			Resources: &persysv1.Resources{CpuMillis: 100, MemoryBytes: 64 << 20},
			Container: &persysv1.ContainerSpec{Image: image, RestartPolicy: "no"},
		},
	}}
}

// replicaSet is what the cluster holds of web's replicas.
type replicaSet struct {
	total, running int
	images         map[string]int
}

func (r replicaSet) String() string {
	return fmt.Sprintf("%d replicas, %d running, images %v", r.total, r.running, r.images)
}

func replicasOf(t *testing.T, ctl persysv1grpc.ControlServiceClient) replicaSet {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := ctl.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{LabelSelector: map[string]string{servicectl.LabelService: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	out := replicaSet{images: map[string]int{}}
	for _, v := range resp.GetWorkloads() {
		out.total++
		if v.GetStatus().GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING && !v.GetWorkload().GetDeleting() {
			out.running++
			out.images[v.GetWorkload().GetSpec().GetContainer().GetImage()]++
		}
		if v.GetWorkload().GetOwner().GetService() != "web" || v.GetWorkload().GetLabels()["app"] != "web" {
			t.Fatalf("replica %s lacks its owner or the selector labels: %v", v.GetWorkload().GetName(), v.GetWorkload())
		}
	}
	return out
}

func getService(t *testing.T, ctl persysv1grpc.ControlServiceClient) *persysv1.ServiceView {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v, err := ctl.GetService(ctx, &persysv1.GetServiceRequest{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitComplete waits until web completed revision rev with n replicas of
// image running, checking on every look that the replicas never exceed
// max and (from the first look on which they reached floor) never fall
// under floor running.
func waitComplete(t *testing.T, ctl persysv1grpc.ControlServiceClient, rev uint64, n int, image string, max, floor int) {
	t.Helper()
	reached := false
	eventually.Eventually(t, fmt.Sprintf("web at revision %d, %d × %s", rev, n, image), wait, func() (bool, string) {
		rs := replicasOf(t, ctl)
		if rs.total > max {
			t.Fatalf("%s: more than %d", rs, max)
		}
		if reached && rs.running < floor {
			t.Fatalf("%s: fewer than %d running", rs, floor)
		}
		reached = reached || rs.running >= floor
		p := getService(t, ctl).GetProgress()
		ok := p.GetPhase() == persysv1.RolloutPhase_ROLLOUT_PHASE_COMPLETE && p.GetRevision() == rev &&
			rs.total == n && rs.images[image] == n && int(p.GetAvailable()) == n
		return ok, fmt.Sprintf("%s; progress %v", rs, p)
	})
}

// TestServiceLifecycle runs a service on a real scheduler with three sim
// agents: create, scale up and down, a rolling update, an update whose
// replicas fail (rolled back by itself), history, undo, and delete.
func TestServiceLifecycle(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := realsched.Start(t, realsched.Options{Nodes: []string{"n1", "n2", "n3"}, Config: func(cfg *scheduler.Config) {
		cfg.RetryBase, cfg.RetryMax, cfg.MaxAttempts = 50*time.Millisecond, 100*time.Millisecond, 2
		cfg.Registry = reg
	}})
	for _, n := range []string{"n1", "n2", "n3"} {
		c.StartAgent(t, n, sim.Options{FailImages: map[string]persysv1.FailureReason{
			"bad:1": persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR}})
	}
	ctl := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	resp, err := ctl.ApplyService(ctx, serviceRequest(3, "good:1"))
	if err != nil || resp.GetResult() != "created" {
		t.Fatalf("apply = %v, %v", resp, err)
	}
	waitComplete(t, ctl, 1, 3, "good:1", 4, 0)

	if _, err := ctl.ScaleService(ctx, &persysv1.ScaleServiceRequest{Name: "web", Replicas: 5}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, ctl, 1, 5, "good:1", 6, 3)
	if _, err := ctl.ScaleService(ctx, &persysv1.ScaleServiceRequest{Name: "web", Replicas: 2}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, ctl, 1, 2, "good:1", 5, 2)

	// A rolling update: never more than 3, never fewer than 2 running.
	if _, err := ctl.ApplyService(ctx, serviceRequest(2, "good:2")); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, ctl, 2, 2, "good:2", 3, 2)
	if p := getService(t, ctl).GetProgress(); p.GetCurrentGoodRevision() != 2 || p.GetPreviousGoodRevision() != 1 {
		t.Fatalf("good revisions after the update: %v", p)
	}

	// An update whose replicas fail: it stops after the surge replica and
	// rolls back to revision 2 by itself, with 2 running throughout.
	if _, err := ctl.ApplyService(ctx, serviceRequest(2, "bad:1")); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "web rolled back from revision 3", wait, func() (bool, string) {
		rs := replicasOf(t, ctl)
		if rs.total > 3 || rs.running < 2 {
			t.Fatalf("%s during the failed update: outside [2 running, 3 in all]", rs)
		}
		v := getService(t, ctl)
		img := v.GetService().GetSpec().GetTemplate().GetContainer().GetImage()
		return v.GetProgress().GetRolledBackFrom() == 3 && img == "good:2", fmt.Sprintf("%s; template %s; %v", rs, img, v.GetProgress())
	})
	waitComplete(t, ctl, 2, 2, "good:2", 3, 2)
	if got := gathered(t, reg, "persys_service_rollbacks_total"); got != 1 {
		t.Fatalf("persys_service_rollbacks_total = %v, want 1", got)
	}

	hist, err := ctl.RolloutHistory(ctx, &persysv1.GetServiceRequest{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	var images []string
	for _, r := range hist.GetRevisions() {
		images = append(images, fmt.Sprintf("%d:%s", r.GetNumber(), r.GetTemplate().GetContainer().GetImage()))
	}
	if strings.Join(images, " ") != "1:good:1 2:good:2 3:bad:1" {
		t.Fatalf("history = %v", images)
	}

	// Undo goes back to the revision before the current one (1).
	if _, err := ctl.RolloutUndo(ctx, &persysv1.RolloutUndoRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, ctl, 1, 2, "good:1", 3, 2)

	if _, err := ctl.DeleteService(ctx, &persysv1.DeleteServiceRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "web and its replicas gone", wait, func() (bool, string) {
		rs := replicasOf(t, ctl)
		_, err := ctl.GetService(ctx, &persysv1.GetServiceRequest{Name: "web"})
		return rs.total == 0 && status.Code(err) == codes.NotFound, fmt.Sprintf("%s; get: %v", rs, err)
	})
}

// TestApplyServiceRefusesInvalid: the gRPC boundary names the field.
func TestApplyServiceRefusesInvalid(t *testing.T) {
	c := realsched.Start(t, realsched.Options{})
	ctl := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := serviceRequest(-1, "good:1")
	_, err := ctl.ApplyService(ctx, req)
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "spec.replicas") {
		t.Fatalf("negative replicas: %v", err)
	}
	req = serviceRequest(2, "good:1")
	req.Spec.Update.MaxSurge = 0
	if _, err := ctl.ApplyService(ctx, req); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "spec.update.maxSurge") {
		t.Fatalf("both budgets 0: %v", err)
	}
	w := &persysv1.ApplyRequest{Name: "x", Spec: req.GetSpec().GetTemplate(), Owner: &persysv1.ServiceOwner{Service: "web"}}
	if _, err := ctl.ApplyWorkload(ctx, w); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "owner") {
		t.Fatalf("a workload with an owner from the wire: %v", err)
	}
}

// TestServiceSpread: maxPerNode 1 over three nodes puts one replica on
// each, and a fourth finds no node (spread limit) and stays pending.
func TestServiceSpread(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Nodes: []string{"n1", "n2", "n3"}})
	for _, n := range []string{"n1", "n2", "n3"} {
		c.StartAgent(t, n, sim.Options{})
	}
	ctl := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	req := serviceRequest(3, "good:1")
	req.Spec.Spread = &persysv1.ServiceSpread{MaxPerNode: 1}
	if _, err := ctl.ApplyService(ctx, req); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, ctl, 1, 3, "good:1", 4, 0)
	nodes := map[string]int{}
	resp, err := ctl.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{LabelSelector: map[string]string{servicectl.LabelService: "web"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range resp.GetWorkloads() {
		nodes[v.GetStatus().GetNodeId()]++
	}
	if len(nodes) != 3 {
		t.Fatalf("replicas by node %v, want one on each of three", nodes)
	}
	if _, err := ctl.ScaleService(ctx, &persysv1.ScaleServiceRequest{Name: "web", Replicas: 4}); err != nil {
		t.Fatal(err)
	}
	eventually.Eventually(t, "a fourth replica pending on the spread limit", wait, func() (bool, string) {
		resp, err := ctl.ListWorkloads(ctx, &persysv1.ListWorkloadsRequest{LabelSelector: map[string]string{servicectl.LabelService: "web"}})
		if err != nil {
			return false, err.Error()
		}
		for _, v := range resp.GetWorkloads() {
			if v.GetStatus().GetState() != persysv1.ActualState_ACTUAL_STATE_PENDING {
				continue
			}
			v, err := ctl.GetWorkload(ctx, &persysv1.GetWorkloadRequest{Name: v.GetWorkload().GetName()})
			if err != nil {
				return false, err.Error()
			}
			return strings.Contains(v.GetStatus().GetMessage(), "SPREAD_LIMIT"), v.GetStatus().GetMessage()
		}
		return false, fmt.Sprintf("%d replicas, none pending", len(resp.GetWorkloads()))
	})
}

// gathered is the value of the counter name in reg.
func gathered(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatalf("no series %s", name)
	return 0
}

// TestServiceDrain: a replica being removed leaves the endpoints (and a
// WatchServiceEndpoints stream sees it go) while its workload still
// stands, and is deleted only after the drain delay; deleting the
// service drains every replica the same way.
func TestServiceDrain(t *testing.T) {
	c := realsched.Start(t, realsched.Options{Nodes: []string{"n1"}})
	c.StartAgent(t, "n1", sim.Options{})
	ctl := c.Admin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	req := serviceRequest(3, "good:1")
	req.Spec.Update.DrainDelayMs = 1500
	if _, err := ctl.ApplyService(ctx, req); err != nil {
		t.Fatal(err)
	}
	waitComplete(t, ctl, 1, 3, "good:1", 4, 0)
	stream, err := ctl.WatchServiceEndpoints(ctx, &persysv1.ServiceEndpointsRequest{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	first, err := stream.Recv()
	if err != nil || first.GetType() != servicectl.EndpointsSnapshot || len(first.GetEndpoints()) != 3 {
		t.Fatalf("first watch message %v, %v: want a SNAPSHOT of 3", first, err)
	}

	// drained waits for a look at which n endpoints remain while more
	// replicas (not deleting) still stand, then for the replicas to go.
	drained := func(n int) {
		t.Helper()
		eventually.Eventually(t, fmt.Sprintf("%d endpoints while more replicas stand", n), wait, func() (bool, string) {
			eps, err := ctl.GetServiceEndpoints(ctx, &persysv1.ServiceEndpointsRequest{Name: "web"})
			if err != nil {
				return false, err.Error()
			}
			rs := replicasOf(t, ctl)
			return len(eps.GetEndpoints()) == n && rs.running > n, fmt.Sprintf("%d endpoints; %s", len(eps.GetEndpoints()), rs)
		})
	}
	if _, err := ctl.ScaleService(ctx, &persysv1.ScaleServiceRequest{Name: "web", Replicas: 1}); err != nil {
		t.Fatal(err)
	}
	drained(1)
	for last := first; len(last.GetEndpoints()) != 1; {
		next, err := stream.Recv()
		if err != nil || next.GetType() != servicectl.EndpointsUpdate || next.GetRevision() <= last.GetRevision() {
			t.Fatalf("watch after revision %d: %v, %v", last.GetRevision(), next, err)
		}
		last = next
	}
	waitComplete(t, ctl, 1, 1, "good:1", 4, 1)

	if _, err := ctl.DeleteService(ctx, &persysv1.DeleteServiceRequest{Name: "web"}); err != nil {
		t.Fatal(err)
	}
	drained(0)
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("watch: %v, want the empty set", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.NotFound {
		t.Fatalf("watch after the service went: %v, want NotFound", err)
	}
}
