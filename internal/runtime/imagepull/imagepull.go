// Package imagepull pulls an image through the Docker Engine API and
// tells why a pull failed, as a failure reason; the container and compose
// runtimes share it, so a registry's answer means the same in both.
package imagepull

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/moby/moby/client"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Pull pulls ref with the encoded registry auth (empty: none) and reads
// the engine's progress stream to its end: an error the engine reports
// inside the stream fails the pull too.
func Pull(ctx context.Context, cli *client.Client, ref, auth string) error {
	body, err := cli.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: auth})
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

// Engine error texts of a failed pull. The engine passes the registry's
// error codes on only as text (and answers 500 for most of them). Checked
// against distribution registry 2.8 and engine 20.10: missing or wrong
// credentials read "no basic auth credentials" and "unauthorized:
// authentication required"; a repository or tag the registry lacks reads
// "manifest for REF not found: manifest unknown"; Docker Hub answers a
// repository it does not show with "pull access denied ... repository does
// not exist or may require 'docker login'", which cannot be told apart
// from missing credentials and counts as refused.
var (
	pullRefusedErrors = []string{
		"no basic auth credentials", "unauthorized", "authentication required",
		"denied", "forbidden", "incorrect username or password",
	}
	pullNotFoundErrors = []string{"manifest unknown", "name unknown", "not found"}
)

// Classify maps an error from pulling an image to a failure reason:
// IMAGE_PULL_FAILED when the registry refused (credentials) or could not
// be reached, IMAGE_NOT_FOUND when it answered that the image does not
// exist.
func Classify(err error) persysv1.FailureReason {
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
	if strings.Contains(msg, "no space left on device") {
		return persysv1.FailureReason_FAILURE_REASON_STORAGE
	}
	if strings.Contains(msg, "invalid reference format") {
		return persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC
	}
	// Connection refused, unknown host, timeouts, TLS trouble: the
	// registry could not be reached.
	return persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED
}
