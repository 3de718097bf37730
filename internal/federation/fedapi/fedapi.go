// Package fedapi owns the JSON shapes of the federation API: what
// `persys federation join` sends, what GET /v1/clusters answers and the
// member health states. The federation server, its client and persysctl
// share these types; nothing here does I/O.
package fedapi

import "time"

// State is a member's health as the federation sees it.
type State string

// Member states, in the order a new member usually goes through them.
const (
	// StatePending: joined, not probed yet.
	StatePending State = "Pending"
	// StateReady: the last probe reached the member's gateway.
	StateReady State = "Ready"
	// StateUnreachable: probes fail, for less than the grace period.
	StateUnreachable State = "Unreachable"
	// StateLost: no contact for longer than the grace period; the member's
	// federated work is to be placed elsewhere (later slices).
	StateLost State = "Lost"
)

// JoinRequest is the body of POST /v1/clusters: a member cluster's name,
// its gateway and the identity that member issued to the federation, as
// PEM text (the federation keeps them in its own store).
type JoinRequest struct {
	Name    string `json:"name"`
	Gateway string `json:"gateway"`
	// CA is the member's CA bundle: the member gateway's certificate must
	// chain to it.
	CA string `json:"ca"`
	// Cert and Key are the federation's client identity at the member,
	// issued by the member's CA.
	Cert string `json:"cert"`
	Key  string `json:"key"`
	// Labels describe the member (region=eu); placements select
	// members by them.
	Labels map[string]string `json:"labels,omitempty"`
}

// LabelsRequest is the body of POST /v1/clusters/{name}/labels: labels
// to set (a new value replaces the old) and label keys to remove.
type LabelsRequest struct {
	Set    map[string]string `json:"set,omitempty"`
	Remove []string          `json:"remove,omitempty"`
}

// Cluster is one member as GET /v1/clusters shows it. It never carries
// the private key.
type Cluster struct {
	Name    string `json:"name"`
	Gateway string `json:"gateway"`
	// Identity is the federation's identity at the member: common name
	// and role of the certificate the member issued, and when it expires.
	Identity        string            `json:"identity"`
	IdentityExpires time.Time         `json:"identity_expires"`
	JoinedAt        time.Time         `json:"joined_at"`
	Labels          map[string]string `json:"labels,omitempty"`
	Health          Health            `json:"health"`
}

// Health is what the federation last learnt about a member, the way a
// scheduler keeps a node's lease: last contact, reachability, and the
// member's own summary at that contact.
type Health struct {
	State     State  `json:"state"`
	Reachable bool   `json:"reachable"`
	Leader    string `json:"leader,omitempty"`
	// Figures of the member's cluster summary at the last contact.
	NodesTotal           int32 `json:"nodes_total"`
	NodesReady           int32 `json:"nodes_ready"`
	Workloads            int32 `json:"workloads"`
	CPUCapacityMillis    int64 `json:"cpu_capacity_millis"`
	CPUAllocatedMillis   int64 `json:"cpu_allocated_millis"`
	MemoryCapacityBytes  int64 `json:"memory_capacity_bytes"`
	MemoryAllocatedBytes int64 `json:"memory_allocated_bytes"`
	// LastContact is the last successful probe; zero before the first.
	LastContact time.Time `json:"last_contact,omitzero"`
	// LastProbe is the last probe, successful or not.
	LastProbe time.Time `json:"last_probe,omitzero"`
	// Since is when the member entered State.
	Since time.Time `json:"since,omitzero"`
	// LastError is the last failed probe's error; empty once one succeeds.
	LastError string `json:"last_error,omitempty"`
}

// ClusterList is the body of GET /v1/clusters.
type ClusterList struct {
	Clusters []Cluster `json:"clusters"`
}

// Event is something that happened to a member (joined, left, reachable,
// unreachable, lost), kept for a bounded time.
type Event struct {
	Time    time.Time `json:"time"`
	Type    string    `json:"type"`
	Cluster string    `json:"cluster"`
	// Workload names the federated workload, for workload events.
	Workload string `json:"workload,omitempty"`
	// Service names the federated service, for its events.
	Service string `json:"service,omitempty"`
	// NodeID and Reason are a relayed member event's, the node as
	// CLUSTER/NODE; Reason is the member's enum name.
	NodeID  string `json:"node_id,omitempty"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message"`
}

// EventList is the body of GET /v1/events.
type EventList struct {
	Events []Event `json:"events"`
}

// Event types.
const (
	EventJoined      = "ClusterJoined"
	EventLeft        = "ClusterLeft"
	EventReachable   = "ClusterReachable"
	EventUnreachable = "ClusterUnreachable"
	EventLost        = "ClusterLost"
	// Workload events: placed on a member, moved to the next member
	// because the chosen one had no room, or because it was unreachable
	// for longer than the failover grace.
	EventPlaced    = "Placed"
	EventOffloaded = "Offloaded"
	EventFailover  = "FailedOver"
	// Service events: its replicas divided anew among the members (at
	// apply, a failover of a member's share, or its return); Cluster is
	// empty, the message names the shares.
	EventSpread = "Spread"
	// EventLeaderElected: a federation replica took the lead (several
	// replicas on one etcd); Cluster is empty.
	EventLeaderElected = "FederationLeaderElected"
)

// Labels the federation sets on the workloads it sends to a member: which
// member the federation chose and at which federation revision. Views
// answered through the federation carry them too (persysctl reads the
// cluster label for its CLUSTER column).
const (
	LabelCluster  = "federation.persys.dev/cluster"
	LabelRevision = "federation.persys.dev/revision"
)

// Strategies of a placement.
const (
	// StrategyFill places on the first cluster of Placement.Clusters
	// that is reachable (and, with offload, that has room).
	StrategyFill = "fill"
	// StrategySpread divides a service's replicas among the clusters
	// of the placement, by weights or counts (equal weights by default).
	StrategySpread = "spread"
)

// Placement is the block a federated workload or service manifest
// carries beside metadata and spec: which member clusters may run it, in
// preference order, and what to do when the preferred one has no room.
type Placement struct {
	// Clusters names the member clusters, in preference order; or
	// ClusterSelector picks every member whose labels hold all of its
	// pairs, in name order. Exactly one of the two is set.
	Clusters        []string          `json:"clusters,omitempty"`
	ClusterSelector map[string]string `json:"clusterSelector,omitempty"`
	// Strategy is "fill" (a workload's default) or "spread" (a
	// service's default).
	Strategy string `json:"strategy,omitempty"`
	// Weights (relative) or Counts (exact, summing to the replicas)
	// divide a spread service's replicas; absent: equal weights.
	Weights map[string]int `json:"weights,omitempty"`
	Counts  map[string]int `json:"counts,omitempty"`
	// Offload: when the chosen member reports that no node fits, place
	// the workload on the next cluster and record why; for a service, the
	// replicas of a member's share that no node fits go to the next
	// clusters (fedplace.Offload).
	Offload bool `json:"offload,omitempty"`
	// Failover, when set: a member not reached for longer than its grace
	// loses the workload to the next ready cluster; the copy left there
	// is deleted once the member is reachable again.
	Failover *Failover `json:"failover,omitempty"`
}

// Failover says how long a workload waits for an unreachable member.
type Failover struct {
	// Grace is a duration ("30s"); it counts from the member's last
	// contact.
	Grace string `json:"grace"`
}

// Decision is where the federation placed a workload and why; it is
// stored before the member is asked to apply.
type Decision struct {
	Cluster string `json:"cluster"`
	// Revision is the federation revision the decision was made for.
	Revision int64     `json:"revision"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Same reports whether d and o are one decision (times compared as
// instants: a decision read back from the store has lost its monotonic
// clock reading and location).
func (d Decision) Same(o Decision) bool {
	return d.Cluster == o.Cluster && d.Revision == o.Revision && d.Reason == o.Reason && d.At.Equal(o.At)
}

// Refusal is a member that could not place a revision of a workload.
type Refusal struct {
	Cluster  string    `json:"cluster"`
	Revision int64     `json:"revision"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// Shares are a service's replicas per member cluster.
type Shares map[string]int

// ServiceCap is what a member holds of a service at most, learnt when
// its placement said no node fits the rest of its share (offload). It
// holds for one federation revision of the service: a new apply tries
// every member in full again.
type ServiceCap struct {
	Replicas int       `json:"replicas"`
	Revision int64     `json:"revision"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}

// ServiceDecision is how the federation divided a service's replicas
// among members and why; stored before any member is asked.
type ServiceDecision struct {
	Shares Shares `json:"shares"`
	// Revision is the federation revision of the service it was made
	// for; Seq counts decisions of the service (a new division of one
	// revision, after a failover, bumps only Seq).
	Revision int64     `json:"revision"`
	Seq      int64     `json:"seq"`
	Reason   string    `json:"reason"`
	At       time.Time `json:"at"`
}
