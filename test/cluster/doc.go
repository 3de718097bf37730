// Package cluster holds multi-node tests of Persys Compute on this
// machine's Docker engine. Each test starts its own cluster: a
// three-member embedded etcd (internal/store/storetest.NewCluster: peers
// and clients over TLS with certificate auth, a CA of the store's own),
// three `persys scheduler` replicas that get every member's endpoint and
// elect a leader through it, a `persys gateway` on the host, and several
// `persys agent`s, each in its own container (image persys-node:test,
// FROM scratch with the static binary) on a private Docker network the
// test creates. Agents drive the host engine through its socket, so their
// workloads are ordinary containers labelled with the node that runs them
// and outlive a dead agent — which is what the node-loss and partition
// tests need. The tests
// drive the cluster with persysctl (and, for a burst of applies, with
// internal/client, the code persysctl runs) and check what really runs on
// the engine.
//
// Scenarios, with short timings (heartbeat 1s, lease TTL 4s, election TTL
// 2s, retry base 1s / max 4s / 4 attempts): agents join and spread; an
// agent restart keeps its workloads; a killed agent's workloads are
// rescheduled and its stale copies removed when it returns; a partition
// shorter than the grace heals in place, a longer one reschedules and
// fences; the leader scheduler is killed during a burst of applies; the
// etcd member that leads the raft group is killed during a burst of
// applies; a node is drained; a missing image runs through the retry
// engine to FAILED; the leader is killed at each scheduler failpoint
// (internal/failpoint; its schedulers run a persys built with the
// failpoints tag) while an apply, a batch apply, a drain or a delete
// reaches it, and an agent is killed while the leader holds at the
// points where that agent's death matters, each row converging before
// the next (the kill table).
//
// Each test logs one line `cluster: <scenario> submitted=N lost=N
// duplicated=N nodes=N <facts> <timings>` from what it observed, and
// TestMain prints an overall line and the kill table. Environment:
// PERSYS_BIN_DIR (prebuilt persys and persysctl, and persys-failpoints
// when it holds one), PERSYS_CLUSTER_BURST (size of the failover
// bursts), PERSYS_CLUSTER_RESCHEDULE=0 (skip the reschedule half of the
// node-loss test), PERSYS_CLUSTER_LOGS (folder for every daemon's and
// agent's full log).
//
// The package has no exported API; the harness lives in harness_test.go.
// Tests need Docker: they fail when env CI is set and the engine is
// unreachable, and skip otherwise.
package cluster
