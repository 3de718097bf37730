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
// its Nth hit); the process never runs its shutdown. A name that is not in
// Names is refused at the first Inject, so a typo in a test cannot pass
// unnoticed.
package failpoint

// Env is the environment variable that arms failpoints in a failpoints
// build.
const Env = "PERSYS_FAILPOINTS"

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
)

// Names lists every point.
var Names = []string{
	DockerAfterImage,
	DockerAfterCreate,
	DockerAfterStart,
	DockerBetweenStopAndRemove,
}
