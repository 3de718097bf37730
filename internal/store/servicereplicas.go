package store

// One service's stored state read at one revision, and a watch of it: the
// endpoints of a service are computed from these keys and followed as
// they change.

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// ServiceReplicas is a service, its progress and its replicas' keys, all
// read at Revision. Progress is nil before the controller wrote it.
type ServiceReplicas struct {
	Revision    int64
	Service     *persysv1.Service
	Progress    *persysv1.ServiceProgress
	Workloads   map[string]*persysv1.Workload
	Statuses    map[string]*persysv1.WorkloadStatus
	Assignments map[string]*persysv1.Assignment
}

// replicaPrefix is the key prefix under dir of the replicas of service:
// it may hold other services' replicas too (web-x-<hash>-<n> under web-);
// readers keep the names ServiceOfReplica maps to service.
func (s *Store) replicaPrefix(dir, service string) string { return s.dir(dir) + service + "-" }

// ReadServiceReplicas reads the service name and its replicas in one
// transaction; a NotFoundError when the service does not exist.
func (s *Store) ReadServiceReplicas(ctx context.Context, name string) (*ServiceReplicas, error) {
	if err := ValidateName("service name", name); err != nil {
		return nil, err
	}
	dirs := []string{dirWorkloads, dirStatus, dirAssignments}
	ops := []clientv3.Op{clientv3.OpGet(s.serviceKey(name)), clientv3.OpGet(s.serviceProgressKey(name))}
	for _, d := range dirs {
		ops = append(ops, clientv3.OpGet(s.replicaPrefix(d, name), clientv3.WithPrefix()))
	}
	resp, err := s.cli.Txn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("store: read replicas of service %q: %w", name, err)
	}
	out := &ServiceReplicas{Revision: resp.Header.Revision, Service: &persysv1.Service{}, Workloads: map[string]*persysv1.Workload{},
		Statuses: map[string]*persysv1.WorkloadStatus{}, Assignments: map[string]*persysv1.Assignment{}}
	r := resp.Responses
	svc := r[0].GetResponseRange().GetKvs()
	if len(svc) == 0 {
		return nil, notFound("service", name)
	}
	if err := proto.Unmarshal(svc[0].Value, out.Service); err != nil {
		return nil, fmt.Errorf("store: decode service %q: %w", name, err)
	}
	if kvs := r[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
		out.Progress = &persysv1.ServiceProgress{}
		if err := proto.Unmarshal(kvs[0].Value, out.Progress); err != nil {
			return nil, fmt.Errorf("store: decode progress of service %q: %w", name, err)
		}
	}
	revs := map[string]map[string]int64{dirStatus: {}, dirAssignments: {}}
	for k, d := range dirs {
		for _, kv := range r[2+k].GetResponseRange().GetKvs() {
			replica := strings.TrimPrefix(string(kv.Key), s.dir(d))
			if ServiceOfReplica(replica) == name {
				s.decodeReplicaKey(out, d, replica, kv.Value)
				if m := revs[d]; m != nil {
					m[replica] = kv.ModRevision
				}
			}
		}
	}
	for replica, a := range out.Assignments {
		if !statusStands(revs[dirStatus][replica], revs[dirAssignments][replica]) {
			out.Statuses[replica] = ScheduledStatus(a)
		}
	}
	return out, nil
}

// decodeReplicaKey stores one replica key's value in out, skipping (and
// logging) one that does not decode.
func (s *Store) decodeReplicaKey(out *ServiceReplicas, dir, replica string, val []byte) {
	var m proto.Message
	switch dir {
	case dirWorkloads:
		w := &persysv1.Workload{}
		out.Workloads[replica], m = w, w
	case dirStatus:
		st := &persysv1.WorkloadStatus{}
		out.Statuses[replica], m = st, st
	default:
		a := &persysv1.Assignment{}
		out.Assignments[replica], m = a, a
	}
	if err := proto.Unmarshal(val, m); err != nil {
		s.log.Warn("skipping undecodable replica key", "dir", dir, "replica", replica, "err", err)
	}
}

// WatchServiceReplicas sends the etcd revision of every change to the
// service name or its replicas' keys after revision rev. Changes coalesce:
// a reader that falls behind gets the newest revision once, which is all
// it needs to read the state again. The channel closes when ctx ends or
// the watch fails; the caller reads again and watches anew.
func (s *Store) WatchServiceReplicas(ctx context.Context, name string, rev int64) <-chan int64 {
	out := make(chan int64, 1)
	ctx, cancel := context.WithCancel(ctx)
	keys := []struct {
		key    string
		prefix bool
	}{{s.serviceKey(name), false}, {s.serviceProgressKey(name), false},
		{s.replicaPrefix(dirWorkloads, name), true}, {s.replicaPrefix(dirStatus, name), true}, {s.replicaPrefix(dirAssignments, name), true}}
	done := make(chan struct{}, len(keys))
	for _, k := range keys {
		opts := []clientv3.OpOption{clientv3.WithRev(rev + 1)}
		if k.prefix {
			opts = append(opts, clientv3.WithPrefix())
		}
		wch := s.cli.Watch(clientv3.WithRequireLeader(ctx), k.key, opts...)
		go func() {
			defer func() { done <- struct{}{} }()
			for resp := range wch {
				if resp.Err() != nil {
					return
				}
				if len(resp.Events) > 0 {
					sendNewest(out, resp.Header.Revision)
				}
			}
		}()
	}
	go func() {
		<-done // the first watch to end ends them all
		cancel()
		for range len(keys) - 1 {
			<-done
		}
		close(out)
	}()
	return out
}

// sendNewest puts rev in ch (capacity 1), replacing an older revision
// nobody read yet.
func sendNewest(ch chan int64, rev int64) {
	for {
		select {
		case ch <- rev:
			return
		default:
		}
		select {
		case old := <-ch:
			rev = max(rev, old)
		default:
		}
	}
}
