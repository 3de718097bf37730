// Package docker is the runtime for workloads of type CONTAINER: it runs
// one container per workload revision through the Docker Engine API
// (never the docker CLI). Containers are named
// persys-<name>-<uid prefix>-r<revision> (followed by -<node id> when the
// runtime is scoped to a node) and labelled with the workload's
// name, uid and revision, so the engine itself is the agent's ground truth
// after a restart. Callers create a Runtime with New, use it through the
// runtime.Runtime and runtime.Watcher interfaces and Close it when done.
// Errors returned by Apply are *runtime.Failure values with an enum reason.
//
// Secrets: the values in runtime.Instance.Secrets become the container's
// secret_env variables and secret_files (written 0400 under
// Options.SecretsDir, bind-mounted read-only, removed with the container);
// image_pull_secrets select the REGISTRY secret for the image's host
// (package registryauth) when a missing image is pulled. A refused or
// unreachable pull is IMAGE_PULL_FAILED, an image the registry lacks
// IMAGE_NOT_FOUND, a secret or key not delivered SECRET_NOT_FOUND. Values
// never reach logs, labels or failure messages; the container's env shows
// them to whoever can inspect containers on the node.
//
// Status cache: while at least one Watch is active the runtime follows the
// engine's event stream and List answers from a cache of every container's
// status (one list and inspect at start and after each stream gap, then one
// inspect per container event; Apply and Delete write what they see). From
// a gap until its re-list, and with no Watch, List lists and inspects live.
package docker

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/locker"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/failpoint"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/imagepull"
)

// Options configure a Runtime.
type Options struct {
	// Client talks to the engine. Nil: a client from the environment
	// (DOCKER_HOST and friends) with API version negotiation, closed by
	// Close.
	Client *client.Client
	// Logger receives one line per decision. Nil: slog.Default().
	Logger *slog.Logger
	// StopTimeout is how long a container gets between SIGTERM and SIGKILL.
	// Zero: 5s.
	StopTimeout time.Duration
	// PullTimeout bounds pulling a missing image. Zero: 5m.
	PullTimeout time.Duration
	// NodeID, when set, labels every container with runtime.LabelNode and
	// limits list, status, delete and watch to that node's containers, so
	// several agents sharing one engine never see (and never collect as
	// orphans) each other's workloads.
	NodeID string
	// Cluster, when set, labels every container with runtime.LabelCluster
	// and limits list, status, delete and watch to containers it owns
	// (see runtime.Cluster.Owns), so a cluster never sees the containers
	// of another cluster's node of the same id on this engine.
	Cluster *runtime.Cluster
	// SecretsDir is the folder under which secret_files are written
	// (SecretsDir[/node-<NodeID>]/<workload>/<uid>/<container>/, files
	// 0400) and bind-mounted into containers from; the engine must see the
	// same path. A relative path is made
	// absolute. Empty: persys-docker-secrets in the system's temporary
	// folder. The agent passes one under its data folder.
	SecretsDir string
}

// Runtime runs container workloads on one Docker engine. It is safe for
// concurrent use; calls for the same workload name are serialized.
type Runtime struct {
	cli         *client.Client
	ownClient   bool
	log         *slog.Logger
	stopTimeout time.Duration
	pullTimeout time.Duration
	nodeID      string
	cluster     *runtime.Cluster
	secretsDir  string
	locks       locker.Locker // serializes calls per workload name
	cache       *statusCache  // what List answers from while a Watch is active
	fol         follower
}

// New returns a Runtime. It does not contact the engine.
func New(opts Options) (*Runtime, error) {
	if opts.StopTimeout < 0 {
		return nil, fmt.Errorf("docker runtime: StopTimeout %s is negative", opts.StopTimeout)
	}
	if opts.PullTimeout < 0 {
		return nil, fmt.Errorf("docker runtime: PullTimeout %s is negative", opts.PullTimeout)
	}
	if opts.SecretsDir == "" {
		opts.SecretsDir = filepath.Join(os.TempDir(), "persys-docker-secrets")
	}
	// Bind mount sources are absolute.
	secretsDir, err := filepath.Abs(opts.SecretsDir)
	if err != nil {
		return nil, fmt.Errorf("docker runtime: SecretsDir %q: %w", opts.SecretsDir, err)
	}
	if opts.NodeID != "" {
		if strings.ContainsAny(opts.NodeID, "/\x00") {
			return nil, fmt.Errorf("docker runtime: NodeID %q contains '/' or NUL", opts.NodeID)
		}
		secretsDir = filepath.Join(secretsDir, "node-"+opts.NodeID)
	}
	r := &Runtime{
		secretsDir:  secretsDir,
		cli:         opts.Client,
		log:         opts.Logger,
		stopTimeout: opts.StopTimeout,
		pullTimeout: opts.PullTimeout,
		nodeID:      opts.NodeID,
		cluster:     opts.Cluster,
		cache:       newStatusCache(),
	}
	if r.cli == nil {
		cli, err := client.NewClientWithOpts(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			return nil, fmt.Errorf("docker runtime: engine client: %w", err)
		}
		r.cli, r.ownClient = cli, true
	}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("runtime", runtimeName)
	if r.stopTimeout == 0 {
		r.stopTimeout = 5 * time.Second
	}
	if r.pullTimeout == 0 {
		r.pullTimeout = 5 * time.Minute
	}
	return r, nil
}

// Close stops following the engine's events and releases the engine
// client when New created it. Watch channels still open send nothing more.
func (r *Runtime) Close() error {
	r.fol.lifeMu.Lock()
	r.stopFollowing()
	r.fol.lifeMu.Unlock()
	if r.ownClient {
		return r.cli.Close()
	}
	return nil
}

// Type reports WORKLOAD_TYPE_CONTAINER.
func (r *Runtime) Type() persysv1.WorkloadType {
	return persysv1.WorkloadType_WORKLOAD_TYPE_CONTAINER
}

// Apply makes the instance's revision run (or exist stopped). See
// runtime.Runtime.
func (r *Runtime) Apply(ctx context.Context, inst runtime.Instance) (*persysv1.WorkloadStatus, bool, error) {
	spec, err := buildCreateSpec(inst, r.stopSeconds())
	if err != nil {
		return nil, false, err
	}
	if r.nodeID != "" {
		spec.config.Labels[runtime.LabelNode] = r.nodeID
		// Container names are global to the engine: agents sharing one
		// may each run a copy of the same revision (a workload moving
		// between them), so the node keeps the names apart.
		spec.name += "-" + r.nodeID
	}
	if r.cluster != nil {
		id := r.cluster.ID()
		if id == "" {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "apply %s: the agent does not know its cluster id yet", inst.Name)
		}
		spec.config.Labels[runtime.LabelCluster] = id
		// Two clusters' nodes of one id may run the same revision here.
		spec.name += "-" + r.cluster.Short()
	}
	spec.host.Mounts = append(spec.host.Mounts, r.secretMounts(inst.Name, inst.UID, spec.name, spec.secretFiles)...)
	r.locks.Lock(inst.Name)
	defer r.locks.Unlock(inst.Name)
	log := r.log.With("workload", inst.Name, "uid", inst.UID, "revision", inst.Revision)

	existing, err := r.listContainers(ctx, inst.Name, "")
	if err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", inst.Name)
	}
	var current *container.Summary
	rev := fmt.Sprint(inst.Revision)
	for i, c := range existing {
		if c.Labels[runtime.LabelUID] == inst.UID && c.Labels[runtime.LabelRevision] == rev && c.Labels[LabelDesired] == spec.desired {
			current = &existing[i]
			continue
		}
		// Other revisions go first: they may hold the host ports.
		if err := r.stopAndRemove(ctx, c.ID); err != nil {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove container %s of an older revision", containerLabel(c))
		}
		if err := r.removeSecrets(inst.Name, c.Labels[runtime.LabelUID], containerLabel(c)); err != nil {
			log.Warn("remove secret files of another revision", "container", containerLabel(c), "error", err)
		}
		log.Info("removed container of another revision", "container", containerLabel(c),
			"old_uid", c.Labels[runtime.LabelUID], "old_revision", c.Labels[runtime.LabelRevision])
	}

	if current != nil {
		st, done, err := r.reuse(ctx, log, current.ID, spec)
		if err != nil || done {
			return st.status, st.skipped, err
		}
	}

	if err := r.ensureImage(ctx, log, spec.config.Image, spec.pullAuth); err != nil {
		return nil, false, err
	}
	failpoint.Inject(failpoint.DockerAfterImage)
	if err := r.writeSecrets(inst.Name, inst.UID, spec.name, spec.secretFiles); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "write secret files of container %s", spec.name)
	}
	created, err := r.cli.ContainerCreate(ctx, client.ContainerCreateOptions{Config: spec.config, HostConfig: spec.host, Name: spec.name})
	if err != nil {
		if rmErr := r.removeSecrets(inst.Name, inst.UID, spec.name); rmErr != nil {
			log.Warn("remove secret files of a container not created", "container", spec.name, "error", rmErr)
		}
		if cerrdefs.IsNotFound(err) {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, err, "create container %s: image %s", spec.name, spec.config.Image)
		}
		return nil, false, runtime.Fail(classify(err), err, "create container %s", spec.name)
	}
	for _, w := range created.Warnings {
		log.Warn("engine warning on create", "container", spec.name, "warning", w)
	}
	failpoint.Inject(failpoint.DockerAfterCreate)
	if spec.desired == desiredRun {
		if _, err := r.cli.ContainerStart(ctx, created.ID, client.ContainerStartOptions{}); err != nil {
			// Leave nothing half-made: the next apply starts clean.
			if rmErr := r.remove(context.WithoutCancel(ctx), created.ID); rmErr != nil {
				log.Warn("remove container that failed to start", "container", spec.name, "error", rmErr)
			} else if rmErr := r.removeSecrets(inst.Name, inst.UID, spec.name); rmErr != nil {
				log.Warn("remove secret files of a container that failed to start", "container", spec.name, "error", rmErr)
			}
			return nil, false, runtime.Fail(classify(err), err, "start container %s", spec.name)
		}
		failpoint.Inject(failpoint.DockerAfterStart)
	}
	status, err := r.inspectStatus(ctx, created.ID)
	if err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect container %s", spec.name)
	}
	log.Info("container applied", "container", spec.name, "id", shortID(created.ID), "state", contract.Name(status.GetState()))
	return status, false, nil
}

type reuseResult struct {
	status  *persysv1.WorkloadStatus
	skipped bool
}

// reuse decides what to do with the container that already has the
// instance's uid and revision. done reports that Apply is finished;
// otherwise the container is gone and a new one must be created.
func (r *Runtime) reuse(ctx context.Context, log *slog.Logger, id string, spec *createSpec) (res reuseResult, done bool, err error) {
	desired := spec.desired
	res0, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		return res, false, nil
	}
	if err != nil {
		return res, true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect container %s", shortID(id))
	}
	info := res0.Container
	var state container.ContainerState
	if info.State != nil {
		state = info.State.Status
	}
	name := strings.TrimPrefix(info.Name, "/")
	switch {
	case desired == desiredRun && (state == container.StateRunning || state == container.StatePaused || state == container.StateRestarting),
		desired == desiredStop && (state == container.StateExited || state == container.StateCreated):
		log.Debug("apply skipped: revision already applied", "container", name, "state", state)
		return reuseResult{status: statusOf(info), skipped: true}, true, nil
	case desired == desiredRun && state == container.StateCreated:
		// Bind mounts are resolved at start: put the secret files back in
		// case they went (a cleared temporary folder).
		if err := r.writeSecrets(spec.workload, spec.uid, name, spec.secretFiles); err != nil {
			return res, true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "write secret files of container %s", name)
		}
		if _, err := r.cli.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
			// Leave nothing half-made, as a failed fresh start does: the
			// next apply creates the container from its spec again, with
			// the host ports the scheduler gives then (a kept container
			// would retry a taken port for ever).
			if rmErr := r.remove(context.WithoutCancel(ctx), id); rmErr != nil {
				log.Warn("remove created container that failed to start", "container", name, "error", rmErr)
			} else if rmErr := r.removeSecrets(spec.workload, spec.uid, name); rmErr != nil {
				log.Warn("remove secret files of a container that failed to start", "container", name, "error", rmErr)
			}
			return res, true, runtime.Fail(classify(err), err, "start container %s", name)
		}
		log.Info("started created container", "container", name)
	case desired == desiredStop && (state == container.StateRunning || state == container.StatePaused || state == container.StateRestarting):
		if err := r.stop(ctx, id); err != nil {
			return res, true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "stop container %s", name)
		}
		log.Info("stopped container", "container", name)
	default:
		// Exited, dead or being removed: replace it.
		if err := r.remove(ctx, id); err != nil {
			return res, true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove %s container %s", state, name)
		}
		log.Info("removed container to recreate it", "container", name, "state", state)
		return res, false, nil
	}
	status, err := r.inspectStatus(ctx, id)
	if err != nil {
		return res, true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect container %s", name)
	}
	return reuseResult{status: status}, true, nil
}

// ensureImage makes the image present, pulling it when missing with auth
// (the Engine API's X-Registry-Auth value; "" pulls anonymously).
func (r *Runtime) ensureImage(ctx context.Context, log *slog.Logger, ref, auth string) error {
	_, err := r.cli.ImageInspect(ctx, ref)
	if err == nil {
		return nil
	}
	if !cerrdefs.IsNotFound(err) {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect image %s", ref)
	}
	pullCtx, cancel := context.WithTimeout(ctx, r.pullTimeout)
	defer cancel()
	start := time.Now()
	if err := imagepull.Pull(pullCtx, r.cli, ref, auth); err != nil {
		reason := imagepull.Classify(err)
		log.Warn("image pull failed", "image", ref, "with_credentials", auth != "", "reason", contract.Name(reason), "error", err)
		return runtime.Fail(reason, err, "image %s is not present and could not be pulled", ref)
	}
	if _, err := r.cli.ImageInspect(ctx, ref); err != nil {
		return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND, err, "image %s missing after pull", ref)
	}
	log.Info("image pulled", "image", ref, "with_credentials", auth != "", "duration", time.Since(start).String())
	return nil
}

// Delete stops and removes every container of the workload (only those
// with uid, when uid is not empty), anonymous volumes included.
func (r *Runtime) Delete(ctx context.Context, name, uid string) (bool, error) {
	if name == "" {
		return false, invalid("name: empty")
	}
	r.locks.Lock(name)
	defer r.locks.Unlock(name)
	existing, err := r.listContainers(ctx, name, uid)
	if err != nil {
		return false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	for _, c := range existing {
		if err := r.stopAndRemove(ctx, c.ID); err != nil {
			return true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove container %s", containerLabel(c))
		}
		r.log.Info("container deleted", "workload", name, "container", containerLabel(c),
			"uid", c.Labels[runtime.LabelUID], "revision", c.Labels[runtime.LabelRevision])
	}
	// The folder goes even when its containers went behind our back.
	if err := r.removeWorkloadSecrets(name, uid); err != nil {
		return len(existing) > 0, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "remove secret files of %s", name)
	}
	return len(existing) > 0, nil
}

// Status reports the newest revision of the workload, MISSING when the
// engine has no container for it.
func (r *Runtime) Status(ctx context.Context, name string) (*persysv1.WorkloadStatus, error) {
	if name == "" {
		return nil, invalid("name: empty")
	}
	existing, err := r.listContainers(ctx, name, "")
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	for _, c := range newestFirst(existing) {
		st, err := r.inspectStatus(ctx, c.ID)
		if cerrdefs.IsNotFound(err) {
			continue // removed meanwhile; look at the next one
		}
		if err != nil {
			return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect container %s", containerLabel(c))
		}
		return st, nil
	}
	return missing(name), nil
}

// List reports the newest revision of every workload with a container.
// While a Watch is active and the event stream has had no gap since its
// last re-list, the answer comes from the status cache and costs no engine
// call; otherwise (no watcher yet, or a gap until the re-list completes) it
// lists and inspects live, so it never reports a container RUNNING that
// the engine saw die.
func (r *Runtime) List(ctx context.Context) ([]*persysv1.WorkloadStatus, error) {
	if ws, ok := r.cache.list(r.cluster.Owns); ok {
		return ws, nil
	}
	return r.listLive(ctx)
}

// listLive lists the containers and inspects each workload's newest.
func (r *Runtime) listLive(ctx context.Context) ([]*persysv1.WorkloadStatus, error) {
	all, err := r.listContainers(ctx, "", "")
	if err != nil {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers")
	}
	byName := map[string][]container.Summary{}
	for _, c := range all {
		name := c.Labels[runtime.LabelWorkload]
		if name == "" {
			continue
		}
		byName[name] = append(byName[name], c)
	}
	out := make([]*persysv1.WorkloadStatus, 0, len(byName))
	for _, name := range sortedKeys(byName) {
		for _, c := range newestFirst(byName[name]) {
			st, err := r.inspectStatus(ctx, c.ID)
			if cerrdefs.IsNotFound(err) {
				continue
			}
			if err != nil {
				return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect container %s", containerLabel(c))
			}
			out = append(out, st)
			break
		}
	}
	return out, nil
}

func missing(name string) *persysv1.WorkloadStatus {
	return &persysv1.WorkloadStatus{
		Name:      name,
		State:     persysv1.ActualState_ACTUAL_STATE_MISSING,
		UpdatedAt: timestamppb.Now(),
	}
}

// managedFilter selects this runtime's containers on this node, optionally
// of one workload name and uid.
func (r *Runtime) managedFilter(name, uid string) client.Filters {
	f := make(client.Filters).Add("label", runtime.LabelManaged+"=true").Add("label", LabelRuntime+"="+runtimeName)
	if r.nodeID != "" {
		f.Add("label", runtime.LabelNode+"="+r.nodeID)
	}
	if name != "" {
		f.Add("label", runtime.LabelWorkload+"="+name)
	}
	if uid != "" {
		f.Add("label", runtime.LabelUID+"="+uid)
	}
	return f
}

// listNodeContainers lists this runtime's containers on this node, of
// every cluster.
func (r *Runtime) listNodeContainers(ctx context.Context, name, uid string) ([]container.Summary, error) {
	res, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: r.managedFilter(name, uid)})
	if err != nil {
		return nil, fmt.Errorf("container list: %w", err)
	}
	return res.Items, nil
}

// listContainers lists this runtime's containers of this node and cluster.
func (r *Runtime) listContainers(ctx context.Context, name, uid string) ([]container.Summary, error) {
	cs, err := r.listNodeContainers(ctx, name, uid)
	if err != nil {
		return nil, err
	}
	// The engine's filters cannot say "this cluster or no cluster label".
	owned := cs[:0]
	for _, c := range cs {
		if r.cluster.Owns(c.Labels[runtime.LabelCluster]) {
			owned = append(owned, c)
		}
	}
	return owned, nil
}

// inspectStatus inspects one container and records what it saw (or that
// the container is gone) in the status cache.
func (r *Runtime) inspectStatus(ctx context.Context, id string) (*persysv1.WorkloadStatus, error) {
	t := r.cache.begin()
	defer r.cache.end(t)
	res, err := r.cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if cerrdefs.IsNotFound(err) {
		r.cache.gone(id)
	}
	if err != nil {
		return nil, fmt.Errorf("container inspect %s: %w", shortID(id), err)
	}
	st := statusOf(res.Container)
	var cluster string
	if res.Container.Config != nil {
		cluster = res.Container.Config.Labels[runtime.LabelCluster]
	}
	r.cache.put(t, id, st, createdAt(res.Container.Created), cluster)
	return st, nil
}

// createdAt parses the engine's creation time; zero when malformed.
func createdAt(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

func (r *Runtime) stopSeconds() int {
	return int(math.Ceil(r.stopTimeout.Seconds()))
}

// stop stops a container gracefully within StopTimeout; a container that
// is gone or already stopped is fine.
func (r *Runtime) stop(ctx context.Context, id string) error {
	secs := r.stopSeconds()
	_, err := r.cli.ContainerStop(ctx, id, client.ContainerStopOptions{Timeout: &secs})
	if err != nil && !cerrdefs.IsNotFound(err) && !cerrdefs.IsNotModified(err) {
		return fmt.Errorf("container stop %s: %w", shortID(id), err)
	}
	return nil
}

// remove force-removes a container and its anonymous volumes; a container
// that is gone (or already being removed) is fine.
func (r *Runtime) remove(ctx context.Context, id string) error {
	_, err := r.cli.ContainerRemove(ctx, id, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
	if err != nil && !cerrdefs.IsNotFound(err) && !(cerrdefs.IsConflict(err) && strings.Contains(err.Error(), "already in progress")) {
		return fmt.Errorf("container remove %s: %w", shortID(id), err)
	}
	r.cache.gone(id)
	return nil
}

func (r *Runtime) stopAndRemove(ctx context.Context, id string) error {
	if err := r.stop(ctx, id); err != nil {
		return err
	}
	failpoint.Inject(failpoint.DockerBetweenStopAndRemove)
	return r.remove(ctx, id)
}

// newestFirst orders containers by revision, then creation time, newest
// first.
func newestFirst(cs []container.Summary) []container.Summary {
	out := slices.Clone(cs)
	slices.SortStableFunc(out, func(a, b container.Summary) int {
		ra, rb := revisionOf(a.Labels), revisionOf(b.Labels)
		switch {
		case ra != rb:
			if ra > rb {
				return -1
			}
			return 1
		case a.Created != b.Created:
			if a.Created > b.Created {
				return -1
			}
			return 1
		}
		return 0
	})
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func containerLabel(c container.Summary) string {
	if len(c.Names) > 0 {
		return strings.TrimPrefix(c.Names[0], "/")
	}
	return shortID(c.ID)
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Interface guards.
var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Watcher = (*Runtime)(nil)
)
