package agent

import (
	"crypto/tls"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestValidAddress(t *testing.T) {
	tests := []struct {
		name, addr, wantErr string
	}{
		{name: "ip", addr: "10.0.0.1:7000"},
		{name: "dns", addr: "sched-1.example:7000"},
		{name: "ipv6", addr: "[::1]:7000"},
		{name: "no port", addr: "10.0.0.1", wantErr: "not host:port"},
		{name: "empty host", addr: ":7000", wantErr: "host is empty"},
		{name: "named port", addr: "a:http", wantErr: "port"},
		{name: "port zero", addr: "a:0", wantErr: "port"},
		{name: "port too big", addr: "a:70000", wantErr: "port"},
		{name: "too long", addr: strings.Repeat("a", 300) + ":1", wantErr: "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validAddress(tt.addr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("validAddress(%q): %v", tt.addr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validAddress(%q) = %v, want an error containing %q", tt.addr, err, tt.wantErr)
			}
		})
	}
}

func TestLeaderHint(t *testing.T) {
	tests := []struct {
		name string
		mds  []metadata.MD
		want string
	}{
		{name: "none", mds: []metadata.MD{nil, {}}},
		{name: "trailer", mds: []metadata.MD{metadata.Pairs(LeaderMetadataKey, "b:1"), nil}, want: "b:1"},
		{name: "header when the trailer has none", mds: []metadata.MD{{}, metadata.Pairs(LeaderMetadataKey, "c:1")}, want: "c:1"},
		{name: "trailer first", mds: []metadata.MD{metadata.Pairs(LeaderMetadataKey, "b:1"), metadata.Pairs(LeaderMetadataKey, "c:1")}, want: "b:1"},
		{name: "blank skipped", mds: []metadata.MD{metadata.Pairs(LeaderMetadataKey, " ", LeaderMetadataKey, "d:1")}, want: "d:1"},
		{name: "other keys ignored", mds: []metadata.MD{metadata.Pairs("x-other", "e:1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leaderHint(tt.mds...); got != tt.want {
				t.Fatalf("leaderHint = %q, want %q", got, tt.want)
			}
		})
	}
}

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

func TestSchedulersTarget(t *testing.T) {
	s, err := DialSchedulers([]string{"a:1", "b:1", "c:1"}, &tls.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	steps := []struct {
		name string
		do   func()
		want string
	}{
		{name: "starts at the first", do: func() {}, want: "a:1"},
		{name: "refusal without hint rotates", do: func() { s.rotate("a:1") }, want: "b:1"},
		{name: "stale rotation is ignored", do: func() { s.rotate("a:1") }, want: "b:1"},
		{name: "hint moves to an unlisted leader", do: func() { s.moveTo("b:1", "x:9") }, want: "x:9"},
		{name: "stale hint is ignored", do: func() { s.moveTo("b:1", "y:9") }, want: "x:9"},
		{name: "unlisted leader down: next listed after the last listed", do: func() { s.rotate("x:9") }, want: "c:1"},
		{name: "wraps around", do: func() { s.rotate("c:1") }, want: "a:1"},
		{name: "an answer sticks", do: func() { s.answered("b:1") }, want: "b:1"},
		{name: "and rotation continues from it", do: func() { s.rotate("b:1") }, want: "c:1"},
	}
	for _, st := range steps {
		st.do()
		if got := s.Leader(); got != st.want {
			t.Fatalf("%s: Leader = %s, want %s", st.name, got, st.want)
		}
	}
	// Connections are bounded for unlisted addresses.
	for i := range maxHintedConns {
		if _, err := s.client("h" + strings.Repeat("x", i) + ":1"); err != nil {
			t.Fatalf("hinted conn %d: %v", i, err)
		}
	}
	if _, err := s.client("one-too-many:1"); err == nil {
		t.Fatal("more hinted connections than the bound")
	}
	if _, err := s.client("a:1"); err != nil {
		t.Fatalf("listed address refused: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client("a:1"); err == nil {
		t.Fatal("client after Close")
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
