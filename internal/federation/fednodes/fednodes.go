// Package fednodes owns the federation's view of member nodes: every
// member's node list, asked of all members at once (each call bounded),
// each node labelled with its cluster (fedapi.LabelCluster in its
// capabilities' labels) so that persysctl shows a CLUSTER column. A
// member that does not answer is named in the error list the caller
// gets back beside the nodes of the others.
package fednodes

import (
	"context"
	"fmt"
	"sync"
	"time"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/fedstore"
	"github.com/persys-dev/compute/internal/federation/member"
)

// Lister lists member nodes.
type Lister struct {
	store   *fedstore.Store
	pool    *member.Pool
	timeout time.Duration
}

// New returns a Lister; timeout bounds the call to one member (0: 5 s).
func New(st *fedstore.Store, lookup member.Lookup, timeout time.Duration) *Lister {
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return &Lister{store: st, pool: member.NewPool(lookup, nil), timeout: timeout}
}

// Close releases the member connections.
func (l *Lister) Close() { l.pool.Close() }

// List returns the nodes of every member that answered, by member name
// then the member's order, and one line per member that did not.
func (l *Lister) List(ctx context.Context) ([]*persysv1.Node, []string, error) {
	members, err := l.store.ListMembers(ctx)
	if err != nil {
		return nil, nil, err
	}
	lists := make([][]*persysv1.Node, len(members))
	errs := make([]error, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		wg.Go(func() { lists[i], errs[i] = l.one(ctx, m.Name) })
	}
	wg.Wait()
	var (
		out    []*persysv1.Node
		missed []string
	)
	for i, m := range members {
		if errs[i] != nil {
			missed = append(missed, fmt.Sprintf("cluster %s: %v", m.Name, errs[i]))
			continue
		}
		out = append(out, lists[i]...)
	}
	return out, missed, nil
}

func (l *Lister) one(ctx context.Context, cluster string) ([]*persysv1.Node, error) {
	c, err := l.pool.Client(ctx, cluster)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, l.timeout)
	defer cancel()
	resp, err := c.ListNodes(cctx)
	if err != nil {
		return nil, err
	}
	for _, n := range resp.GetNodes() {
		if n.Capabilities == nil {
			n.Capabilities = &persysv1.NodeCapabilities{}
		}
		if n.Capabilities.Labels == nil {
			n.Capabilities.Labels = map[string]string{}
		}
		n.Capabilities.Labels[fedapi.LabelCluster] = cluster
	}
	return resp.GetNodes(), nil
}
