package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// clusterIDKey holds the cluster's id: written once, never changed.
const clusterIDKey = "cluster-id"

// EnsureClusterID returns the cluster id kept in etcd, storing proposed
// when none is there yet. The first scheduler to start decides, and every
// replica and restart after it reads the same id, whatever CA folder it
// was given.
func (s *Store) EnsureClusterID(ctx context.Context, proposed string) (string, error) {
	if proposed == "" {
		return "", fmt.Errorf("store: cluster id: %w: empty", ErrInvalid)
	}
	key := s.prefix + "/" + clusterIDKey
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, proposed)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return "", fmt.Errorf("store: ensure cluster id: %w", err)
	}
	if resp.Succeeded {
		return proposed, nil
	}
	kvs := resp.Responses[0].GetResponseRange().GetKvs()
	if len(kvs) == 0 || len(kvs[0].Value) == 0 {
		return "", fmt.Errorf("store: cluster id: %w: key %s is empty", ErrInvalid, key)
	}
	return string(kvs[0].Value), nil
}
