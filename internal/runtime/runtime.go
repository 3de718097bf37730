// Package runtime defines the small interface every workload runtime
// (docker, compose, qemu, sim) implements for the agent. Runtimes only
// execute and report; they never decide placement. What a runtime runs is
// labelled with the workload name, uid and revision so that the runtime
// itself is the agent's ground truth after a restart.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Instance is one revision of a workload that the scheduler asked for.
type Instance struct {
	Name     string
	UID      string
	Revision uint64
	Spec     *persysv1.WorkloadSpec
	// Secrets holds, by name, the values of the secrets the spec references
	// (and nothing else). Runtimes must never log them.
	Secrets map[string]*persysv1.SecretValue
}

// SecretValue returns one key of a secret the instance received, with an
// error of reason SECRET_NOT_FOUND naming what is missing.
func (i Instance) SecretValue(secret, key string) ([]byte, error) {
	sv, ok := i.Secrets[secret]
	if !ok {
		return nil, Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "secret %q was not delivered with the workload", secret)
	}
	v, ok := sv.GetData()[key]
	if !ok {
		return nil, Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "secret %q has no key %q", secret, key)
	}
	return v, nil
}

// Runtime executes workloads of one type.
type Runtime interface {
	// Type is the workload type this runtime executes.
	Type() persysv1.WorkloadType
	// Apply makes the instance's revision run (or stay stopped, when the
	// spec's desired state is STOPPED) and removes other revisions of the
	// same workload. Applying the revision that already runs changes
	// nothing and reports skipped. Errors are *Failure values.
	Apply(ctx context.Context, inst Instance) (status *persysv1.WorkloadStatus, skipped bool, err error)
	// Delete stops and removes every revision of the workload; when uid is
	// not empty only instances with that uid. Deleting nothing succeeds.
	Delete(ctx context.Context, name, uid string) (existed bool, err error)
	// Status reports one workload; state MISSING when nothing runs.
	Status(ctx context.Context, name string) (*persysv1.WorkloadStatus, error)
	// List reports every workload this runtime manages on the node.
	List(ctx context.Context) ([]*persysv1.WorkloadStatus, error)
}

// Watcher is an optional ability: a runtime that can tell when one of its
// workloads changed state (a container died or was removed) sends the
// workload's name, so the agent reports at once instead of at the next
// heartbeat.
type Watcher interface {
	Watch(ctx context.Context) (<-chan string, error)
}

// Logger is an optional ability: a runtime that keeps a workload's output
// (container stdout and stderr, a VM's serial console) returns its last
// tailBytes bytes, and whether more was held.
type Logger interface {
	Logs(ctx context.Context, name string, tailBytes int64) (data []byte, truncated bool, err error)
}

// MaxLogChunk bounds one chunk a Follower emits.
const MaxLogChunk = 32 << 10

// LogFollow says where a followed log starts and what it holds.
type LogFollow struct {
	// TailBytes of the log written before the call are sent first (at
	// most; whole lines where the runtime keeps lines). Ignored with Since.
	TailBytes int64
	// Since, when not zero, starts at the output written at or after it.
	Since time.Time
	// Service names one compose service ("" means every service).
	Service string
	// Started, when set, is called once the options were found good and
	// the follow is under way, before the first chunk.
	Started func()
}

// Start calls f.Started if set.
func (f LogFollow) Start() {
	if f.Started != nil {
		f.Started()
	}
}

// Follower is an optional ability: a runtime that streams a workload's
// output as it is written. FollowLogs calls emit with chunks of at most
// MaxLogChunk bytes, in order, until ctx ends or the output ends (both
// nil) or emit fails (its error). It leaves no goroutine behind.
type Follower interface {
	FollowLogs(ctx context.Context, name string, f LogFollow, emit func([]byte) error) error
}

// Errors of FollowLogs that are the caller's to fix.
var (
	// ErrLogSince: the runtime keeps no times (a VM's serial console).
	ErrLogSince = errors.New("this runtime's log keeps no times")
	// ErrLogService: the service is not part of the workload, or the
	// workload has no services.
	ErrLogService = errors.New("no such service")
)

// Verifier is an optional ability: a runtime that can check, beyond what
// it reports, that a workload it lists as RUNNING is really alive (its
// process exists and is not a zombie). alive is false with a human detail
// when the workload is dead behind the runtime's back; err is set only when
// the check itself could not be made.
type Verifier interface {
	Verify(ctx context.Context, name string) (alive bool, detail string, err error)
}

// Repairer is an optional ability: a runtime that can find what a crash in
// the middle of its own Apply left behind (a container created but never
// started) and finish that step. The agent calls Repair when it starts and
// on every audit; Repair serializes with Apply and Delete of the same
// workload, so it never takes an Apply in flight for a crash's leftover.
type Repairer interface {
	Repair(ctx context.Context) ([]Repair, error)
}

// Repair is one leftover a runtime found and what it did about it.
type Repair struct {
	Workload string
	// Action is a short verb phrase, for example "started created container"
	// (also the metric label).
	Action string
	Detail string
}

// Failure is a runtime error with its enum reason.
type Failure struct {
	Reason  persysv1.FailureReason
	Message string
	Err     error
}

// Error starts with the reason in the canonical spelling (IMAGE_NOT_FOUND).
func (f *Failure) Error() string {
	if f.Err != nil {
		return fmt.Sprintf("%s: %s: %v", contract.Name(f.Reason), f.Message, f.Err)
	}
	return contract.Name(f.Reason) + ": " + f.Message
}

func (f *Failure) Unwrap() error { return f.Err }

// Fail builds a *Failure.
func Fail(reason persysv1.FailureReason, err error, format string, args ...any) *Failure {
	return &Failure{Reason: reason, Message: fmt.Sprintf(format, args...), Err: err}
}

// ReasonOf returns the failure reason carried by err, or RUNTIME_ERROR.
func ReasonOf(err error) persysv1.FailureReason {
	var f *Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	return persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR
}

// Labels put on everything a runtime creates.
const (
	LabelManaged  = "persys.managed"
	LabelWorkload = "persys.workload"
	LabelUID      = "persys.uid"
	LabelRevision = "persys.revision"
	// LabelNode names the node whose agent created it, so agents that share
	// one engine (tests, several agents on one host) keep apart.
	LabelNode = "persys.node"
	// LabelCluster names the cluster whose agent created it: two clusters
	// on one engine may each have a node of the same id (the default id
	// was the host name), and must never collect each other's objects.
	LabelCluster = "persys.cluster"
)

// MessageOf returns the human part of err: a Failure's message (and cause)
// without the enum name, which travels separately as the reason.
func MessageOf(err error) string {
	var f *Failure
	if errors.As(err, &f) {
		if f.Err != nil {
			return f.Message + ": " + f.Err.Error()
		}
		return f.Message
	}
	return err.Error()
}
