package compose

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/registryauth"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/imagepull"
)

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
			return invalid("%s: secret %q is of type %s, not %s", field, n, contract.Name(sv.GetType()), contract.Name(persysv1.SecretType_SECRET_TYPE_REGISTRY))
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
		err = imagepull.Pull(pullCtx, r.cli, ref, auth)
		cancel()
		if err != nil {
			reason := imagepull.Classify(err)
			log.Warn("image pull failed", "service", svcName, "image", ref, "with_credentials", withCreds, "reason", contract.Name(reason), "error", err)
			return runtime.Fail(reason, err, "services.%s: image %s is not present and could not be pulled", svcName, ref)
		}
		log.Info("image pulled", "service", svcName, "image", ref, "with_credentials", withCreds, "duration", time.Since(start).Round(time.Millisecond).String())
	}
	return nil
}

func classify(err error) persysv1.FailureReason {
	var f *runtime.Failure
	if errors.As(err, &f) {
		return f.Reason
	}
	msg := strings.ToLower(err.Error())
	switch {
	case strings.HasSuffix(msg, " is unhealthy"):
		// up waits for the healthchecks; first, as the container's name
		// may hold any word below.
		return persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED
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
