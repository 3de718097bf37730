package scheduler

import (
	"context"
	"errors"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/cloudinit"
	"github.com/persys-dev/compute/internal/composespec"
	"github.com/persys-dev/compute/internal/hostaccess/specaccess"
	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/principal"
)

// prepareSpec checks what the manifest rules cannot see (the compose file,
// cloud-init documents) and fills in what the scheduler derives, before
// anything is stored: the commit a Git ref names (so a new commit becomes a
// new revision only when the ref is resolved again), for compose
// workloads that declare no resources, the sum of the services' limits,
// and for every workload what it asks of its host (host_access). Then it
// checks that p may ask for that (host access, the secrets referenced).
func (s *Scheduler) prepareSpec(ctx context.Context, p principal.Principal, spec *persysv1.WorkloadSpec) error {
	if vm := spec.GetVm(); vm != nil {
		if err := cloudinit.Validate(vm.GetCloudInit(), vm.GetLogin()); err != nil {
			return cloudInitError(err)
		}
	}
	if err := s.secrets.CheckUse(ctx, p, spec); err != nil {
		return err
	}
	spec.HostAccess = nil // derived here, never taken from the caller
	if cs := spec.GetCompose(); cs != nil {
		if err := s.prepareCompose(ctx, spec); err != nil {
			return err
		}
	} else {
		spec.HostAccess = specaccess.ToProto(specaccess.Of(spec))
	}
	if field, what, ok := specaccess.FromProto(spec.GetHostAccess()).HostField(); ok {
		return p.Require(authz.WorkloadsHost, field, what)
	}
	return nil
}

// prepareCompose validates a compose spec, resolves its Git ref, and
// derives its resources (when none are declared) and host access from
// the parsed file. The file is parsed with every host-level refusal
// relaxed: what it asks for is checked against the caller's permission
// (prepareSpec) and each node's policy (placement), with messages that
// say which.
func (s *Scheduler) prepareCompose(ctx context.Context, spec *persysv1.WorkloadSpec) error {
	cs := spec.GetCompose()
	opts := composespec.OptionsFor(true, []string{"/"})
	if err := composespec.ValidateSpecWith(ctx, cs, opts); err != nil {
		return composeError(err, cs.GetGit() == nil)
	}
	data := []byte(cs.GetInline())
	if g := cs.GetGit(); g != nil {
		commit, file, err := s.git.Fetch(ctx, g)
		if err != nil {
			return err
		}
		g.ResolvedCommit = commit
		data = file
	}
	p, err := composespec.ParseWithOptions(ctx, data, cs.GetEnv(), "persys-resources", opts)
	if err != nil {
		return composeError(err, cs.GetGit() == nil)
	}
	if r := spec.GetResources(); r.GetCpuMillis() == 0 && r.GetMemoryBytes() == 0 {
		cpu, mem := composespec.ResourcesOf(p)
		if spec.Resources == nil {
			spec.Resources = &persysv1.Resources{}
		}
		spec.Resources.CpuMillis, spec.Resources.MemoryBytes = cpu, mem
	}
	needs := composespec.Needs(p)
	needs.PrivilegedField = prefixField(needs.PrivilegedField)
	for i := range needs.HostPaths {
		needs.HostPaths[i].Field = prefixField(needs.HostPaths[i].Field)
	}
	for i := range needs.Ports {
		needs.Ports[i].Field = prefixField(needs.Ports[i].Field)
	}
	spec.HostAccess = specaccess.ToProto(needs)
	return nil
}

// prefixField places a compose file's field under spec.compose.
func prefixField(f string) string {
	if f == "" {
		return ""
	}
	return "spec.compose." + f
}

// composeError maps a compose-spec error to a manifest error whose field
// is the path inside the workload spec.
func composeError(err error, inline bool) error {
	var ce *composespec.Error
	if !errors.As(err, &ce) {
		return &manifest.Error{Fields: []manifest.FieldError{{Field: "spec.compose", Reason: err.Error()}}}
	}
	field := "spec.compose.inline"
	if !inline {
		field = "spec.compose.git"
	}
	switch {
	case strings.HasPrefix(ce.Path, "compose"):
		field = "spec." + ce.Path
	case ce.Path != "":
		field += "." + ce.Path
	}
	return &manifest.Error{Fields: []manifest.FieldError{{Field: field, Reason: ce.Reason}}}
}

// cloudInitError turns "invalid cloud-init input: FIELD: reason" into a
// manifest error on that field.
func cloudInitError(err error) error {
	msg := strings.TrimPrefix(err.Error(), cloudinit.ErrInvalid.Error()+": ")
	field, reason, ok := strings.Cut(msg, ": ")
	if !ok || !strings.HasPrefix(field, "spec.") {
		field, reason = "spec.vm.cloudInit", msg
	}
	return &manifest.Error{Fields: []manifest.FieldError{{Field: field, Reason: reason}}}
}
