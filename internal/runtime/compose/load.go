package compose

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strconv"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/docker/compose/v5/pkg/api"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/composespec"
	"github.com/persys-dev/compute/internal/runtime"
)

// load reads the compose file (inline or from Git), parses it and makes
// it the workload's project: env, secrets, labels, pull policy.
func (r *Runtime) load(ctx context.Context, inst runtime.Instance) (*types.Project, string, error) {
	spec := inst.Spec.GetCompose()
	opts := r.cfg.Spec
	opts.WorkingDir = ""
	var data []byte
	var commit string
	switch {
	case spec.GetInline() != "" && spec.GetGit() != nil:
		return nil, "", invalid("spec.compose: set exactly one of inline and git")
	case spec.GetInline() != "":
		data = []byte(spec.GetInline())
	case spec.GetGit() != nil:
		var err error
		if data, commit, opts.WorkingDir, err = r.fromGit(ctx, inst); err != nil {
			return nil, "", err
		}
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
