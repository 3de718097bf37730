// Package failpoint names the steps of the apply path where a crash leaves
// distinct state, so that crash tests can kill a process exactly there and
// check that the cluster converges after a restart (etcd's gofail idea,
// without code generation).
//
// Built without the `failpoints` tag (every release and `make build`),
// Inject is an empty function that the compiler inlines away. Built with
// it, the environment variable PERSYS_FAILPOINTS arms points:
//
//	PERSYS_FAILPOINTS="docker/after-create=kill,scheduler/after-assign=kill@2"
//
// "kill" sends the process SIGKILL at the point's first hit ("kill@N": at
// its Nth hit); the process never runs its shutdown. "pause" ("pause@N")
// holds the goroutine that hit the point until the arm file is removed or
// rewritten, so that a test can break another part of the cluster (kill
// the agent a scheduler is about to call) while this process waits at the
// point; it needs ArmEnv.
//
// With ArmEnv naming a file, hits count only while that file exists, so a
// test can set a cluster up first and arm the point just before the step
// it tests. A file that is not empty holds a spec of its own, in Env's
// syntax, which replaces Env's while the file holds it: one set of
// processes can be armed at one point, then at another, without a
// restart; each new content starts the counts over. A name that is not
// in Names is refused at the first Inject, so a typo in a test cannot
// pass unnoticed.
package failpoint

// Env is the environment variable that arms failpoints in a failpoints
// build.
const Env = "PERSYS_FAILPOINTS"

// ArmEnv names a file whose existence arms the points of Env, or of the
// spec the file holds; unset, Env's points are armed from the start.
const ArmEnv = "PERSYS_FAILPOINTS_ARM"

// The points, one constant each so that code and tests share the spelling.
const (
	// DockerAfterImage: the image is present, no container exists yet.
	DockerAfterImage = "docker/after-image"
	// DockerAfterCreate: the container exists but was never started.
	DockerAfterCreate = "docker/after-create"
	// DockerAfterStart: the container runs; the agent has not answered.
	DockerAfterStart = "docker/after-start"
	// DockerBetweenStopAndRemove: a replaced or deleted container is
	// stopped but still exists.
	DockerBetweenStopAndRemove = "docker/between-stop-and-remove"

	// SchedulerAfterWorkloadWrite: a new workload is in etcd; nothing
	// placed it yet.
	SchedulerAfterWorkloadWrite = "scheduler/after-workload-write"
	// SchedulerAfterGroupCommit: a group commit of placements is in etcd;
	// no waiter has its answer and the cache does not know it.
	SchedulerAfterGroupCommit = "scheduler/after-group-commit"
	// SchedulerAfterAssign: the assignment is committed; no agent was
	// called.
	SchedulerAfterAssign = "scheduler/after-assign"
	// SchedulerAfterAgentAnswer: the agent applied the revision; its
	// status is not written.
	SchedulerAfterAgentAnswer = "scheduler/after-agent-answer"
	// SchedulerMidMove: a moved workload's new copy runs; the old one is
	// not removed.
	SchedulerMidMove = "scheduler/mid-move"
	// SchedulerAfterNodeDelete: the agent removed a deleted workload; its
	// keys are still in etcd.
	SchedulerAfterNodeDelete = "scheduler/after-node-delete"
	// ComposeAfterCreate: every container of a compose project exists,
	// none was started.
	ComposeAfterCreate = "compose/after-create"
	// ComposeBetweenServices: the first service of a compose project of
	// several runs; the others were created and not started.
	ComposeBetweenServices = "compose/between-services"
	// QEMUAfterProcessStart: the VM's QEMU runs; its guest has not booted
	// and the agent has not answered.
	QEMUAfterProcessStart = "qemu/after-process-start"
)

// Names lists every point.
var Names = []string{
	DockerAfterImage,
	DockerAfterCreate,
	DockerAfterStart,
	DockerBetweenStopAndRemove,
	SchedulerAfterWorkloadWrite,
	SchedulerAfterGroupCommit,
	SchedulerAfterAssign,
	SchedulerAfterAgentAnswer,
	SchedulerMidMove,
	SchedulerAfterNodeDelete,
	ComposeAfterCreate,
	ComposeBetweenServices,
	QEMUAfterProcessStart,
}
