package leaderconn_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/metadata"

	"github.com/persys-dev/compute/api/persys/contract"
	"github.com/persys-dev/compute/internal/leaderconn"
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
		{name: "blank host", addr: " :7000", wantErr: "host is empty"},
		{name: "named port", addr: "a:http", wantErr: "port"},
		{name: "port zero", addr: "a:0", wantErr: "port"},
		{name: "port too big", addr: "a:70000", wantErr: "port"},
		{name: "too long", addr: strings.Repeat("a", 300) + ":1", wantErr: "longer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := leaderconn.ValidAddress(tt.addr)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ValidAddress(%q): %v", tt.addr, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ValidAddress(%q) = %v, want an error containing %q", tt.addr, err, tt.wantErr)
			}
		})
	}
}

func TestLeaderHint(t *testing.T) {
	const k = contract.MetadataLeader
	tests := []struct {
		name string
		mds  []metadata.MD
		want string
	}{
		{name: "none", mds: []metadata.MD{nil, {}}},
		{name: "first md", mds: []metadata.MD{metadata.Pairs(k, "b:1"), nil}, want: "b:1"},
		{name: "second when the first has none", mds: []metadata.MD{{}, metadata.Pairs(k, "c:1")}, want: "c:1"},
		{name: "first wins", mds: []metadata.MD{metadata.Pairs(k, "b:1"), metadata.Pairs(k, "c:1")}, want: "b:1"},
		{name: "blank skipped", mds: []metadata.MD{metadata.Pairs(k, " ", k, "d:1")}, want: "d:1"},
		{name: "other keys ignored", mds: []metadata.MD{metadata.Pairs("x-other", "e:1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := leaderconn.LeaderHint(tt.mds...); got != tt.want {
				t.Fatalf("LeaderHint = %q, want %q", got, tt.want)
			}
		})
	}
}
