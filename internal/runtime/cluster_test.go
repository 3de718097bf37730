package runtime

import "testing"

func TestClusterOwns(t *testing.T) {
	set := func(id string, adopt bool) *Cluster {
		c := NewCluster()
		c.Set(id, adopt)
		return c
	}
	for _, tc := range []struct {
		name    string
		c       *Cluster
		label   string
		owns    bool
		shortID string
	}{
		{"unscoped runtime owns everything", nil, "any-cluster", true, ""},
		{"own cluster", set("cluster-a-0123456789", false), "cluster-a-0123456789", true, "cluster-a-01"},
		{"another cluster", set("cluster-a-0123456789", true), "cluster-b-0123456789", false, "cluster-a-01"},
		{"unlabelled, not adopted", set("cluster-a-0123456789", false), "", false, "cluster-a-01"},
		{"unlabelled, adopted", set("cluster-a-0123456789", true), "", true, "cluster-a-01"},
		{"id unknown: no labelled object", set("", true), "cluster-a-0123456789", false, ""},
		{"id unknown: adopted unlabelled", set("", true), "", true, ""},
		{"id unknown: nothing without adoption", NewCluster(), "", false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.c.Owns(tc.label); got != tc.owns {
				t.Errorf("Owns(%q) = %v, want %v", tc.label, got, tc.owns)
			}
			if got := tc.c.Short(); got != tc.shortID {
				t.Errorf("Short() = %q, want %q", got, tc.shortID)
			}
		})
	}
}
