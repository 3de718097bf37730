package store

import (
	"context"
	"fmt"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// DBStatus is the size of etcd's database as one member reports it.
type DBStatus struct {
	Revision    int64
	DBSize      int64
	DBSizeInUse int64
}

// DBStatus asks the first endpoint for its database size; a LocalClient
// has none and asks its own server.
func (s *Store) DBStatus(ctx context.Context) (DBStatus, error) {
	ep, name := "", "the in-process etcd"
	if eps := s.cli.Endpoints(); len(eps) > 0 {
		ep, name = eps[0], eps[0]
	}
	st, err := s.cli.Status(ctx, ep)
	if err != nil {
		return DBStatus{}, fmt.Errorf("store: status of %s: %w", name, err)
	}
	return DBStatus{Revision: st.Header.Revision, DBSize: st.DbSize, DBSizeInUse: st.DbSizeInUse}, nil
}

// CountKeys counts the keys under the prefix, and those that must go with
// their owner: all but events (they expire by lease) and the cluster id
// (it lasts as long as the cluster).
func (s *Store) CountKeys(ctx context.Context) (total, nonEvent int64, err error) {
	resp, err := s.cli.Get(ctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, 0, fmt.Errorf("store: count keys: %w", err)
	}
	events, cluster := s.dir(dirEvents), s.prefix+"/"+clusterIDKey
	for _, kv := range resp.Kvs {
		total++
		if k := string(kv.Key); !strings.HasPrefix(k, events) && k != cluster {
			nonEvent++
		}
	}
	return total, nonEvent, nil
}
