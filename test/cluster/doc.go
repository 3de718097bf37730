// Package cluster holds multi-node tests of Persys Compute on this
// machine's Docker engine. Each test starts its own cluster: an embedded
// etcd, one or more `persys scheduler` processes and a `persys gateway` on
// the host, and several `persys agent`s, each in its own container
// (image persys-node:test, FROM scratch with the static binary) on a
// private Docker network the test creates. Agents drive the host engine
// through its socket, so their workloads are ordinary containers labelled
// with the node that runs them and outlive a dead agent — which is what the
// node-loss and partition tests need. The tests drive the cluster with
// persysctl and check what really runs on the engine.
//
// The package has no exported API; the harness lives in harness_test.go.
// Tests need Docker: they fail when env CI is set and the engine is
// unreachable, and skip otherwise.
package cluster
