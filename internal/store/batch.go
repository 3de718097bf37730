package store

import (
	"context"
	"fmt"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Group commit: many independent writes in one etcd transaction (one raft
// round and one fsync instead of one each). Every write keeps its own
// compares; the transaction's compares are their union. When the combined
// transaction fails, the writes are committed one by one, so exactly the
// conflicting ones get ErrConflict and each caller sees the result it would
// have seen alone.
const (
	// MaxTxnOps is the number of operations one transaction may carry per
	// branch: etcd's --max-txn-ops default.
	MaxTxnOps = 128
	// maxTxnBytes bounds the values of one combined transaction, below
	// etcd's --max-request-bytes default (1.5 MiB).
	maxTxnBytes = 1 << 20
)

// PlacementWrite is one CommitPlacementRev call for CommitPlacements.
type PlacementWrite struct {
	Assignment    *persysv1.Assignment
	Status        *persysv1.WorkloadStatus
	WorkloadRev   int64
	AssignmentRev int64
}

// WriteResult is the outcome of one write of a group: the revision of its
// commit, or the error CommitPlacementRev, PutStatusRev or CreateWorkload
// would have returned for it alone.
type WriteResult struct {
	Rev int64
	Err error
}

// placementTxn is a validated placement ready to commit; sval is empty
// when the placement writes no status (see ScheduledStatus).
type placementTxn struct {
	name       string
	node       string
	aval, sval []byte
	wrev, arev int64
}

// preparePlacement validates a placement write and encodes its values.
func (s *Store) preparePlacement(a *persysv1.Assignment, st *persysv1.WorkloadStatus, workloadRev, assignmentRev int64) (placementTxn, error) {
	if a == nil {
		return placementTxn{}, fmt.Errorf("store: assignment: %w: nil", ErrInvalid)
	}
	if err := ValidateName("assignment name", a.GetName()); err != nil {
		return placementTxn{}, err
	}
	if a.GetUid() == "" {
		return placementTxn{}, fmt.Errorf("store: assignment %q uid: %w: empty", a.GetName(), ErrInvalid)
	}
	if err := ValidateName("assignment node_id", a.GetNodeId()); err != nil {
		return placementTxn{}, err
	}
	if err := validateRev("workloadRev", workloadRev); err != nil {
		return placementTxn{}, err
	}
	if assignmentRev < 0 {
		return placementTxn{}, fmt.Errorf("store: assignmentRev: %w: negative", ErrInvalid)
	}
	if a.GetPlacedAt() == nil {
		// The derived status's time (ScheduledStatus).
		a = proto.CloneOf(a)
		a.PlacedAt = timestamppb.Now()
	}
	aval, err := marshalBytes("assignment", a)
	if err != nil {
		return placementTxn{}, err
	}
	p := placementTxn{name: a.GetName(), node: a.GetNodeId(), aval: aval, wrev: workloadRev, arev: assignmentRev}
	if st == nil {
		return p, nil // readers derive ScheduledStatus(a)
	}
	if st.GetName() != a.GetName() {
		return placementTxn{}, fmt.Errorf("store: status name %q: %w: differs from assignment %q", st.GetName(), ErrInvalid, a.GetName())
	}
	if st.GetUid() != a.GetUid() {
		return placementTxn{}, fmt.Errorf("store: status uid %q: %w: differs from assignment uid %q", st.GetUid(), ErrInvalid, a.GetUid())
	}
	if p.sval, err = marshalBytes("status", st); err != nil {
		return placementTxn{}, err
	}
	return p, nil
}

// appendPlacement adds a placement's compares and puts to t.
func (s *Store) appendPlacement(t *txnRequest, p placementTxn) {
	t.ifRevision(pb.Compare_MOD, s.workloadKey(p.name), p.wrev)
	t.ifRevision(pb.Compare_MOD, s.assignmentKey(p.name), p.arev)
	t.put(s.assignmentKey(p.name), p.aval)
	if p.sval != nil {
		t.put(s.statusKey(p.name), p.sval)
	}
}

// commitPlacement commits one prepared placement on its own.
func (s *Store) commitPlacement(ctx context.Context, p placementTxn) (int64, error) {
	wkey, akey := s.workloadKey(p.name), s.assignmentKey(p.name)
	t := newTxnRequest(2, 2)
	s.appendPlacement(t, p)
	t.req.Failure = []*pb.RequestOp{rangeKeysOnly(wkey), rangeKeysOnly(akey)}
	resp, err := s.commit(ctx, t)
	if err != nil {
		return 0, fmt.Errorf("store: commit placement of %q on %q: %w", p.name, p.node, err)
	}
	if !resp.Succeeded {
		var wrev, arev int64
		if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			wrev = kvs[0].ModRevision
		}
		if kvs := resp.Responses[1].GetResponseRange().GetKvs(); len(kvs) > 0 {
			arev = kvs[0].ModRevision
		}
		return 0, fmt.Errorf("store: commit placement of %q on %q: workload revision %d (expected %d), assignment revision %d (expected %d): %w",
			p.name, p.node, wrev, p.wrev, arev, p.arev, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// CommitPlacements commits many placements, each with CommitPlacementRev's
// checks and compares, in as few transactions as etcd's limits allow
// (MaxTxnOps, request size; one workload at most once per transaction). A
// transaction whose compares fail is retried write by write, so results[i]
// is what CommitPlacementRev would have returned for ws[i] alone.
func (s *Store) CommitPlacements(ctx context.Context, ws []PlacementWrite) []WriteResult {
	out := make([]WriteResult, len(ws))
	ready := make([]placementTxn, 0, len(ws))
	idx := make([]int, 0, len(ws))
	for i, w := range ws {
		p, err := s.preparePlacement(w.Assignment, w.Status, w.WorkloadRev, w.AssignmentRev)
		if err != nil {
			out[i].Err = err
			continue
		}
		ready = append(ready, p)
		idx = append(idx, i)
	}
	keyLen := len(s.statusKey(""))
	size := func(p placementTxn) int { return len(p.aval) + len(p.sval) + 2*(keyLen+len(p.name)) }
	for _, group := range groupWrites(ready, func(p placementTxn) string { return p.name }, size, MaxTxnOps/2) {
		if len(group) == 1 {
			rev, err := s.commitPlacement(ctx, ready[group[0]])
			out[idx[group[0]]] = WriteResult{Rev: rev, Err: err}
			continue
		}
		t := newTxnRequest(2*len(group), 2*len(group))
		for _, j := range group {
			s.appendPlacement(t, ready[j])
		}
		resp, err := s.commit(ctx, t)
		switch {
		case err != nil:
			for _, j := range group {
				out[idx[j]].Err = fmt.Errorf("store: commit placement of %q on %q: %w", ready[j].name, ready[j].node, err)
			}
		case resp.Succeeded:
			for _, j := range group {
				out[idx[j]].Rev = resp.Header.Revision
			}
		default:
			// Some compare failed: find which, one by one.
			for _, j := range group {
				rev, err := s.commitPlacement(ctx, ready[j])
				out[idx[j]] = WriteResult{Rev: rev, Err: err}
			}
		}
	}
	return out
}

// StatusWrite is one status for PutStatusWrites. WorkloadRev, when not 0,
// is the mod revision of the workload as the writer read it, with uid
// Status.Uid: while the key still has that mod revision it holds that very
// value (a revision names one write), so the status is written in one
// transaction compared on it, with no read. A workload changed since (its
// spec, say) costs the read PutStatusRev makes.
type StatusWrite struct {
	Status      *persysv1.WorkloadStatus
	WorkloadRev int64
}

// PutStatuses is PutStatusWrites with no workload revisions known.
func (s *Store) PutStatuses(ctx context.Context, sts []*persysv1.WorkloadStatus) []WriteResult {
	ws := make([]StatusWrite, len(sts))
	for i, st := range sts {
		ws[i].Status = st
	}
	return s.PutStatusWrites(ctx, ws)
}

// preparedStatus is a validated status write with its value encoded.
type preparedStatus struct {
	st   *persysv1.WorkloadStatus
	wrev int64
	val  []byte
}

// PutStatusWrites writes many statuses, each with PutStatusRev's rule (only
// while its workload exists with the status's uid), in as few transactions
// as etcd's limits allow. A group whose writes all carry the workload's
// revision is one transaction compared on those revisions. Otherwise, or
// when one of them changed: one read of the workloads, then one write
// whose compares are each workload's create revision. A group whose
// compares fail (a workload deleted or re-created between the read and the
// write) is retried status by status, so results[i] is what PutStatusRev
// would have returned for ws[i].Status alone.
func (s *Store) PutStatusWrites(ctx context.Context, ws []StatusWrite) []WriteResult {
	out := make([]WriteResult, len(ws))
	ready := make([]preparedStatus, 0, len(ws))
	idx := make([]int, 0, len(ws))
	for i, w := range ws {
		if err := validateStatus(w.Status); err != nil {
			out[i].Err = err
			continue
		}
		val, err := marshalBytes("status", w.Status)
		if err != nil {
			out[i].Err = err
			continue
		}
		ready = append(ready, preparedStatus{st: w.Status, wrev: w.WorkloadRev, val: val})
		idx = append(idx, i)
	}
	name := func(p preparedStatus) string { return p.st.GetName() }
	keyLen := len(s.statusKey(""))
	size := func(p preparedStatus) int { return len(p.val) + 2*(keyLen+len(p.st.GetName())) }
	for _, group := range groupWrites(ready, name, size, MaxTxnOps) {
		if s.putStatusesAtRevs(ctx, ready, idx, group, out) {
			continue
		}
		s.putStatusesRead(ctx, ready, idx, group, out)
	}
	return out
}

// putStatusesAtRevs writes a group whose writes all carry their workload's
// revision in one transaction compared on them. It reports whether it
// settled the group: false when a write lacks a revision or a workload
// changed since its revision, for the reading path to decide.
func (s *Store) putStatusesAtRevs(ctx context.Context, ready []preparedStatus, idx, group []int, out []WriteResult) bool {
	for _, j := range group {
		if ready[j].wrev <= 0 {
			return false
		}
	}
	t := newTxnRequest(len(group), len(group))
	for _, j := range group {
		p := ready[j]
		t.ifRevision(pb.Compare_MOD, s.workloadKey(p.st.GetName()), p.wrev)
		t.put(s.statusKey(p.st.GetName()), p.val)
	}
	resp, err := s.commit(ctx, t)
	switch {
	case err != nil:
		for _, j := range group {
			out[idx[j]].Err = fmt.Errorf("store: put status %q: %w", ready[j].st.GetName(), err)
		}
	case resp.Succeeded:
		for _, j := range group {
			out[idx[j]].Rev = resp.Header.Revision
		}
	default:
		return false
	}
	return true
}

// putStatusesRead writes a group after reading its workloads (their uids
// and create revisions).
func (s *Store) putStatusesRead(ctx context.Context, ready []preparedStatus, idx, group []int, out []WriteResult) {
	name := func(p preparedStatus) string { return p.st.GetName() }
	one := func(j int) {
		rev, err := s.PutStatusRev(ctx, ready[j].st)
		out[idx[j]] = WriteResult{Rev: rev, Err: err}
	}
	if len(group) == 1 {
		one(group[0])
		return
	}
	gets := make([]clientv3.Op, 0, len(group))
	for _, j := range group {
		gets = append(gets, clientv3.OpGet(s.workloadKey(name(ready[j]))))
	}
	rresp, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		for _, j := range group {
			out[idx[j]].Err = fmt.Errorf("store: put status %q: read workload: %w", name(ready[j]), err)
		}
		return
	}
	t := newTxnRequest(len(group), len(group))
	var live []int
	for k, j := range group {
		st := ready[j].st
		kvs := rresp.Responses[k].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			out[idx[j]].Err = fmt.Errorf("store: put status %q: workload: %w", st.GetName(), ErrNotFound)
			continue
		}
		w := &persysv1.Workload{}
		if err := proto.Unmarshal(kvs[0].Value, w); err != nil {
			out[idx[j]].Err = fmt.Errorf("store: put status %q: decode workload: %w", st.GetName(), err)
			continue
		}
		if w.GetUid() != st.GetUid() {
			out[idx[j]].Err = fmt.Errorf("store: put status %q: workload uid %q is not %q: %w", st.GetName(), w.GetUid(), st.GetUid(), ErrNotFound)
			continue
		}
		t.ifRevision(pb.Compare_CREATE, s.workloadKey(st.GetName()), kvs[0].CreateRevision)
		t.put(s.statusKey(st.GetName()), ready[j].val)
		live = append(live, j)
	}
	if len(live) == 0 {
		return
	}
	wresp, err := s.commit(ctx, t)
	switch {
	case err != nil:
		for _, j := range live {
			out[idx[j]].Err = fmt.Errorf("store: put status %q: %w", name(ready[j]), err)
		}
	case wresp.Succeeded:
		for _, j := range live {
			out[idx[j]].Rev = wresp.Header.Revision
		}
	default:
		for _, j := range live {
			one(j)
		}
	}
}

// groupWrites splits items, in order, into groups of at most maxPer items
// and maxTxnBytes bytes, none holding one key twice (etcd refuses a
// transaction that puts one key twice). It returns indexes into items.
func groupWrites[T any](items []T, key func(T) string, size func(T) int, maxPer int) [][]int {
	var groups [][]int
	var cur []int
	seen := map[string]bool{}
	bytes := 0
	for i, it := range items {
		k, n := key(it), size(it)
		if len(cur) > 0 && (len(cur) >= maxPer || bytes+n > maxTxnBytes || seen[k]) {
			groups = append(groups, cur)
			cur, bytes = nil, 0
			clear(seen)
		}
		cur = append(cur, i)
		seen[k] = true
		bytes += n
	}
	if len(cur) > 0 {
		groups = append(groups, cur)
	}
	return groups
}

// createTxn is a validated workload ready to create.
type createTxn struct {
	name, key string
	val       []byte
}

// prepareCreate validates a workload for CreateWorkload and encodes it.
func (s *Store) prepareCreate(w *persysv1.Workload) (createTxn, error) {
	if err := validateWorkload(w); err != nil {
		return createTxn{}, err
	}
	val, err := marshalBytes("workload", w)
	if err != nil {
		return createTxn{}, err
	}
	return createTxn{name: w.GetName(), key: s.workloadKey(w.GetName()), val: val}, nil
}

// appendCreate adds a create's compare (the key is absent) and put to t.
func appendCreate(t *txnRequest, c createTxn) {
	t.ifRevision(pb.Compare_CREATE, c.key, 0)
	t.put(c.key, c.val)
}

// commitCreate creates one prepared workload on its own.
func (s *Store) commitCreate(ctx context.Context, c createTxn) (int64, error) {
	t := newTxnRequest(1, 1)
	appendCreate(t, c)
	resp, err := s.commit(ctx, t)
	if err != nil {
		return 0, fmt.Errorf("store: create workload %q: %w", c.name, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("store: create workload %q: %w", c.name, ErrExists)
	}
	return resp.Header.Revision, nil
}

// CreateWorkloads creates many workloads, each with CreateWorkload's checks
// and compare (the key must be absent), in as few transactions as etcd's
// limits allow. A transaction whose compares fail is retried write by
// write, so results[i] is what CreateWorkload would have returned for ws[i]
// alone. A name given twice is created once: the later copy lands in a
// later transaction (groupWrites never puts one key twice in a group) and
// gets ErrExists.
func (s *Store) CreateWorkloads(ctx context.Context, ws []*persysv1.Workload) []WriteResult {
	out := make([]WriteResult, len(ws))
	ready := make([]createTxn, 0, len(ws))
	idx := make([]int, 0, len(ws))
	for i, w := range ws {
		c, err := s.prepareCreate(w)
		if err != nil {
			out[i].Err = err
			continue
		}
		ready = append(ready, c)
		idx = append(idx, i)
	}
	name := func(c createTxn) string { return c.name }
	size := func(c createTxn) int { return len(c.key) + len(c.val) }
	for _, group := range groupWrites(ready, name, size, MaxTxnOps) {
		if len(group) == 1 {
			rev, err := s.commitCreate(ctx, ready[group[0]])
			out[idx[group[0]]] = WriteResult{Rev: rev, Err: err}
			continue
		}
		t := newTxnRequest(len(group), len(group))
		for _, j := range group {
			appendCreate(t, ready[j])
		}
		resp, err := s.commit(ctx, t)
		switch {
		case err != nil:
			for _, j := range group {
				out[idx[j]].Err = fmt.Errorf("store: create workload %q: %w", ready[j].name, err)
			}
		case resp.Succeeded:
			for _, j := range group {
				out[idx[j]].Rev = resp.Header.Revision
			}
		default:
			// Some workload exists already: find which, one by one.
			for _, j := range group {
				rev, err := s.commitCreate(ctx, ready[j])
				out[idx[j]] = WriteResult{Rev: rev, Err: err}
			}
		}
	}
	return out
}
