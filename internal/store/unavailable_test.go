package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func TestUnavailable(t *testing.T) {
	for _, err := range []error{rpctypes.ErrTimeout, rpctypes.ErrTimeoutDueToLeaderFail, rpctypes.ErrLeaderChanged,
		rpctypes.ErrNoLeader, fmt.Errorf("put workload: %w", rpctypes.ErrTimeout)} {
		if !Unavailable(err) {
			t.Errorf("%v: not Unavailable", err)
		}
	}
	for _, err := range []error{nil, errors.New("x"), context.DeadlineExceeded, rpctypes.ErrKeyNotFound, ErrConflict} {
		if Unavailable(err) {
			t.Errorf("%v: Unavailable", err)
		}
	}
}
