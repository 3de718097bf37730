// Package servicectl is the service controller: it owns the Service kind's
// behaviour. Decide is its pure core (one rollout step from the service,
// its replicas and the time); Controller runs it on the leader, over the
// store (services/, servicerevisions/, serviceprogress/) and the
// scheduler's workload API, so replicas are ordinary workloads applied on
// behalf of the service's applier and placed, retried and moved like any
// other. Callers build a Controller with New and call Run while leading.
package servicectl
