// Package fednodes owns the federation's view of member nodes: every
// member's node list, asked of all members at once (each call bounded),
// each node labelled with its cluster (fedapi.LabelCluster in its
// capabilities' labels) so that persysctl shows a CLUSTER column. A
// member that does not answer is named in the error list the caller
// gets back beside the nodes of the others. One node is found by
// CLUSTER/NODE or, when no two members share the id, by its id alone.
package fednodes

import (
	"context"
	"errors"
	"fmt"
	"strings"
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

// ErrNotFound and ErrAmbiguous are Get's refusals.
var (
	ErrNotFound  = errors.New("no node of this id at any member that answered")
	ErrAmbiguous = errors.New("several members have a node of this id")
)

// Get returns one node, labelled with its cluster: id is CLUSTER/NODE
// (asked of that member alone) or a node id, looked for at every member.
// A node id that two members share is ErrAmbiguous, naming the CLUSTER/NODE
// ids to ask for; one found nowhere is ErrNotFound, naming the members
// that did not answer.
func (l *Lister) Get(ctx context.Context, id string) (*persysv1.Node, error) {
	var (
		nodes  []*persysv1.Node
		missed []string
	)
	if cluster, node, ok := strings.Cut(id, "/"); ok {
		if _, err := l.store.GetMember(ctx, cluster); err != nil {
			return nil, fmt.Errorf("cluster %q: %w", cluster, err)
		}
		list, err := l.one(ctx, cluster)
		if err != nil {
			return nil, fmt.Errorf("cluster %s: %w", cluster, err)
		}
		nodes, id = list, node
	} else {
		var err error
		if nodes, missed, err = l.List(ctx); err != nil {
			return nil, err
		}
	}
	var found []*persysv1.Node
	for _, n := range nodes {
		if n.GetId() == id {
			found = append(found, n)
		}
	}
	switch len(found) {
	case 1:
		return found[0], nil
	case 0:
		if len(missed) > 0 {
			return nil, fmt.Errorf("node %q: %w (%s)", id, ErrNotFound, strings.Join(missed, "; "))
		}
		return nil, fmt.Errorf("node %q: %w", id, ErrNotFound)
	}
	names := make([]string, len(found))
	for i, n := range found {
		names[i] = n.GetCapabilities().GetLabels()[fedapi.LabelCluster] + "/" + id
	}
	return nil, fmt.Errorf("node %q: %w: ask for one of %s", id, ErrAmbiguous, strings.Join(names, ", "))
}
