package store

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3client"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
	"go.etcd.io/etcd/server/v3/proxy/grpcproxy/adapter"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
)

// newLocalClient is etcd's in-process client with the caller's gRPC
// identity hidden from etcd. The scheduler calls the store from its own
// gRPC handlers, so a context carries the caller's peer and metadata;
// with client-certificate auth on, etcd would read that peer as its own
// client (an agent's certificate CN as the etcd user, or a panic on a
// connection without TLS).
func newLocalClient(s *etcdserver.EtcdServer) (*clientv3.Client, pb.KVClient, pb.LeaseClient) {
	cli := v3client.New(s) // Maintenance, Cluster and Auth as they are
	kv := localKV{adapter.KvServerToKvClient(v3rpc.NewQuotaKVServer(s))}
	cli.KV = clientv3.NewKVFromKVClient(kv, cli)
	lc := localLease{adapter.LeaseServerToLeaseClient(v3rpc.NewQuotaLeaseServer(s))}
	cli.Lease = clientv3.NewLeaseFromLeaseClient(lc, cli, time.Second)
	wc := localWatch{adapter.WatchServerToWatchClient(v3rpc.NewWatchServer(s))}
	cli.Watcher = clientv3.NewWatchFromWatchClient(wc, cli)
	return cli, kv, lc
}

// detach keeps ctx's deadline and cancellation and hides the incoming
// gRPC peer and metadata of whoever called the scheduler.
func detach(ctx context.Context) context.Context {
	return blankCtx{peer.NewContext(metadata.NewIncomingContext(ctx, metadata.MD{}), &peer.Peer{})}
}

// blankCtx does not print its values: a context's String walks values
// that other goroutines may change (as v3client's own watch wrapper).
type blankCtx struct{ context.Context }

func (blankCtx) String() string { return "(local etcd call)" }

type localKV struct{ pb.KVClient }

func (k localKV) Range(ctx context.Context, r *pb.RangeRequest, o ...grpc.CallOption) (*pb.RangeResponse, error) {
	return k.KVClient.Range(detach(ctx), r, o...)
}

func (k localKV) RangeStream(ctx context.Context, r *pb.RangeRequest, o ...grpc.CallOption) (grpc.ServerStreamingClient[pb.RangeStreamResponse], error) {
	return k.KVClient.RangeStream(detach(ctx), r, o...)
}

func (k localKV) Put(ctx context.Context, r *pb.PutRequest, o ...grpc.CallOption) (*pb.PutResponse, error) {
	return k.KVClient.Put(detach(ctx), r, o...)
}

func (k localKV) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest, o ...grpc.CallOption) (*pb.DeleteRangeResponse, error) {
	return k.KVClient.DeleteRange(detach(ctx), r, o...)
}

func (k localKV) Txn(ctx context.Context, r *pb.TxnRequest, o ...grpc.CallOption) (*pb.TxnResponse, error) {
	return k.KVClient.Txn(detach(ctx), r, o...)
}

func (k localKV) Compact(ctx context.Context, r *pb.CompactionRequest, o ...grpc.CallOption) (*pb.CompactionResponse, error) {
	return k.KVClient.Compact(detach(ctx), r, o...)
}

type localLease struct{ pb.LeaseClient }

func (l localLease) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest, o ...grpc.CallOption) (*pb.LeaseGrantResponse, error) {
	return l.LeaseClient.LeaseGrant(detach(ctx), r, o...)
}

func (l localLease) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest, o ...grpc.CallOption) (*pb.LeaseRevokeResponse, error) {
	return l.LeaseClient.LeaseRevoke(detach(ctx), r, o...)
}

func (l localLease) LeaseKeepAlive(ctx context.Context, o ...grpc.CallOption) (grpc.BidiStreamingClient[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse], error) {
	return l.LeaseClient.LeaseKeepAlive(detach(ctx), o...)
}

func (l localLease) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest, o ...grpc.CallOption) (*pb.LeaseTimeToLiveResponse, error) {
	return l.LeaseClient.LeaseTimeToLive(detach(ctx), r, o...)
}

func (l localLease) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest, o ...grpc.CallOption) (*pb.LeaseLeasesResponse, error) {
	return l.LeaseClient.LeaseLeases(detach(ctx), r, o...)
}

type localWatch struct{ pb.WatchClient }

func (w localWatch) Watch(ctx context.Context, o ...grpc.CallOption) (grpc.BidiStreamingClient[pb.WatchRequest, pb.WatchResponse], error) {
	return w.WatchClient.Watch(detach(ctx), o...)
}

// Interface guards.
var (
	_ pb.KVClient    = localKV{}
	_ pb.LeaseClient = localLease{}
	_ pb.WatchClient = localWatch{}
)
