package agent

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestDialSchedulersValidates(t *testing.T) {
	cfg := &tls.Config{}
	tests := []struct {
		name    string
		addrs   []string
		tls     *tls.Config
		wantErr string
		want    []string
	}{
		{name: "one", addrs: []string{"a:1"}, tls: cfg, want: []string{"a:1"}},
		{name: "trimmed and deduplicated", addrs: []string{" a:1", "b:2 ", "a:1"}, tls: cfg, want: []string{"a:1", "b:2"}},
		{name: "none", tls: cfg, wantErr: "address is required"},
		{name: "no TLS", addrs: []string{"a:1"}, wantErr: "TLS"},
		{name: "bad second", addrs: []string{"a:1", "b"}, tls: cfg, wantErr: `address 2 "b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := DialSchedulers(tt.addrs, tt.tls)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("DialSchedulers error = %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Addresses(); strings.Join(got, ",") != strings.Join(tt.want, ",") {
				t.Fatalf("Addresses = %v, want %v", got, tt.want)
			}
			if s.Leader() != tt.want[0] {
				t.Fatalf("Leader = %s, want the first address", s.Leader())
			}
		})
	}
}

func TestZombiesOverlay(t *testing.T) {
	since := time.Unix(1700000000, 0)
	z := zombie{runtime: persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER, uid: "u", revision: 2, runtimeID: "c1",
		detail: "process 42 is a zombie (state Z)", since: since}
	running := func(id string) *persysv1.WorkloadStatus {
		return &persysv1.WorkloadStatus{Name: "web", Uid: "u", Revision: 2, RuntimeId: id,
			State: persysv1.ActualState_ACTUAL_STATE_RUNNING}
	}
	tests := []struct {
		name     string
		in       []*persysv1.WorkloadStatus
		want     persysv1.ActualState // of web; UNSPECIFIED when absent
		wantKept bool
	}{
		{name: "same instance still running is reported failed", in: []*persysv1.WorkloadStatus{running("c1")},
			want: persysv1.ActualState_ACTUAL_STATE_FAILED, wantKept: true},
		{name: "replaced instance is the truth", in: []*persysv1.WorkloadStatus{running("c2")},
			want: persysv1.ActualState_ACTUAL_STATE_RUNNING},
		{name: "exited instance is the truth", in: []*persysv1.WorkloadStatus{{Name: "web", Uid: "u", Revision: 2, RuntimeId: "c1",
			State: persysv1.ActualState_ACTUAL_STATE_FAILED, Reason: persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED}},
			want: persysv1.ActualState_ACTUAL_STATE_FAILED},
		{name: "other revision is the truth", in: []*persysv1.WorkloadStatus{{Name: "web", Uid: "u", Revision: 3, RuntimeId: "c1",
			State: persysv1.ActualState_ACTUAL_STATE_RUNNING}}, want: persysv1.ActualState_ACTUAL_STATE_RUNNING},
		{name: "gone", in: []*persysv1.WorkloadStatus{{Name: "db", State: persysv1.ActualState_ACTUAL_STATE_RUNNING}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			zs := newZombies()
			if !zs.add("web", z) || zs.add("web", z) {
				t.Fatal("add: want new the first time only")
			}
			before := make([]*persysv1.WorkloadStatus, len(tt.in))
			copy(before, tt.in)
			out := zs.overlay(tt.in)
			var web *persysv1.WorkloadStatus
			for _, w := range out {
				if w.GetName() == "web" {
					web = w
				}
			}
			if web.GetState() != tt.want {
				t.Fatalf("web = %v, want state %s", web, tt.want)
			}
			_, kept := zs.get("web")
			if kept != tt.wantKept {
				t.Fatalf("zombie kept = %v, want %v", kept, tt.wantKept)
			}
			if tt.wantKept {
				if web.GetReason() != persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR ||
					web.GetMessage() != ZombiePrefix+z.detail || !web.GetUpdatedAt().AsTime().Equal(since) ||
					web.GetRuntimeId() != "c1" {
					t.Fatalf("zombie reported as %v", web)
				}
				if before[0].GetState() != persysv1.ActualState_ACTUAL_STATE_RUNNING {
					t.Fatal("overlay changed the runtime's status in place")
				}
			} else if web != nil && web != before[0] {
				t.Fatal("a status that is not a zombie was replaced")
			}
		})
	}
}
