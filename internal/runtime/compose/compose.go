// Package compose is the runtime for workloads of type COMPOSE: it runs a
// compose project per workload through the Compose SDK used as a Go
// library (github.com/docker/compose/v5/pkg/compose with a docker CLI
// object from github.com/docker/cli), never a compose binary. The compose
// file is inline or read from a Git checkout (internal/gitsource), parsed
// and checked with internal/composespec, and changed before it runs:
// spec.compose.env, secret_env and secret_files are injected, and every
// container carries the persys labels (managed, workload, uid, revision,
// node, cluster), so the engine is the ground truth and agents sharing one
// engine stay apart (everything is filtered by persys.node and, with
// Config.Cluster, persys.cluster); the project's networks and volumes carry
// the same labels.
//
// Project names are persys-<workload>[-<node>][-<cluster>] sanitized (the
// cluster id cut to 12 characters); images are
// pulled by the runtime (with the image_pull_secrets credentials matching
// each image's registry) only when missing, and compose itself never pulls.
// Per-workload files (Git cache, secret files, the applied revision) live
// under Config.StateDir/<workload>. Callers create a Runtime with New, use
// it through runtime.Runtime and runtime.Logger, and Close it. Errors from
// Apply are *runtime.Failure values with an enum reason.
package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/flags"
	"github.com/docker/compose/v5/pkg/api"
	sdk "github.com/docker/compose/v5/pkg/compose"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/composespec"
	"github.com/persys-dev/compute/internal/gitsource"
	"github.com/persys-dev/compute/internal/registryauth"
	"github.com/persys-dev/compute/internal/runtime"
)

const runtimeName = "compose"

// Config configures a Runtime.
type Config struct {
	// NodeID labels every container (runtime.LabelNode), is part of the
	// project name, and limits list, status and delete to this node.
	NodeID string
	// Cluster, when set, labels every container, network and volume with
	// runtime.LabelCluster, is part of the project name, and limits list,
	// status, delete and watch to what it owns (runtime.Cluster.Owns).
	Cluster *runtime.Cluster
	// StateDir holds per-workload Git caches, secret files and the applied
	// revision. Required.
	StateDir string
	// DockerHost is the engine address (unix:///var/run/docker.sock,
	// tcp://...). Empty: DOCKER_HOST or the default socket.
	DockerHost string
	// Client is an existing Engine API client for image pulls, listing and
	// logs. Nil: one for DockerHost, closed by Close.
	Client *client.Client
	// Logger receives one line per decision; never secret values. Nil:
	// slog.Default().
	Logger *slog.Logger
	// StopTimeout bounds a service's stop when it sets no
	// stop_grace_period. Zero: 10s (compose's default).
	StopTimeout time.Duration
	// PullTimeout bounds pulling one missing image. Zero: 5m.
	PullTimeout time.Duration
	// StartTimeout bounds waiting for the services to run. Zero: 2m.
	StartTimeout time.Duration
	// Spec relaxes composespec's refusals (host network, privileged, bind
	// paths); WorkingDir is set by the runtime.
	Spec composespec.Options
}

// Runtime runs compose workloads on one Docker engine. Calls for the same
// workload are serialized.
type Runtime struct {
	cfg       Config
	cli       *client.Client
	ownClient bool
	svc       api.Compose
	log       *slog.Logger
	locks     keyedMutex
}

// New returns a Runtime. It does not contact the engine.
func New(cfg Config) (*Runtime, error) {
	if cfg.StateDir == "" {
		return nil, errors.New("compose runtime: StateDir is empty")
	}
	if cfg.StopTimeout < 0 || cfg.PullTimeout < 0 || cfg.StartTimeout < 0 {
		return nil, errors.New("compose runtime: negative timeout")
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = 10 * time.Second
	}
	if cfg.PullTimeout == 0 {
		cfg.PullTimeout = 5 * time.Minute
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 2 * time.Minute
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("compose runtime: state dir: %w", err)
	}
	r := &Runtime{cfg: cfg, cli: cfg.Client, log: cfg.Logger}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.log = r.log.With("runtime", runtimeName)
	if r.cli == nil {
		opts := []client.Opt{client.FromEnv, client.WithAPIVersionNegotiation()}
		if cfg.DockerHost != "" {
			opts = append(opts, client.WithHost(cfg.DockerHost))
		}
		cli, err := client.NewClientWithOpts(opts...)
		if err != nil {
			return nil, fmt.Errorf("compose runtime: engine client: %w", err)
		}
		r.cli, r.ownClient = cli, true
	}
	// The SDK speaks through the same engine client as the runtime.
	dockerCli, err := command.NewDockerCli(
		command.WithAPIClient(r.cli),
		command.WithCombinedStreams(io.Discard),
		command.WithInputStream(io.NopCloser(bytes.NewReader(nil))),
	)
	if err != nil {
		r.closeOwn()
		return nil, fmt.Errorf("compose runtime: docker cli: %w", err)
	}
	copts := flags.NewClientOptions()
	// A private config dir: no credential helpers or contexts of the host
	// user leak in; the runtime pulls with the workload's own secrets.
	copts.ConfigDir = filepath.Join(cfg.StateDir, ".docker")
	if err := os.MkdirAll(copts.ConfigDir, 0o700); err != nil {
		r.closeOwn()
		return nil, fmt.Errorf("compose runtime: docker config dir: %w", err)
	}
	if err := dockerCli.Initialize(copts); err != nil {
		r.closeOwn()
		return nil, fmt.Errorf("compose runtime: docker cli: %w", err)
	}
	svc, err := sdk.NewComposeService(dockerCli,
		sdk.WithStreams(io.Discard, io.Discard, bytes.NewReader(nil)),
		sdk.WithPrompt(func(string, bool) (bool, error) { return false, nil }),
	)
	if err != nil {
		r.closeOwn()
		return nil, fmt.Errorf("compose runtime: compose service: %w", err)
	}
	r.svc = svc
	return r, nil
}

func (r *Runtime) closeOwn() {
	if r.ownClient {
		_ = r.cli.Close()
	}
}

// Close releases the engine clients New created.
func (r *Runtime) Close() error {
	r.closeOwn()
	return nil
}

// Type reports WORKLOAD_TYPE_COMPOSE.
func (r *Runtime) Type() persysv1.WorkloadType { return persysv1.WorkloadType_WORKLOAD_TYPE_COMPOSE }

var nameUnsafe = regexp.MustCompile(`[^a-z0-9_-]+`)

func sanitize(s string) string {
	s = nameUnsafe.ReplaceAllString(strings.ToLower(s), "-")
	return strings.Trim(s, "-_")
}

// ProjectName is the compose project of a workload on a node of a cluster
// (clusterID cut to 12 characters; empty for runtimes without a cluster).
func ProjectName(nodeID, clusterID, workload string) string {
	n := "persys-" + sanitize(workload)
	if nodeID != "" {
		n += "-" + sanitize(nodeID)
	}
	if len(clusterID) > 12 {
		clusterID = clusterID[:12]
	}
	if clusterID != "" {
		n += "-" + sanitize(clusterID)
	}
	return n
}

func (r *Runtime) project(name string) string {
	return ProjectName(r.cfg.NodeID, r.cfg.Cluster.ID(), name)
}

// workDir is the workload's folder under StateDir.
func (r *Runtime) workDir(name string) string {
	return filepath.Join(r.cfg.StateDir, "workloads", sanitize(name)+"-"+shortHash(name))
}

// Label on containers: the service's desired replica count, so status can
// count without the compose file.
const (
	labelReplicas = "persys.compose.replicas"
)

// state is what Apply records in the workload's folder: what was applied
// and what Delete and Status need without the spec.
type state struct {
	Name         string         `json:"name"`
	UID          string         `json:"uid"`
	Revision     uint64         `json:"revision"`
	Desired      string         `json:"desired"`
	Project      string         `json:"project"`
	RetainVolume bool           `json:"retain_volumes"`
	Replicas     map[string]int `json:"replicas"`
	Commit       string         `json:"commit,omitempty"`
	Complete     bool           `json:"complete"`
}

func (r *Runtime) readState(name string) (*state, error) {
	data, err := os.ReadFile(filepath.Join(r.workDir(name), "state.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("state of %s: %w", name, err)
	}
	return &st, nil
}

func (r *Runtime) writeState(st *state) error {
	dir := r.workDir(st.Name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, "state.json.tmp")
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "state.json"))
}

const (
	desiredRun  = "running"
	desiredStop = "stopped"
)

func invalid(format string, args ...any) *runtime.Failure {
	return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, format, args...)
}

// Apply makes the instance's revision of the project run (or exist
// stopped). See runtime.Runtime.
func (r *Runtime) Apply(ctx context.Context, inst runtime.Instance) (*persysv1.WorkloadStatus, bool, error) {
	if inst.Name == "" {
		return nil, false, invalid("name: empty")
	}
	spec := inst.Spec.GetCompose()
	if spec == nil {
		return nil, false, invalid("spec.compose: required for a compose workload")
	}
	desired := desiredRun
	if inst.Spec.GetDesiredState() == persysv1.DesiredState_DESIRED_STATE_STOPPED {
		desired = desiredStop
	}
	if r.cfg.Cluster != nil && r.cfg.Cluster.ID() == "" {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "apply %s: the agent does not know its cluster id yet", inst.Name)
	}
	unlock := r.locks.lock(inst.Name)
	defer unlock()
	log := r.log.With("workload", inst.Name, "uid", inst.UID, "revision", inst.Revision)
	projectName := r.project(inst.Name)

	prev, err := r.readState(inst.Name)
	if err != nil {
		log.Warn("unreadable compose state, applying afresh", "error", err)
		prev = nil
	}
	if prev != nil && prev.Complete && prev.UID == inst.UID && prev.Revision == inst.Revision && prev.Desired == desired {
		st, err := r.status(ctx, inst.Name, prev)
		if err == nil && settled(st, desired) {
			return st, true, nil
		}
	}
	if prev != nil && prev.UID != inst.UID {
		// Another incarnation of the name: it goes first, with its volumes
		// unless it kept them.
		if err := r.down(ctx, prev.Project, !prev.RetainVolume); err != nil {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove project %s of uid %s", prev.Project, prev.UID)
		}
		log.Info("removed project of another uid", "project", prev.Project, "old_uid", prev.UID)
	}

	if prev == nil || prev.UID != inst.UID {
		// Containers of another uid without a state file (the state folder
		// was lost): they would be taken for this one's.
		ctrs, err := r.containers(ctx, inst.Name)
		if err != nil {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", inst.Name)
		}
		for _, c := range ctrs {
			if c.Labels[runtime.LabelUID] != inst.UID {
				if err := r.down(ctx, c.Labels[api.ProjectLabel], false); err != nil {
					return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "remove project %s of uid %s", c.Labels[api.ProjectLabel], c.Labels[runtime.LabelUID])
				}
				log.Info("removed unrecorded project of another uid", "project", c.Labels[api.ProjectLabel], "old_uid", c.Labels[runtime.LabelUID])
				break
			}
		}
	}

	project, commit, err := r.load(ctx, inst)
	if err != nil {
		return nil, false, err
	}
	if err := r.ensureImages(ctx, log, inst, project); err != nil {
		return nil, false, err
	}

	st := &state{
		Name: inst.Name, UID: inst.UID, Revision: inst.Revision, Desired: desired, Project: projectName,
		RetainVolume: spec.GetVolumeRetain() == persysv1.RetainPolicy_RETAIN_POLICY_RETAIN,
		Replicas:     map[string]int{}, Commit: commit,
	}
	for name, s := range project.Services {
		st.Replicas[name] = replicas(s)
	}
	// Recorded before up, so a delete after a half-done up still knows
	// the project and its retain policy.
	if err := r.writeState(st); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "record state of %s", inst.Name)
	}

	stop := r.cfg.StopTimeout
	create := api.CreateOptions{
		RemoveOrphans:        true,
		Recreate:             api.RecreateDiverged,
		RecreateDependencies: api.RecreateDiverged,
		Inherit:              true,
		Timeout:              &stop,
		QuietPull:            true,
	}
	start := time.Now()
	if desired == desiredStop {
		err = r.svc.Create(ctx, project, create)
		if err == nil {
			err = r.svc.Stop(ctx, projectName, api.StopOptions{Project: project, Timeout: &stop})
		}
	} else {
		upCtx, cancel := context.WithTimeout(ctx, r.cfg.StartTimeout)
		err = r.svc.Up(upCtx, project, api.UpOptions{
			Create: create,
			Start:  api.StartOptions{Project: project, Wait: true, WaitTimeout: r.cfg.StartTimeout},
		})
		cancel()
	}
	status, serr := r.status(ctx, inst.Name, st)
	if err != nil {
		// A service that exited is a status, not an apply error.
		if serr == nil && status.GetState() == persysv1.ActualState_ACTUAL_STATE_FAILED {
			st.Complete = true
			_ = r.writeState(st)
			log.Warn("compose project applied with a failed service", "project", projectName, "message", status.GetMessage())
			return status, false, nil
		}
		return nil, false, runtime.Fail(classify(err), err, "compose up %s", projectName)
	}
	if serr != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, serr, "status of %s", projectName)
	}
	st.Complete = true
	if err := r.writeState(st); err != nil {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "record state of %s", inst.Name)
	}
	log.Info("compose project applied", "project", projectName, "services", len(project.Services),
		"state", status.GetState().String(), "duration", time.Since(start).Round(time.Millisecond).String())
	return status, false, nil
}

// settled reports that an applied revision needs nothing more.
func settled(st *persysv1.WorkloadStatus, desired string) bool {
	switch desired {
	case desiredStop:
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_STOPPED
	default:
		return st.GetState() == persysv1.ActualState_ACTUAL_STATE_RUNNING
	}
}

func replicas(s types.ServiceConfig) int {
	if s.Deploy != nil && s.Deploy.Replicas != nil {
		return *s.Deploy.Replicas
	}
	if s.Scale != nil {
		return *s.Scale
	}
	return 1
}

// load reads the compose file (inline or from Git), parses it and makes
// it the workload's project: env, secrets, labels, pull policy.
func (r *Runtime) load(ctx context.Context, inst runtime.Instance) (*types.Project, string, error) {
	spec := inst.Spec.GetCompose()
	var data []byte
	var commit string
	opts := r.cfg.Spec
	opts.WorkingDir = ""
	switch {
	case spec.GetInline() != "" && spec.GetGit() != nil:
		return nil, "", invalid("spec.compose: set exactly one of inline and git")
	case spec.GetInline() != "":
		data = []byte(spec.GetInline())
	case spec.GetGit() != nil:
		g := spec.GetGit()
		var auth *gitsource.Auth
		if c := g.GetCredentialsSecret(); c != "" {
			sv, ok := inst.Secrets[c]
			if !ok {
				return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "spec.compose.git.credentials_secret: secret %q was not delivered with the workload", c)
			}
			a, err := gitsource.AuthFromSecret(sv)
			if err != nil {
				return nil, "", invalid("spec.compose.git.credentials_secret %q: %v", c, err)
			}
			auth = a
		}
		commit = g.GetResolvedCommit()
		if commit == "" {
			c, err := gitsource.Resolve(ctx, g, auth)
			if err != nil {
				return nil, "", err
			}
			commit = c
		}
		dir, err := gitsource.Checkout(ctx, g, commit, filepath.Join(r.workDir(inst.Name), "git"), auth)
		if err != nil {
			return nil, "", err
		}
		content, file, err := gitsource.ReadComposeFile(dir, g.GetPath())
		if err != nil {
			return nil, "", err
		}
		data = content
		opts.WorkingDir = filepath.Join(dir, filepath.FromSlash(path.Dir(file)))
	default:
		return nil, "", invalid("spec.compose: set one of inline and git")
	}

	env := spec.GetEnv()
	project, err := composespec.ParseWithOptions(ctx, data, env, r.project(inst.Name), opts)
	if err != nil {
		var ce *composespec.Error
		if errors.As(err, &ce) {
			return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC, nil, "%s", ce.Error())
		}
		return nil, "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "load compose file")
	}

	secretEnv, err := r.secretEnv(inst, project)
	if err != nil {
		return nil, "", err
	}
	mounts, err := r.writeSecretFiles(inst, project)
	if err != nil {
		return nil, "", err
	}

	for name, s := range project.Services {
		if s.Environment == nil {
			s.Environment = types.MappingWithEquals{}
		}
		for _, k := range slices.Sorted(maps.Keys(env)) {
			if _, set := s.Environment[k]; !set {
				v := env[k]
				s.Environment[k] = &v
			}
		}
		for k, v := range secretEnv[name] {
			s.Environment[k] = &v
		}
		s.Volumes = append(s.Volumes, mounts[name]...)
		s.CustomLabels = map[string]string{
			api.ProjectLabel:      project.Name,
			api.ServiceLabel:      name,
			api.VersionLabel:      api.ComposeVersion,
			api.WorkingDirLabel:   project.WorkingDir,
			api.ConfigFilesLabel:  "",
			api.OneoffLabel:       "False",
			runtime.LabelManaged:  "true",
			runtime.LabelWorkload: inst.Name,
			runtime.LabelUID:      inst.UID,
			runtime.LabelRevision: strconv.FormatUint(inst.Revision, 10),
			labelReplicas:         strconv.Itoa(replicas(s)),
		}
		maps.Copy(s.CustomLabels, r.ownerLabels(inst.Name))
		// The runtime pulls what is missing before up (with the
		// workload's credentials); compose itself never pulls.
		s.PullPolicy = types.PullPolicyNever
		project.Services[name] = s
	}
	// Networks and volumes the project creates are named after it and
	// carry whose they are; external ones belong to someone else.
	for name, n := range project.Networks {
		if !bool(n.External) {
			n.CustomLabels = maps.Clone(n.CustomLabels)
			if n.CustomLabels == nil {
				n.CustomLabels = types.Labels{}
			}
			maps.Copy(n.CustomLabels, r.ownerLabels(inst.Name))
			project.Networks[name] = n
		}
	}
	for name, v := range project.Volumes {
		if !bool(v.External) {
			v.CustomLabels = maps.Clone(v.CustomLabels)
			if v.CustomLabels == nil {
				v.CustomLabels = types.Labels{}
			}
			maps.Copy(v.CustomLabels, r.ownerLabels(inst.Name))
			project.Volumes[name] = v
		}
	}
	return project, commit, nil
}

// ownerLabels say whose an object of workload name is: managed by persys,
// this node's, this cluster's.
func (r *Runtime) ownerLabels(name string) map[string]string {
	l := map[string]string{runtime.LabelManaged: "true", runtime.LabelWorkload: name}
	if r.cfg.NodeID != "" {
		l[runtime.LabelNode] = r.cfg.NodeID
	}
	if id := r.cfg.Cluster.ID(); id != "" {
		l[runtime.LabelCluster] = id
	}
	return l
}

// Size limits of secret material.
const (
	maxSecretRefs      = 64
	maxSecretFileBytes = 1 << 20
)

func servicesFor(project *types.Project, field string, names []string) ([]string, error) {
	if len(names) == 0 {
		return slices.Sorted(maps.Keys(project.Services)), nil
	}
	for _, n := range names {
		if _, ok := project.Services[n]; !ok {
			return nil, invalid("%s.services: service %q is not in the compose file", field, n)
		}
	}
	return names, nil
}

// secretEnv returns service → variable → value of spec.secret_env.
func (r *Runtime) secretEnv(inst runtime.Instance, project *types.Project) (map[string]map[string]string, error) {
	refs := inst.Spec.GetSecretEnv()
	if len(refs) > maxSecretRefs {
		return nil, invalid("spec.secret_env: %d entries, above the limit of %d", len(refs), maxSecretRefs)
	}
	out := map[string]map[string]string{}
	for i, ref := range refs {
		field := fmt.Sprintf("spec.secret_env[%d]", i)
		if ref.GetName() == "" || ref.GetSecret() == "" || ref.GetKey() == "" {
			return nil, invalid("%s: name, secret and key are required", field)
		}
		v, err := inst.SecretValue(ref.GetSecret(), ref.GetKey())
		if err != nil {
			return nil, prefixed(field, err)
		}
		svcs, err := servicesFor(project, field, ref.GetServices())
		if err != nil {
			return nil, err
		}
		for _, s := range svcs {
			if out[s] == nil {
				out[s] = map[string]string{}
			}
			out[s][ref.GetName()] = string(v)
		}
	}
	return out, nil
}

// writeSecretFiles writes spec.secret_files under the workload's folder
// (0400 files in 0700 folders, rewritten in place so running containers'
// binds see new values) and returns the read-only binds per service.
func (r *Runtime) writeSecretFiles(inst runtime.Instance, project *types.Project) (map[string][]types.ServiceVolumeConfig, error) {
	refs := inst.Spec.GetSecretFiles()
	if len(refs) > maxSecretRefs {
		return nil, invalid("spec.secret_files: %d entries, above the limit of %d", len(refs), maxSecretRefs)
	}
	root := filepath.Join(r.workDir(inst.Name), "secrets")
	if len(refs) == 0 {
		_ = os.RemoveAll(root)
		return nil, nil
	}
	out := map[string][]types.ServiceVolumeConfig{}
	keep := map[string]bool{}
	for i, ref := range refs {
		field := fmt.Sprintf("spec.secret_files[%d]", i)
		target := ref.GetPath()
		if ref.GetSecret() == "" || !path.IsAbs(target) || path.Clean(target) == "/" {
			return nil, invalid("%s: secret and an absolute path (not /) are required", field)
		}
		svcs, err := servicesFor(project, field, ref.GetServices())
		if err != nil {
			return nil, err
		}
		files := map[string][]byte{}
		single := ref.GetKey() != ""
		if single {
			v, err := inst.SecretValue(ref.GetSecret(), ref.GetKey())
			if err != nil {
				return nil, prefixed(field, err)
			}
			files["value"] = v
		} else {
			sv, ok := inst.Secrets[ref.GetSecret()]
			if !ok {
				return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "%s: secret %q was not delivered with the workload", field, ref.GetSecret())
			}
			for k, v := range sv.GetData() {
				if k == "" || strings.ContainsAny(k, "/\x00") || k == "." || k == ".." {
					return nil, invalid("%s: secret %q has key %q that is not a file name", field, ref.GetSecret(), k)
				}
				files[k] = v
			}
		}
		dir := filepath.Join(root, strconv.Itoa(i))
		keep[dir] = true
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "%s: create secret folder", field)
		}
		for k, v := range files {
			if len(v) > maxSecretFileBytes {
				return nil, invalid("%s: secret %q is %d bytes, above the file limit of %d", field, ref.GetSecret(), len(v), maxSecretFileBytes)
			}
			if err := writeInPlace(filepath.Join(dir, k), v); err != nil {
				return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "%s: write secret file", field)
			}
		}
		src := dir
		if single {
			src = filepath.Join(dir, "value")
		}
		for _, s := range svcs {
			out[s] = append(out[s], types.ServiceVolumeConfig{
				Type: types.VolumeTypeBind, Source: src, Target: target, ReadOnly: true,
				Bind: &types.ServiceVolumeBind{CreateHostPath: false},
			})
		}
	}
	// Folders of entries that are gone.
	if ents, err := os.ReadDir(root); err == nil {
		for _, e := range ents {
			if p := filepath.Join(root, e.Name()); !keep[p] {
				_ = os.RemoveAll(p)
			}
		}
	}
	return out, nil
}

// writeInPlace rewrites a file's content keeping its inode (a bind mount
// of it keeps seeing it), mode 0400.
func writeInPlace(p string, v []byte) error {
	_ = os.Chmod(p, 0o600)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(v); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Chmod(p, 0o400)
}

func prefixed(field string, err error) error {
	var f *runtime.Failure
	if errors.As(err, &f) {
		return runtime.Fail(f.Reason, f.Err, "%s: %s", field, f.Message)
	}
	return fmt.Errorf("%s: %w", field, err)
}

// ensureImages pulls every service image that is not present, with the
// image_pull_secrets credentials whose server matches its registry.
func (r *Runtime) ensureImages(ctx context.Context, log *slog.Logger, inst runtime.Instance, project *types.Project) error {
	names := inst.Spec.GetImagePullSecrets()
	if len(names) > maxSecretRefs {
		return invalid("spec.image_pull_secrets: %d entries, above the limit of %d", len(names), maxSecretRefs)
	}
	var svs []*persysv1.SecretValue
	for i, n := range names {
		field := fmt.Sprintf("spec.image_pull_secrets[%d]", i)
		sv, ok := inst.Secrets[n]
		if !ok {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "%s: secret %q was not delivered with the workload", field, n)
		}
		if sv.GetType() != persysv1.SecretType_SECRET_TYPE_REGISTRY {
			return invalid("%s: secret %q is of type %s, not %s", field, n, sv.GetType(), persysv1.SecretType_SECRET_TYPE_REGISTRY)
		}
		svs = append(svs, sv)
	}
	seen := map[string]bool{}
	for _, svcName := range slices.Sorted(maps.Keys(project.Services)) {
		ref := project.Services[svcName].Image
		if seen[ref] {
			continue
		}
		seen[ref] = true
		if _, err := r.cli.ImageInspect(ctx, ref); err == nil {
			continue
		} else if !cerrdefs.IsNotFound(err) {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "inspect image %s", ref)
		}
		auth, withCreds, err := registryauth.For(ref, svs)
		if err != nil {
			if errors.Is(err, registryauth.ErrInvalidImage) {
				return invalid("services.%s.image: %v", svcName, err)
			}
			if errors.Is(err, registryauth.ErrMissingKey) {
				return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "spec.image_pull_secrets: %v", err)
			}
			return invalid("spec.image_pull_secrets: %v", err)
		}
		pullCtx, cancel := context.WithTimeout(ctx, r.cfg.PullTimeout)
		start := time.Now()
		err = r.pull(pullCtx, ref, auth)
		cancel()
		if err != nil {
			reason := classifyPull(err)
			log.Warn("image pull failed", "service", svcName, "image", ref, "with_credentials", withCreds, "reason", reason.String(), "error", err)
			return runtime.Fail(reason, err, "services.%s: image %s is not present and could not be pulled", svcName, ref)
		}
		log.Info("image pulled", "service", svcName, "image", ref, "with_credentials", withCreds, "duration", time.Since(start).Round(time.Millisecond).String())
	}
	return nil
}

func (r *Runtime) pull(ctx context.Context, ref, auth string) error {
	body, err := r.cli.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
	if err != nil {
		return fmt.Errorf("pull %s: %w", ref, err)
	}
	defer body.Close()
	dec := json.NewDecoder(body)
	for {
		var msg struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("pull %s: read progress: %w", ref, err)
		}
		if msg.ErrorDetail.Message != "" {
			return fmt.Errorf("pull %s: %s", ref, msg.ErrorDetail.Message)
		}
		if msg.Error != "" {
			return fmt.Errorf("pull %s: %s", ref, msg.Error)
		}
	}
}

// Pull error texts, as the docker runtime reads them (engine 20.10,
// registry 2.8).
var (
	pullRefusedErrors = []string{
		"no basic auth credentials", "unauthorized", "authentication required",
		"denied", "forbidden", "incorrect username or password",
	}
	pullNotFoundErrors = []string{"manifest unknown", "name unknown", "not found"}
)

func classifyPull(err error) persysv1.FailureReason {
	msg := strings.ToLower(err.Error())
	for _, s := range pullRefusedErrors {
		if strings.Contains(msg, s) {
			return persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED
		}
	}
	for _, s := range pullNotFoundErrors {
		if strings.Contains(msg, s) {
			return persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND
		}
	}
	return persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED
}

func classify(err error) persysv1.FailureReason {
	var f *runtime.Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "no such image"):
		return persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND
	case strings.Contains(msg, "address already in use"), strings.Contains(msg, "port is already allocated"):
		return persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT
	case strings.Contains(msg, "network"):
		return persysv1.FailureReason_FAILURE_REASON_NETWORK
	case strings.Contains(msg, "no space left"), strings.Contains(msg, "volume"), strings.Contains(msg, "mount"):
		return persysv1.FailureReason_FAILURE_REASON_STORAGE
	}
	return persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR
}

// down removes a project's containers and networks (and its volumes when
// volumes is set), also when the compose file is gone.
func (r *Runtime) down(ctx context.Context, project string, volumes bool) error {
	stop := r.cfg.StopTimeout
	return r.svc.Down(ctx, project, api.DownOptions{RemoveOrphans: true, Volumes: volumes, Timeout: &stop})
}

// Delete runs down on the workload's project (volumes kept when the
// applied spec said RETAIN) and removes its secret files and Git cache.
func (r *Runtime) Delete(ctx context.Context, name, uid string) (bool, error) {
	if name == "" {
		return false, invalid("name: empty")
	}
	unlock := r.locks.lock(name)
	defer unlock()
	st, err := r.readState(name)
	if err != nil {
		r.log.Warn("unreadable compose state on delete", "workload", name, "error", err)
		st = nil
	}
	ctrs, err := r.containers(ctx, name)
	if err != nil {
		return false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "list containers of %s", name)
	}
	if uid != "" {
		if st != nil && st.UID != uid {
			st = nil
		}
		ctrs = slices.DeleteFunc(ctrs, func(c container.Summary) bool { return c.Labels[runtime.LabelUID] != uid })
	}
	if st == nil && len(ctrs) == 0 {
		return false, nil
	}
	projects := map[string]bool{}
	retain := false
	if st != nil {
		projects[st.Project] = true
		retain = st.RetainVolume
	}
	for _, c := range ctrs {
		projects[c.Labels[api.ProjectLabel]] = true
	}
	for p := range projects {
		if p == "" {
			continue
		}
		if err := r.down(ctx, p, !retain); err != nil {
			return true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "compose down %s", p)
		}
	}
	if err := os.RemoveAll(r.workDir(name)); err != nil {
		return true, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "remove files of %s", name)
	}
	r.log.Info("compose project deleted", "workload", name, "uid", uid, "volumes_kept", retain)
	return true, nil
}

// containers lists every container (running or not) of the workload on
// this node.
func (r *Runtime) containers(ctx context.Context, name string) ([]container.Summary, error) {
	f := make(client.Filters).Add("label", runtime.LabelManaged+"=true").Add("label", api.ProjectLabel)
	if name != "" {
		f.Add("label", runtime.LabelWorkload+"="+name)
	}
	if r.cfg.NodeID != "" {
		f.Add("label", runtime.LabelNode+"="+r.cfg.NodeID)
	}
	cs, err := r.cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return nil, err
	}
	// The engine's filters cannot say "this cluster or no cluster label".
	return slices.DeleteFunc(cs.Items, func(c container.Summary) bool { return !r.cfg.Cluster.Owns(c.Labels[runtime.LabelCluster]) }), nil
}

// Status reports one workload; MISSING when nothing of it exists.
func (r *Runtime) Status(ctx context.Context, name string) (*persysv1.WorkloadStatus, error) {
	st, err := r.readState(name)
	if err != nil {
		st = nil
	}
	return r.status(ctx, name, st)
}

func (r *Runtime) status(ctx context.Context, name string, st *state) (*persysv1.WorkloadStatus, error) {
	ctrs, err := r.containers(ctx, name)
	if err != nil {
		return nil, err
	}
	return r.buildStatus(name, st, ctrs), nil
}

// List reports every compose workload this runtime manages on the node.
func (r *Runtime) List(ctx context.Context) ([]*persysv1.WorkloadStatus, error) {
	ctrs, err := r.containers(ctx, "")
	if err != nil {
		return nil, err
	}
	by := map[string][]container.Summary{}
	for _, c := range ctrs {
		n := c.Labels[runtime.LabelWorkload]
		by[n] = append(by[n], c)
	}
	out := make([]*persysv1.WorkloadStatus, 0, len(by))
	for _, n := range slices.Sorted(maps.Keys(by)) {
		st, err := r.readState(n)
		if err != nil {
			st = nil
		}
		out = append(out, r.buildStatus(n, st, by[n]))
	}
	return out, nil
}

// buildStatus sums a workload's containers per service. The revision is
// the applied one from the state file (unchanged services keep the
// revision label they were created with), else the highest label.
func (r *Runtime) buildStatus(name string, st *state, ctrs []container.Summary) *persysv1.WorkloadStatus {
	ws := &persysv1.WorkloadStatus{Name: name, NodeId: r.cfg.NodeID, Details: map[string]string{}}
	if st != nil {
		ws.Uid, ws.Revision = st.UID, st.Revision
		ws.Details["project"] = st.Project
		if st.Commit != "" {
			ws.Details["commit"] = st.Commit
		}
		// Containers of another uid are not this workload's.
		ctrs = slices.DeleteFunc(slices.Clone(ctrs), func(c container.Summary) bool { return c.Labels[runtime.LabelUID] != st.UID })
	}
	if len(ctrs) == 0 {
		ws.State = persysv1.ActualState_ACTUAL_STATE_MISSING
		return ws
	}
	svcs := map[string]*persysv1.ServiceStatus{}
	for _, c := range ctrs {
		if st == nil {
			rev, _ := strconv.ParseUint(c.Labels[runtime.LabelRevision], 10, 64)
			if rev >= ws.Revision {
				ws.Revision, ws.Uid = rev, c.Labels[runtime.LabelUID]
			}
			ws.Details["project"] = c.Labels[api.ProjectLabel]
		}
		sn := c.Labels[api.ServiceLabel]
		s := svcs[sn]
		if s == nil {
			s = &persysv1.ServiceStatus{Name: sn, Image: c.Image}
			if st != nil {
				s.Desired = int32(st.Replicas[sn])
			} else if n, err := strconv.Atoi(c.Labels[labelReplicas]); err == nil {
				s.Desired = int32(n)
			}
			svcs[sn] = s
		}
		s.ContainerIds = append(s.ContainerIds, c.ID)
		switch c.State {
		case container.StateRunning, container.StateRestarting:
			s.Running++
		case container.StateExited, container.StateDead:
			if code := exitCode(c.Status); code != 0 || c.State == container.StateDead {
				s.ExitCode = int32(code)
				s.Message = fmt.Sprintf("container %s: %s", strings.TrimPrefix(first(c.Names), "/"), c.Status)
			}
		}
	}
	// Services the file has but no container runs.
	if st != nil {
		for sn, n := range st.Replicas {
			if _, ok := svcs[sn]; !ok && n > 0 {
				svcs[sn] = &persysv1.ServiceStatus{Name: sn, Desired: int32(n), Message: "no container"}
			}
		}
	}
	desiredStopped := st != nil && st.Desired == desiredStop
	allRunning, anyRunning := true, false
	var failed []string
	for _, sn := range slices.Sorted(maps.Keys(svcs)) {
		s := svcs[sn]
		slices.Sort(s.ContainerIds)
		switch {
		case s.Running > 0 && s.Running >= s.Desired:
			s.State = persysv1.ActualState_ACTUAL_STATE_RUNNING
			anyRunning = true
		case s.ExitCode != 0 && !desiredStopped:
			s.State = persysv1.ActualState_ACTUAL_STATE_FAILED
			failed = append(failed, fmt.Sprintf("service %s exited with code %d", sn, s.ExitCode))
			allRunning = false
		case s.Desired == 0 || (len(s.ContainerIds) > 0 && s.Running == 0 && s.Message == "" && !desiredStopped):
			// Scaled to zero, or a one-shot service that exited 0.
			s.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
		case s.Running > 0:
			s.State = persysv1.ActualState_ACTUAL_STATE_CREATING
			anyRunning = true
			allRunning = false
		default:
			s.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
			allRunning = false
		}
		ws.Services = append(ws.Services, s)
	}
	ids := make([]string, 0, len(ctrs))
	for _, c := range ctrs {
		ids = append(ids, shortID(c.ID))
	}
	slices.Sort(ids)
	ws.RuntimeId = ws.Details["project"]
	switch {
	case len(failed) > 0:
		ws.State = persysv1.ActualState_ACTUAL_STATE_FAILED
		ws.Reason = persysv1.FailureReason_FAILURE_REASON_CONTAINER_EXITED
		ws.Message = strings.Join(failed, "; ")
		for _, s := range ws.Services {
			if s.State == persysv1.ActualState_ACTUAL_STATE_FAILED {
				ws.ExitCode = s.ExitCode
				break
			}
		}
	case desiredStopped && !anyRunning:
		ws.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
	case allRunning && anyRunning:
		ws.State = persysv1.ActualState_ACTUAL_STATE_RUNNING
	case !anyRunning:
		ws.State = persysv1.ActualState_ACTUAL_STATE_STOPPED
	default:
		ws.State = persysv1.ActualState_ACTUAL_STATE_CREATING
	}
	return ws
}

var exitRe = regexp.MustCompile(`Exited \((-?\d+)\)`)

// exitCode reads the exit code from the list view's status text
// ("Exited (1) 3 seconds ago").
func exitCode(status string) int {
	m := exitRe.FindStringSubmatch(status)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func first(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return s[0]
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Logs returns the tail of the services' output, each line prefixed by
// its service name, services in name order.
func (r *Runtime) Logs(ctx context.Context, name string, tailBytes int64) ([]byte, bool, error) {
	if tailBytes <= 0 {
		tailBytes = 64 << 10
	}
	ctrs, err := r.containers(ctx, name)
	if err != nil {
		return nil, false, err
	}
	if len(ctrs) == 0 {
		return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, nil, "workload %s has no containers", name)
	}
	slices.SortFunc(ctrs, func(a, b container.Summary) int {
		return strings.Compare(a.Labels[api.ServiceLabel]+first(a.Names), b.Labels[api.ServiceLabel]+first(b.Names))
	})
	lines := strconv.FormatInt(tailBytes/16+100, 10)
	var buf bytes.Buffer
	for _, c := range ctrs {
		rc, err := r.cli.ContainerLogs(ctx, c.ID, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: lines})
		if err != nil {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "logs of %s", first(c.Names))
		}
		var out bytes.Buffer
		_, err = stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 4*tailBytes+(1<<20)))
		_ = rc.Close()
		if err != nil {
			return nil, false, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR, err, "read logs of %s", first(c.Names))
		}
		prefix := c.Labels[api.ServiceLabel] + " | "
		for line := range strings.Lines(out.String()) {
			buf.WriteString(prefix)
			buf.WriteString(line)
			if !strings.HasSuffix(line, "\n") {
				buf.WriteByte('\n')
			}
		}
	}
	data := buf.Bytes()
	if int64(len(data)) > tailBytes {
		return data[int64(len(data))-tailBytes:], true, nil
	}
	return data, false, nil
}

// keyedMutex serializes calls per workload name.
type keyedMutex struct {
	mu    sync.Mutex
	locks map[string]*refMutex
}

type refMutex struct {
	sync.Mutex
	refs int
}

func (k *keyedMutex) lock(key string) func() {
	k.mu.Lock()
	if k.locks == nil {
		k.locks = map[string]*refMutex{}
	}
	m := k.locks[key]
	if m == nil {
		m = &refMutex{}
		k.locks[key] = m
	}
	m.refs++
	k.mu.Unlock()
	m.Lock()
	return func() {
		m.Unlock()
		k.mu.Lock()
		m.refs--
		if m.refs == 0 {
			delete(k.locks, key)
		}
		k.mu.Unlock()
	}
}

func shortHash(s string) string {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return fmt.Sprintf("%08x", h)
}

// Interface guards.
var (
	_ runtime.Runtime = (*Runtime)(nil)
	_ runtime.Logger  = (*Runtime)(nil)
)
