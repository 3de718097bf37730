package model

import "errors"

// ErrOtherCluster: an agent whose data dir belongs to another cluster
// asked to register. The API answers FailedPrecondition.
var ErrOtherCluster = errors.New("belongs to another cluster")
