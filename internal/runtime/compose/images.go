package compose

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/registryauth"
	"github.com/persys-dev/compute/internal/runtime"
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
