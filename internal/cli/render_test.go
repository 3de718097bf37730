package cli

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixedNow is the clock of every rendering test.
var fixedNow = time.Date(2026, 1, 2, 15, 4, 5, 0, time.UTC)

func ago(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(fixedNow.Add(-d)) }

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

const (
	gi = int64(1) << 30
	mi = int64(1) << 20
)

func fixtureRunning() *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{
			Name: "web", Uid: "0b7c6f9e-1", Labels: map[string]string{"app": "web", "tier": "front"},
			Revision: 3, CreatedAt: ago(3 * time.Hour), UpdatedAt: ago(5 * time.Minute),
			Spec: &persysv1.WorkloadSpec{
				Type:         persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
				DesiredState: persysv1.DesiredState_DESIRED_STATE_RUNNING,
				Resources:    &persysv1.Resources{CpuMillis: 500, MemoryBytes: 256 * mi, DiskBytes: gi},
				NodeSelector: map[string]string{"zone": "a"},
				Container: &persysv1.ContainerSpec{
					Image:   "example/web:1.4",
					Command: []string{"/bin/web"},
					Args:    []string{"--port", "8080"},
					Env:     map[string]string{"MODE": "prod", "LOG": "info"},
					Ports: []*persysv1.PortMapping{
						{ContainerPort: 8080, HostPort: 80, Protocol: "tcp"},
						{ContainerPort: 9090, HostIp: "127.0.0.1"},
						{ContainerPort: 9100, Protocol: "tcp", Dynamic: true},
					},
					Volumes:       []*persysv1.Volume{{Type: "bind", Source: "/srv/data", Target: "/data", ReadOnly: true}},
					RestartPolicy: "always",
				},
			},
		},
		Status: &persysv1.WorkloadStatus{
			Name: "web", State: persysv1.ActualState_ACTUAL_STATE_RUNNING, NodeId: "node-1",
			Revision: 3, RuntimeId: "4f1c2d", RestartCount: 1, UpdatedAt: ago(4 * time.Minute),
		},
		Assignment: &persysv1.Assignment{
			Name: "web", NodeId: "node-1", Revision: 3, PlacedAt: ago(5 * time.Minute), DynamicHostPorts: []uint32{20001},
			Decision: &persysv1.PlacementDecision{
				NodeId: "node-1", Score: 0.8125, FeasibleNodes: 1, TotalNodes: 3, Strategy: "spread",
				Rejections: []*persysv1.NodeRejection{
					{NodeId: "node-2", Reason: persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_MEMORY, Detail: "requested 256Mi, free 128Mi of 4Gi"},
					{NodeId: "node-3", Reason: persysv1.RejectReason_REJECT_REASON_SELECTOR_MISMATCH, Detail: "zone=a: node has zone=b"},
				},
			},
		},
		Events: []*persysv1.Event{
			{Time: ago(5 * time.Minute), Type: "Placed", Workload: "web", NodeId: "node-1", Revision: 3, Message: "placed on node-1 (1 of 3 nodes feasible)"},
			{Time: ago(4 * time.Minute), Type: "Applied", Workload: "web", NodeId: "node-1", Revision: 3, Message: "container 4f1c2d started"},
		},
	}
}

func fixtureFailed() *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{
			Name: "batch", Uid: "5d2e-2", Revision: 1, CreatedAt: ago(90 * time.Second),
			Spec: &persysv1.WorkloadSpec{
				Type:      persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
				Resources: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 3 * gi},
				Container: &persysv1.ContainerSpec{Image: "example/missing:latest"},
			},
		},
		Status: &persysv1.WorkloadStatus{
			Name: "batch", State: persysv1.ActualState_ACTUAL_STATE_FAILED, NodeId: "node-2", Revision: 1,
			Reason:  persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND,
			Message: "image example/missing:latest not found on node-2 and no registry is reachable", UpdatedAt: ago(30 * time.Second),
		},
		Events: []*persysv1.Event{
			{Time: ago(60 * time.Second), Type: "Failed", Workload: "batch", NodeId: "node-2", Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, Message: "attempt 3 of 3"},
		},
	}
}

func fixturePending() *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{
			Name: "queued", Revision: 2, CreatedAt: ago(50 * time.Hour),
			Spec: &persysv1.WorkloadSpec{Type: persysv1.WorkloadType_WORKLOAD_TYPE_VM},
		},
	}
}

func fixtureNodes() []*persysv1.Node {
	return []*persysv1.Node{
		{
			Id: "node-1", Address: "10.0.0.11:9500", State: persysv1.NodeState_NODE_STATE_READY,
			RegisteredAt: ago(26 * time.Hour), LastHeartbeat: ago(3 * time.Second),
			Capabilities: &persysv1.NodeCapabilities{
				Capacity: &persysv1.Resources{CpuMillis: 4000, MemoryBytes: 16 * gi, DiskBytes: 100 * gi},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE},
				Labels:   map[string]string{"zone": "a"}, Os: "linux", Arch: "amd64", Hostname: "host-1",
				DynamicPorts: &persysv1.PortRange{First: 20000, Last: 32000},
			},
			Allocated: &persysv1.Resources{CpuMillis: 500, MemoryBytes: 256 * mi, DiskBytes: gi},
			Usage:     &persysv1.Resources{CpuMillis: 120, MemoryBytes: 1288490189, DiskBytes: 5 * gi},
		},
		{
			Id: "node-2", State: persysv1.NodeState_NODE_STATE_NOT_READY, Cordoned: true,
			RegisteredAt: ago(10 * 24 * time.Hour),
			Capabilities: &persysv1.NodeCapabilities{
				Capacity: &persysv1.Resources{CpuMillis: 1500, MemoryBytes: 4 * gi},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
			},
		},
		{
			Id: "node-3", State: persysv1.NodeState_NODE_STATE_READY, Cordoned: true, Draining: true,
			RegisteredAt: ago(2 * time.Hour),
			Capabilities: &persysv1.NodeCapabilities{
				Capacity: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 8 * gi},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
			},
			Allocated: &persysv1.Resources{CpuMillis: 250, MemoryBytes: 64 * mi},
		},
		{
			Id: "node-4", State: persysv1.NodeState_NODE_STATE_READY, Cordoned: true,
			RegisteredAt: ago(3 * time.Hour),
			Capabilities: &persysv1.NodeCapabilities{
				Capacity: &persysv1.Resources{CpuMillis: 2000, MemoryBytes: 8 * gi},
				Runtimes: []persysv1.WorkloadType{persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER},
			},
		},
	}
}

// fixtureMoving is a workload being drained off node-1 whose apply on
// node-2 failed twice and is retried.
func fixtureMoving() *persysv1.WorkloadView {
	return &persysv1.WorkloadView{
		Workload: &persysv1.Workload{
			Name: "api", Uid: "7a1b-3", Revision: 4, CreatedAt: ago(26 * time.Hour), UpdatedAt: ago(26 * time.Hour),
			Spec: &persysv1.WorkloadSpec{
				Type:           persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER,
				DesiredState:   persysv1.DesiredState_DESIRED_STATE_RUNNING,
				NodeLossPolicy: persysv1.NodeLossPolicy_NODE_LOSS_POLICY_RESCHEDULE,
				Resources:      &persysv1.Resources{CpuMillis: 250, MemoryBytes: 128 * mi},
				Container:      &persysv1.ContainerSpec{Image: "example/api:2", RestartPolicy: "on-failure"},
			},
		},
		Status: &persysv1.WorkloadStatus{
			Name: "api", State: persysv1.ActualState_ACTUAL_STATE_SCHEDULED, NodeId: "node-2", Revision: 4,
			Reason:   persysv1.FailureReason_FAILURE_REASON_AGENT_UNREACHABLE,
			Message:  "node-2: connection refused",
			Attempts: 2, NextAttemptAt: timestamppb.New(fixedNow.Add(40 * time.Second)), UpdatedAt: ago(20 * time.Second),
		},
		Assignment: &persysv1.Assignment{
			Name: "api", NodeId: "node-2", PreviousNodeId: "node-1", Cause: "drain", Revision: 4, PlacedAt: ago(90 * time.Second),
			Decision: &persysv1.PlacementDecision{
				NodeId: "node-2", Score: 0.5, FeasibleNodes: 1, TotalNodes: 2, Strategy: "spread",
				Rejections: []*persysv1.NodeRejection{
					{NodeId: "node-1", Reason: persysv1.RejectReason_REJECT_REASON_NODE_DRAINING, Detail: "node is being drained"},
				},
			},
		},
		Events: []*persysv1.Event{
			{Time: ago(90 * time.Second), Type: "Placed", Workload: "api", NodeId: "node-2", Revision: 4, Message: "moving off node-1 (drain)"},
		},
	}
}

func fixtureDrain(complete bool) *persysv1.DrainResponse {
	r := &persysv1.DrainResponse{
		Node:     &persysv1.Node{Id: "node-1", State: persysv1.NodeState_NODE_STATE_READY, Cordoned: true},
		Complete: complete,
		Workloads: []*persysv1.DrainResult{
			{Workload: "api", Result: "moved", ToNode: "node-2"},
			{Workload: "web", Result: "moved", ToNode: "node-3"},
		},
	}
	if !complete {
		r.Workloads = append(r.Workloads,
			&persysv1.DrainResult{Workload: "db", Result: "unmoved", Reason: persysv1.FailureReason_FAILURE_REASON_NO_FEASIBLE_NODE, Message: "no other node has 4Gi of memory free"},
			&persysv1.DrainResult{Workload: "cache", Result: "unmoved", Reason: persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND})
	}
	return r
}

func fixtureSummary() *persysv1.ClusterSummary {
	return &persysv1.ClusterSummary{
		NodesTotal: 3, NodesReady: 2, WorkloadsTotal: 5, Leader: "scheduler-a",
		WorkloadsByState: map[string]int32{"ACTUAL_STATE_RUNNING": 3, "ACTUAL_STATE_FAILED": 1, "ACTUAL_STATE_PENDING": 1},
		Capacity:         &persysv1.Resources{CpuMillis: 8000, MemoryBytes: 24 * gi, DiskBytes: 200 * gi},
		Allocated:        &persysv1.Resources{CpuMillis: 2500, MemoryBytes: 3*gi + 256*mi},
	}
}

func TestRenderGolden(t *testing.T) {
	views := []*persysv1.WorkloadView{fixtureRunning(), fixtureFailed(), fixturePending()}
	events := append(fixtureRunning().GetEvents(), fixtureFailed().GetEvents()...)
	tests := []struct {
		name   string
		render func(*bytes.Buffer) error
	}{
		{"workloads.table", func(b *bytes.Buffer) error { return printWorkloadsTable(b, views, fixedNow) }},
		{"workloads.json", func(b *bytes.Buffer) error {
			return printObject(b, FormatJSON, &persysv1.ListWorkloadsResponse{Workloads: views})
		}},
		{"workloads.yaml", func(b *bytes.Buffer) error {
			return printObject(b, FormatYAML, &persysv1.ListWorkloadsResponse{Workloads: views})
		}},
		{"workloads-empty.table", func(b *bytes.Buffer) error { return printWorkloadsTable(b, nil, fixedNow) }},
		{"nodes.table", func(b *bytes.Buffer) error { return printNodesTable(b, fixtureNodes(), fixedNow) }},
		{"node.yaml", func(b *bytes.Buffer) error { return printObject(b, FormatYAML, fixtureNodes()[0]) }},
		{"describe-workload-running", func(b *bytes.Buffer) error { return printDescribeWorkload(b, fixtureRunning(), fixedNow) }},
		{"describe-workload-failed", func(b *bytes.Buffer) error { return printDescribeWorkload(b, fixtureFailed(), fixedNow) }},
		{"describe-workload-health", func(b *bytes.Buffer) error { return printDescribeWorkload(b, fixtureHealth(), fixedNow) }},
		{"describe-workload-liveness-failed", func(b *bytes.Buffer) error {
			return printDescribeWorkload(b, fixtureLivenessFailed(), fixedNow)
		}},
		{"describe-workload-pending", func(b *bytes.Buffer) error { return printDescribeWorkload(b, fixturePending(), fixedNow) }},
		{"describe-workload-moving", func(b *bytes.Buffer) error { return printDescribeWorkload(b, fixtureMoving(), fixedNow) }},
		{"drain-complete", func(b *bytes.Buffer) error { return printDrain(b, fixtureDrain(true)) }},
		{"drain-incomplete", func(b *bytes.Buffer) error { return printDrain(b, fixtureDrain(false)) }},
		{"drain-empty", func(b *bytes.Buffer) error {
			return printDrain(b, &persysv1.DrainResponse{Node: &persysv1.Node{Id: "node-9"}, Complete: true})
		}},
		{"leader", func(b *bytes.Buffer) error {
			return printLeader(b, &persysv1.LeaderInfo{Id: "scheduler-a", Address: "10.0.0.1:9443", IsLeader: true})
		}},
		{"leader-none", func(b *bytes.Buffer) error { return printLeader(b, &persysv1.LeaderInfo{}) }},
		{"describe-node", func(b *bytes.Buffer) error {
			return printDescribeNode(b, fixtureNodes()[0], views, fixedNow)
		}},
		{"describe-node-empty", func(b *bytes.Buffer) error {
			return printDescribeNode(b, fixtureNodes()[1], nil, fixedNow)
		}},
		{"summary", func(b *bytes.Buffer) error { return printSummary(b, fixtureSummary()) }},
		{"summary.json", func(b *bytes.Buffer) error { return printObject(b, FormatJSON, fixtureSummary()) }},
		{"events.table", func(b *bytes.Buffer) error { return printEventsTable(b, events, fixedNow, "") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := tt.render(&b); err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name, b.Bytes())
		})
	}
}

func TestEnumName(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"state", enumName(persysv1.ActualState_ACTUAL_STATE_RUNNING), "RUNNING"},
		{"reason", enumName(persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND), "IMAGE_NOT_FOUND"},
		{"node state", enumName(persysv1.NodeState_NODE_STATE_NOT_READY), "NOT_READY"},
		{"reject", enumName(persysv1.RejectReason_REJECT_REASON_INSUFFICIENT_CPU), "INSUFFICIENT_CPU"},
		{"type", enumName(persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE), "COMPOSE"},
		{"unspecified", enumName(persysv1.FailureReason_FAILURE_REASON_UNSPECIFIED), "-"},
		{"unknown number", enumName(persysv1.ActualState(99)), "99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Errorf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
}

func TestAgeAndBytes(t *testing.T) {
	ages := []struct {
		name string
		d    time.Duration
		want string
	}{
		{"seconds", 45 * time.Second, "45s"},
		{"under two minutes", 119 * time.Second, "119s"},
		{"minutes", 12 * time.Minute, "12m"},
		{"hours", 5 * time.Hour, "5h"},
		{"days", 72 * time.Hour, "3d"},
		{"years", 3 * 365 * 24 * time.Hour, "3y"},
		{"future clamps", -time.Hour, "0s"},
	}
	whens := []struct {
		name string
		t    *timestamppb.Timestamp
		want string
	}{
		{"future", timestamppb.New(fixedNow.Add(40 * time.Second)), "2026-01-02T15:04:45Z (in 40s)"},
		{"far future", timestamppb.New(fixedNow.Add(3 * time.Hour)), "2026-01-02T18:04:05Z (in 3h)"},
		{"past", ago(5 * time.Minute), "2026-01-02T14:59:05Z (5m ago)"},
		{"now", timestamppb.New(fixedNow), "2026-01-02T15:04:05Z (0s ago)"},
		{"unset", nil, "-"},
	}
	for _, tt := range whens {
		t.Run("when "+tt.name, func(t *testing.T) {
			if got := when(fixedNow, tt.t); got != tt.want {
				t.Errorf("when = %q, want %q", got, tt.want)
			}
		})
	}
	for _, tt := range ages {
		t.Run("age "+tt.name, func(t *testing.T) {
			if got := age(fixedNow, ago(tt.d)); got != tt.want {
				t.Errorf("age(%s) = %q, want %q", tt.d, got, tt.want)
			}
		})
	}
	if got := age(fixedNow, nil); got != "-" {
		t.Errorf("age(nil) = %q", got)
	}
	sizes := []struct {
		name string
		in   int64
		want string
	}{
		{"zero", 0, "0"},
		{"bytes", 512, "512"},
		{"exact", 64 * mi, "64Mi"},
		{"fraction", 1288490189, "1.2Gi"},
		{"negative", -2 * gi, "-2Gi"},
	}
	for _, tt := range sizes {
		t.Run("bytes "+tt.name, func(t *testing.T) {
			if got := humanBytes(tt.in); got != tt.want {
				t.Errorf("humanBytes(%d) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// fixtureHealth is a running workload with every kind of check, not ready.
func fixtureHealth() *persysv1.WorkloadView {
	v := fixtureRunning()
	spec := v.Workload.Spec
	spec.StartupCheck = &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_TCP, Port: 8080, FailureThreshold: 30}
	spec.LivenessCheck = &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_EXEC, Command: []string{"/bin/web", "check"},
		IntervalSeconds: 20, StartPeriodSeconds: 15}
	spec.ReadinessCheck = &persysv1.HealthCheck{Type: persysv1.HealthCheckType_HEALTH_CHECK_TYPE_HTTP, Port: 8080, Path: "/ready",
		ExpectedStatusMin: 200, ExpectedStatusMax: 299, SuccessThreshold: 2}
	v.Status.Health = persysv1.HealthState_HEALTH_STATE_UNHEALTHY
	v.Status.HealthCheck = "readiness"
	v.Status.HealthOutput = "HTTP 503: warming\n  up"
	v.Status.HealthCheckedAt = ago(30 * time.Second)
	return v
}

// fixtureLivenessFailed is a workload the agent stopped after its
// liveness check failed.
func fixtureLivenessFailed() *persysv1.WorkloadView {
	v := fixtureHealth()
	v.Workload.Spec.StartupCheck, v.Workload.Spec.ReadinessCheck = nil, nil
	v.Status.State = persysv1.ActualState_ACTUAL_STATE_FAILED
	v.Status.Reason = persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED
	v.Status.Message = "liveness check failed: exit code 1: broken"
	v.Status.Attempts = 1
	v.Status.HealthCheck = "liveness"
	v.Status.HealthOutput = "exit code 1: broken"
	return v
}

func TestFederatedNodesTable(t *testing.T) {
	nodes := []*persysv1.Node{
		{Id: "n1", State: persysv1.NodeState_NODE_STATE_READY, Capabilities: &persysv1.NodeCapabilities{Labels: map[string]string{fedapi.LabelCluster: "east"}}},
		{Id: "n1", State: persysv1.NodeState_NODE_STATE_READY, Capabilities: &persysv1.NodeCapabilities{Labels: map[string]string{fedapi.LabelCluster: "west"}}},
	}
	var b bytes.Buffer
	if err := printNodes(&b, "", nodes, time.Now()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "CLUSTER") || !strings.HasPrefix(lines[1], "east") || !strings.HasPrefix(lines[2], "west") {
		t.Fatalf("federated nodes table:\n%s", b.String())
	}
	// A member's own nodes carry no cluster label: no CLUSTER column.
	b.Reset()
	if err := printNodes(&b, "", []*persysv1.Node{{Id: "n1"}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "CLUSTER") {
		t.Fatalf("a member's nodes table has a CLUSTER column:\n%s", b.String())
	}
}
