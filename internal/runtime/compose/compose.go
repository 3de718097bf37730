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
// Apply are *runtime.Failure values with an enum reason. Calls for the
// same workload are serialized; different workloads run in parallel.
//
// The files follow one Apply through its steps:
//   - compose.go: Config, New (the engine client and the SDK service
//     sharing it), project and folder names;
//   - apply.go: Apply and Delete, the only callers of the Compose SDK;
//   - load.go: the compose file made into the workload's project (env,
//     labels, pull policy); git.go: the file's Git checkout;
//   - secrets.go: secret_env and secret_files of the workload;
//   - images.go: pulls of missing images and the failure reasons of pulls;
//   - status.go: status and list from the engine's containers;
//   - state.go: what Apply records for Delete and Status;
//   - logs.go, watch.go: logs and engine events.
package compose

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/moby/locker"

	"github.com/docker/cli/cli/command"
	"github.com/docker/cli/cli/flags"
	"github.com/docker/compose/v5/pkg/api"
	sdk "github.com/docker/compose/v5/pkg/compose"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/composespec"
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
	locks     locker.Locker // serializes calls per workload name
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
