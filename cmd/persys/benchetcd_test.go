package main

import (
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/bench"
)

func TestBenchEtcdFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		e       etcdFlags
		wantErr string
	}{
		{"embedded", etcdFlags{}, ""},
		{"three members", etcdFlags{members: 3}, ""},
		{"profiled", etcdFlags{members: 5, profileDir: "p"}, ""},
		{"even", etcdFlags{members: 2}, "--etcd-members 2"},
		{"negative", etcdFlags{members: -1}, "--etcd-members -1"},
		{"profile without members", etcdFlags{profileDir: "p"}, "--etcd-cpuprofile-dir"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.e.validate()
			if tc.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one naming %s", err, tc.wantErr)
			}
		})
	}
	cmd := newBenchCommand()
	for _, c := range []struct {
		sub   string
		flags []string
	}{
		{bench.ScenarioThroughput, []string{"etcd-members", "etcd-cpuprofile-dir", "etcd-no-fsync"}},
		{"burst", []string{"workloads", "rounds", "image", "docker-concurrency", "data-dir", "json"}},
	} {
		sub, _, err := cmd.Find([]string{c.sub})
		if err != nil || sub.Name() != c.sub {
			t.Fatalf("bench %s: %v", c.sub, err)
		}
		for _, f := range c.flags {
			if sub.Flags().Lookup(f) == nil {
				t.Errorf("bench %s has no --%s", c.sub, f)
			}
		}
	}
	lat, _, _ := cmd.Find([]string{bench.ScenarioLatency})
	if lat.Flags().Lookup("etcd-members") != nil {
		t.Error("latency takes --etcd-members, which only throughput honours")
	}
}
