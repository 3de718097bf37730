// Package federation is the root of the federation control plane: a
// cluster of clusters. Its subpackages own, one job each, the JSON types of
// the federation API (fedapi), the federation's own state in etcd
// (fedstore), the pure member health state machine (health), dialing and
// validating a member gateway with the identity the member issued
// (member), the loop that probes every member (monitor), the HTTPS API
// (api) and the wiring of one `persys federation` process (server).
package federation
