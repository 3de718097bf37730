package main

import (
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/bench"
)

func TestBenchNodeCapacityFlags(t *testing.T) {
	tests := []struct {
		name, cpu, memory string
		wantCPU, wantMem  int64
		wantErr           string
	}{
		{"defaults", "4", "8Gi", 4000, 8 << 30, ""},
		{"density", "64", "64Gi", 64000, 64 << 30, ""},
		{"millicores", "2500m", "512Mi", 2500, 512 << 20, ""},
		{"bad cpu", "four", "8Gi", 0, 0, "--node-cpu"},
		{"zero cpu", "0", "8Gi", 0, 0, "--node-cpu"},
		{"bad memory", "4", "lots", 0, 0, "--node-memory"},
		{"zero memory", "4", "0", 0, 0, "--node-memory"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c bench.ClusterOptions
			err := nodeCapacity(&c, tc.cpu, tc.memory)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.NodeCPUMillis != tc.wantCPU || c.NodeMemoryBytes != tc.wantMem {
				t.Fatalf("capacity %dm, %d bytes (err %v), want %dm, %d bytes", c.NodeCPUMillis, c.NodeMemoryBytes, err, tc.wantCPU, tc.wantMem)
			}
		})
	}
	// The flags reach the throughput command.
	cmd := newBenchCommand()
	tp, _, err := cmd.Find([]string{bench.ScenarioThroughput})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"node-cpu", "node-memory", "stall-after", "idle-sample"} {
		if tp.Flags().Lookup(name) == nil {
			t.Errorf("throughput has no --%s", name)
		}
	}
}

func TestBenchSchedulerMemoryLimitFlag(t *testing.T) {
	tp, _, err := newBenchCommand().Find([]string{bench.ScenarioThroughput})
	if err != nil {
		t.Fatal(err)
	}
	f := tp.Flags().Lookup("scheduler-memory-limit")
	if f == nil {
		t.Fatal("throughput has no --scheduler-memory-limit")
	}
	if f.DefValue != "0" {
		t.Errorf("default %q, want 0 (no limit)", f.DefValue)
	}
	if err := tp.Flags().Set("scheduler-memory-limit", "1GiB"); err != nil || f.Value.String() != "1GiB" {
		t.Errorf("--scheduler-memory-limit 1GiB: %v, value %s", err, f.Value)
	}
	if err := tp.ParseFlags([]string{"--scheduler-memory-limit", "1GB"}); err == nil || !strings.Contains(err.Error(), "--scheduler-memory-limit") {
		t.Errorf("--scheduler-memory-limit 1GB: %v, want an error naming the flag", err)
	}
}

func TestBenchEtcdQuotaFlag(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    int64
		wantErr string
	}{
		{"", 0, ""},
		{"8GiB", 8 << 30, ""},
		{"8Gi", 8 << 30, ""},
		{"512MiB", 512 << 20, ""},
		{"4294967296", 4 << 30, ""},
		{"lots", 0, "--etcd-quota"},
		{"1Ki", 0, "at least 1MiB"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var c bench.ClusterOptions
			err := parseEtcdQuota(&c, tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil || c.EtcdQuotaBytes != tc.want {
				t.Fatalf("quota %d (err %v), want %d", c.EtcdQuotaBytes, err, tc.want)
			}
		})
	}
	tp, _, _ := newBenchCommand().Find([]string{bench.ScenarioThroughput})
	for _, name := range []string{"etcd-quota", "timeline-every", "mtls", "scheduler-process"} {
		if tp.Flags().Lookup(name) == nil {
			t.Errorf("throughput has no --%s", name)
		}
	}
}
