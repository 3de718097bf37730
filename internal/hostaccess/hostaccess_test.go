package hostaccess

import (
	"strings"
	"testing"
)

func TestHostField(t *testing.T) {
	tests := []struct {
		name  string
		needs Needs
		field string
		host  bool
	}{
		{"nothing", Needs{}, "", false},
		{"high port", Needs{Ports: []Port{{Port: 8080, Field: "p0"}}}, "", false},
		{"low port", Needs{Ports: []Port{{Port: 8080, Field: "p0"}, {Port: 80, Field: "p1"}}}, "p1", true},
		{"host path", Needs{HostPaths: []Path{{Path: "/", Field: "v0"}}}, "v0", true},
		{"privileged first", Needs{Privileged: true, PrivilegedField: "priv", HostPaths: []Path{{Path: "/", Field: "v0"}}}, "priv", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			field, _, ok := tt.needs.HostField()
			if ok != tt.host || field != tt.field || tt.needs.Host() != tt.host {
				t.Fatalf("HostField = %q, %v; want %q, %v", field, ok, tt.field, tt.host)
			}
		})
	}
}

func TestPolicyAdmits(t *testing.T) {
	data := Policy{AllowHostPaths: []string{"/srv/data"}}
	tests := []struct {
		name   string
		policy Policy
		needs  Needs
		field  string
	}{
		{"default refuses privileged", Policy{}, Needs{Privileged: true, PrivilegedField: "spec.container.privileged"}, "spec.container.privileged"},
		{"allowed privileged", Policy{AllowPrivileged: true}, Needs{Privileged: true, PrivilegedField: "x"}, ""},
		{"default refuses any path", Policy{}, Needs{HostPaths: []Path{{Path: "/srv/data", Field: "v0"}}}, "v0"},
		{"under prefix", data, Needs{HostPaths: []Path{{Path: "/srv/data/a/b", Field: "v0"}}}, ""},
		{"prefix itself", data, Needs{HostPaths: []Path{{Path: "/srv/data", Field: "v0"}}}, ""},
		{"sibling with same prefix", data, Needs{HostPaths: []Path{{Path: "/srv/database", Field: "v0"}}}, "v0"},
		{"climbs out", data, Needs{HostPaths: []Path{{Path: "/srv/data/../../etc", Field: "v0"}}}, "v0"},
		{"relative", data, Needs{HostPaths: []Path{{Path: "srv/data", Field: "v0"}}}, "v0"},
		{"root", data, Needs{HostPaths: []Path{{Path: "/", Field: "v0"}}}, "v0"},
		{"second path refused", data, Needs{HostPaths: []Path{{Path: "/srv/data/x", Field: "v0"}, {Path: "/etc", Field: "v1"}}}, "v1"},
		{"low port needs no node policy", Policy{}, Needs{Ports: []Port{{Port: 80, Field: "p"}}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, ok := tt.policy.Admits(tt.needs)
			if ok != (tt.field == "") || d.Field != tt.field {
				t.Fatalf("Admits = %+v, %v; want field %q", d, ok, tt.field)
			}
			if !ok && d.Reason == "" {
				t.Fatal("a denial must say why")
			}
		})
	}
}

func TestPortConflicts(t *testing.T) {
	tests := []struct {
		a, b Port
		want bool
	}{
		{Port{Port: 80}, Port{Port: 80}, true},
		{Port{Port: 80}, Port{Port: 80, Protocol: "udp"}, false},
		{Port{Port: 80, Protocol: "TCP"}, Port{Port: 80}, true},
		{Port{Port: 80, HostIP: "127.0.0.1"}, Port{Port: 80, HostIP: "127.0.0.2"}, false},
		{Port{Port: 80, HostIP: "127.0.0.1"}, Port{Port: 80}, true},
		{Port{Port: 80, HostIP: "0.0.0.0"}, Port{Port: 80, HostIP: "10.0.0.1"}, true},
		{Port{Port: 80}, Port{Port: 81}, false},
		{Port{Port: 0}, Port{Port: 0}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Conflicts(tt.b); got != tt.want || tt.b.Conflicts(tt.a) != tt.want {
			t.Errorf("%s vs %s: Conflicts = %v, want %v (both ways)", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestValidatePolicyPath(t *testing.T) {
	for _, p := range []string{"/srv", "/", "/a/b"} {
		if err := ValidatePolicyPath(p); err != nil {
			t.Errorf("%q: %v", p, err)
		}
	}
	for _, p := range []string{"", "srv", "/srv/", "/a/../b", "/a//b"} {
		if err := ValidatePolicyPath(p); err == nil {
			t.Errorf("%q: accepted", p)
		}
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want PortRange
		err  string
	}{
		{in: "20000-32000", want: PortRange{20000, 32000}},
		{in: "80-80", want: PortRange{80, 80}},
		{in: "", want: PortRange{}},
		{in: "off", want: PortRange{}},
		{in: "20000", err: "must be FIRST-LAST"},
		{in: "0-10", err: "between 1 and 65535"},
		{in: "1-70000", err: "between 1 and 65535"},
		{in: "a-b", err: "between 1 and 65535"},
		{in: "30000-20000", err: "must not be above"},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParsePortRange(%q) error %v, want one containing %q", tt.in, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
		if back, _ := ParsePortRange(got.String()); back != got {
			t.Errorf("String %q does not parse back to %v", got.String(), got)
		}
	}
}

// The agent warns when its dynamic ports overlap the kernel's ephemeral
// range: Overlaps must see any shared port, and no range overlaps none.
func TestPortRangeOverlaps(t *testing.T) {
	eph := PortRange{First: 32768, Last: 60999}
	for _, c := range []struct {
		r    PortRange
		want bool
	}{
		{DefaultDynamicPorts, false},
		{PortRange{30000, 32768}, true},
		{PortRange{60999, 61000}, true},
		{PortRange{40000, 40010}, true},
		{PortRange{61000, 62000}, false},
		{PortRange{}, false},
	} {
		if got := c.r.Overlaps(eph); got != c.want {
			t.Errorf("%v overlaps %v: %v, want %v", c.r, eph, got, c.want)
		}
	}
	if r, ok := EphemeralPorts(); ok && (r.First == 0 || r.First > r.Last) {
		t.Errorf("ephemeral range read as %v", r)
	}
}
