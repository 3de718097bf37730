package store

import (
	"context"
	"math"
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
)

// txnRequest is one group commit's etcd transaction, built as the request
// etcd receives. clientv3's builder copies every key and value once more
// (OpPut), and clones every compare twice through protobuf reflection
// (Compare, then Txn.If): at a million placements those, with the
// values' copy into strings, were 4.0 of the scheduler's 28 GB of
// allocations. Compares and puts come out of one slice each, not an
// allocation apiece.
type txnRequest struct {
	req  pb.TxnRequest
	cmps []pb.Compare
	puts []putOp
}

// putOp is a put with the wrappers that make it a RequestOp, allocated
// together.
type putOp struct {
	op  pb.RequestOp
	req pb.RequestOp_RequestPut
	put pb.PutRequest
}

// newTxnRequest makes a request with room for ncmp compares and nput
// puts. More still fit: an element the request points to stays where it
// is when its slice grows.
func newTxnRequest(ncmp, nput int) *txnRequest {
	return &txnRequest{
		req:  pb.TxnRequest{Compare: make([]*pb.Compare, 0, ncmp), Success: make([]*pb.RequestOp, 0, nput)},
		cmps: make([]pb.Compare, 0, ncmp),
		puts: make([]putOp, 0, nput),
	}
}

// ifRevision adds the compare "key's target revision = rev" (target
// pb.Compare_MOD or pb.Compare_CREATE).
func (t *txnRequest) ifRevision(target pb.Compare_CompareTarget, key string, rev int64) {
	t.cmps = append(t.cmps, pb.Compare{Key: []byte(key), Target: target, Result: pb.Compare_EQUAL})
	c := &t.cmps[len(t.cmps)-1]
	if target == pb.Compare_CREATE {
		c.TargetUnion = &pb.Compare_CreateRevision{CreateRevision: rev}
	} else {
		c.TargetUnion = &pb.Compare_ModRevision{ModRevision: rev}
	}
	t.req.Compare = append(t.req.Compare, c)
}

// put adds a put of val (kept, not copied: the caller no longer changes
// it) at key.
func (t *txnRequest) put(key string, val []byte) {
	t.puts = append(t.puts, putOp{})
	p := &t.puts[len(t.puts)-1]
	p.put = pb.PutRequest{Key: []byte(key), Value: val}
	p.req.RequestPut = &p.put
	p.op.Request = &p.req
	t.req.Success = append(t.req.Success, &p.op)
}

// commit sends the transaction as clientv3's Txn.Commit would: over the
// same connection and interceptors, with the same call options, and the
// same errors.
func (s *Store) commit(ctx context.Context, t *txnRequest) (*clientv3.TxnResponse, error) {
	resp, err := s.kv.Txn(ctx, &t.req, txnCallOptions...)
	if err != nil {
		return nil, clientv3.ContextError(ctx, err)
	}
	return (*clientv3.TxnResponse)(resp), nil
}

// txnCallOptions are clientv3's default call options (the store sets no
// others): wait for a connection rather than fail at once while the
// client reconnects, and its message size limits.
var txnCallOptions = []grpc.CallOption{
	grpc.WaitForReady(true),
	grpc.MaxCallSendMsgSize(2 << 20),
	grpc.MaxCallRecvMsgSize(math.MaxInt32),
}

// localClients maps each LocalClient to its in-process etcd clients, for
// the calls the store makes below clientv3's KV and Lease: a
// connectionless client has no connection to make them on.
var localClients sync.Map // *clientv3.Client → localRemotes

type localRemotes struct {
	kv    pb.KVClient
	lease pb.LeaseClient
}

// kvClientOf is the KVClient under cli's KV.
func kvClientOf(cli *clientv3.Client) pb.KVClient {
	if r, ok := localClients.Load(cli); ok {
		return r.(localRemotes).kv
	}
	return pb.NewKVClient(cli.ActiveConnection())
}

// leaseClientOf is the LeaseClient for cli's keep-alive streams.
func leaseClientOf(cli *clientv3.Client) pb.LeaseClient {
	if r, ok := localClients.Load(cli); ok {
		return r.(localRemotes).lease
	}
	return pb.NewLeaseClient(cli.ActiveConnection())
}

// rangeKeysOnly is a read of key's revisions (not its value), for a
// failure branch that tells which compare failed.
func rangeKeysOnly(key string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(key), KeysOnly: true}}}
}
