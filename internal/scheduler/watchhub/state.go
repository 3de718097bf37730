package watchhub

import (
	"sort"

	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/store"
)

// maxEventTail bounds the events the hub keeps for new events watches.
const maxEventTail = 1000

// state is the hub's copy of what clients watch, built from etcd alone:
// a workload's view is its record, status and assignment; a node's is its
// record with READY or NOT_READY from its lease. Owned by Hub.mu.
type state struct {
	rev          int64
	workloads    map[string]*persysv1.Workload
	statuses     map[string]*persysv1.WorkloadStatus
	assignments  map[string]*persysv1.Assignment
	views        map[string]*persysv1.WorkloadView
	nodes        map[string]*persysv1.Node
	alive        map[string]bool
	nodeViews    map[string]*persysv1.Node
	services     map[string]*persysv1.Service
	progress     map[string]*persysv1.ServiceProgress
	serviceViews map[string]*persysv1.ServiceView
	// tail holds the newest events (at most maxEventTail), oldest first.
	tail []*Item
	// snaps caches the unfiltered snapshot of each kind at rev.
	snaps [numKinds][]*Item
}

func newState(ws *store.WatchSnapshot, tailN int) *state {
	st := &state{rev: ws.Revision, workloads: ws.Workloads, statuses: ws.Statuses, assignments: ws.Assignments,
		views: map[string]*persysv1.WorkloadView{}, nodes: ws.Nodes, alive: ws.AliveNodes,
		nodeViews: map[string]*persysv1.Node{}, services: ws.Services, progress: ws.Progress,
		serviceViews: map[string]*persysv1.ServiceView{}}
	for name := range st.workloads {
		st.views[name] = st.workloadView(name)
	}
	for id := range st.nodes {
		st.nodeViews[id] = st.nodeView(id)
	}
	for name := range st.services {
		st.serviceViews[name] = st.serviceView(name)
	}
	for i, ev := range ws.Events {
		st.addTail(&Item{Op: OpPut, Kind: Events, Revision: ws.EventRevs[i], Event: ev})
	}
	return st
}

func (st *state) addTail(it *Item) {
	if len(st.tail) >= maxEventTail {
		st.tail = append(st.tail[:0:0], st.tail[len(st.tail)-maxEventTail/2:]...)
	}
	st.tail = append(st.tail, it)
}

func (st *state) workloadView(name string) *persysv1.WorkloadView {
	w := st.workloads[name]
	if w == nil {
		return nil
	}
	v := &persysv1.WorkloadView{Workload: w, Status: st.statuses[name], Assignment: st.assignments[name]}
	if v.Status == nil {
		v.Status = &persysv1.WorkloadStatus{Name: name, Uid: w.GetUid(), State: persysv1.ActualState_ACTUAL_STATE_PENDING}
	}
	return v
}

func (st *state) nodeView(id string) *persysv1.Node {
	rec := st.nodes[id]
	if rec == nil {
		return nil
	}
	n := proto.CloneOf(rec)
	n.State = persysv1.NodeState_NODE_STATE_NOT_READY
	if st.alive[id] {
		n.State = persysv1.NodeState_NODE_STATE_READY
	}
	return n
}

func (st *state) serviceView(name string) *persysv1.ServiceView {
	svc := st.services[name]
	if svc == nil {
		return nil
	}
	return &persysv1.ServiceView{Service: svc, Progress: st.progress[name]}
}

// touched lists keys in the order a revision first changed them.
type touched struct {
	order []string
	seen  map[string]bool
}

func (t *touched) add(k string) {
	if t.seen == nil {
		t.seen = map[string]bool{}
	}
	if !t.seen[k] {
		t.seen[k] = true
		t.order = append(t.order, k)
	}
}

// changed collects what one revision touched.
type changed struct {
	workloads, nodes, services touched
	events                     []*persysv1.Event
}

// apply records one revision's changes and returns its items: one per
// object whose view changed, then one per event, numbered per kind.
func (st *state) apply(b store.Batch) []*Item {
	var ch changed
	for _, c := range b.Changes {
		st.record(c, &ch)
	}
	var items []*Item
	items = diff(items, Workloads, b.Revision, ch.workloads.order, st.views, st.workloadView, func(it *Item, v *persysv1.WorkloadView) { it.Workload = v })
	items = diff(items, Nodes, b.Revision, ch.nodes.order, st.nodeViews, st.nodeView, func(it *Item, v *persysv1.Node) { it.Node = v })
	items = diff(items, Services, b.Revision, ch.services.order, st.serviceViews, st.serviceView, func(it *Item, v *persysv1.ServiceView) { it.Service = v })
	for i, ev := range ch.events {
		it := &Item{Op: OpPut, Kind: Events, Revision: b.Revision, Index: int32(i), Event: ev}
		st.addTail(it)
		items = append(items, it)
	}
	if len(items) > 0 {
		st.snaps = [numKinds][]*Item{}
	}
	return items
}

// record applies one change to the state and notes what it touched.
func (st *state) record(c store.Change, ch *changed) {
	switch c.Kind {
	case store.KindWorkload:
		setOrDelete(st.workloads, c.Key, c.Workload, c.Deleted)
	case store.KindStatus:
		setOrDelete(st.statuses, c.Key, c.Status, c.Deleted)
	case store.KindAssignment:
		setOrDelete(st.assignments, c.Key, c.Assignment, c.Deleted)
	case store.KindNode:
		setOrDelete(st.nodes, c.Key, c.Node, c.Deleted)
	case store.KindNodeLease:
		setOrDelete(st.alive, c.Key, true, c.Deleted)
	case store.KindService:
		setOrDelete(st.services, c.Key, c.Service, c.Deleted)
	case store.KindServiceProgress:
		setOrDelete(st.progress, c.Key, c.Progress, c.Deleted)
	case store.KindEvents:
		ch.events = append(ch.events, c.Events...)
	}
	switch c.Kind {
	case store.KindWorkload, store.KindStatus, store.KindAssignment:
		ch.workloads.add(c.Key)
	case store.KindNode, store.KindNodeLease:
		ch.nodes.add(c.Key)
	case store.KindService, store.KindServiceProgress:
		ch.services.add(c.Key)
	}
}

func setOrDelete[V any](m map[string]V, k string, v V, deleted bool) {
	if deleted {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// diff rebuilds the view of each key in keys and returns an item for
// each that changed: PUT for a new or changed view, DELETE (with the last
// view) for one that is gone.
func diff[V proto.Message](items []*Item, kind Kind, rev int64, keys []string, views map[string]V,
	build func(string) V, set func(*Item, V)) []*Item {
	var idx int32
	for _, k := range keys {
		old, existed := views[k]
		nv := build(k)
		it := &Item{Kind: kind, Revision: rev, Index: idx}
		switch {
		case nv.ProtoReflect().IsValid():
			views[k] = nv
			it.Op, it.existed = OpPut, existed
			set(it, nv)
			if wv, ok := any(old).(*persysv1.WorkloadView); ok && existed {
				it.PrevLabels = wv.GetWorkload().GetLabels()
			}
		case existed:
			delete(views, k)
			it.Op = OpDelete
			set(it, old)
		default:
			continue
		}
		items = append(items, it)
		idx++
	}
	return items
}

// snapshot returns the unfiltered list of kind at st.rev (not events),
// sorted by key; shared, cached until the next change.
func (st *state) snapshot(kind Kind) []*Item {
	if st.snaps[kind] != nil {
		return st.snaps[kind]
	}
	out := []*Item{}
	switch kind {
	case Workloads:
		for _, k := range sortedKeys(st.views) {
			out = append(out, &Item{Op: OpSnapshot, Kind: kind, Revision: st.rev, Workload: st.views[k]})
		}
	case Nodes:
		for _, k := range sortedKeys(st.nodeViews) {
			out = append(out, &Item{Op: OpSnapshot, Kind: kind, Revision: st.rev, Node: st.nodeViews[k]})
		}
	case Services:
		for _, k := range sortedKeys(st.serviceViews) {
			out = append(out, &Item{Op: OpSnapshot, Kind: kind, Revision: st.rev, Service: st.serviceViews[k]})
		}
	}
	st.snaps[kind] = out
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
