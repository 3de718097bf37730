package store

import (
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
)

// Unavailable reports whether err is etcd saying that it cannot answer
// now — a request timed out, the leader changed or there is none — as
// when a member dies under a write. The write may or may not have taken:
// callers answer Unavailable so that clients retry an idempotent call,
// instead of Internal.
func Unavailable(err error) bool {
	var ee rpctypes.EtcdError
	return errors.As(err, &ee) && ee.Code() == codes.Unavailable
}
