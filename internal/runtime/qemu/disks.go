package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

// ensureDisks creates the plan's disks that do not exist yet: a qcow2
// overlay on (or a qcow2 copy of) a base image, or a blank qcow2. Existing
// disk files are kept, so a new revision (or a retained disk) keeps its
// data. Files are made under a temporary name and renamed when complete.
func (r *Runtime) ensureDisks(ctx context.Context, log *slog.Logger, p *plan) error {
	for _, d := range p.disks {
		if d.Kind == diskISO {
			continue
		}
		if _, err := os.Stat(d.Path); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "disk %s", d.Name)
		}
		if err := os.MkdirAll(filepath.Dir(d.Path), 0o750); err != nil {
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "disk %s: create folder", d.Name)
		}
		tmp := d.Path + ".tmp"
		_ = os.Remove(tmp)
		var steps [][]string
		switch d.Kind {
		case diskOverlay:
			format, err := r.imageFormat(ctx, d.Base)
			if err != nil {
				return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "disk %s: base image %s", d.Name, filepath.Base(d.Base))
			}
			args := []string{"create", "-q", "-f", "qcow2", "-b", d.Base, "-F", format, tmp}
			if d.Size > 0 {
				args = append(args, strconv.FormatInt(d.Size, 10))
			}
			steps = append(steps, args)
		case diskCopy:
			steps = append(steps, []string{"convert", "-q", "-O", "qcow2", d.Base, tmp})
			if d.Size > 0 {
				steps = append(steps, []string{"resize", "-q", "-f", "qcow2", tmp, strconv.FormatInt(d.Size, 10)})
			}
		case diskBlank:
			steps = append(steps, []string{"create", "-q", "-f", "qcow2", tmp, strconv.FormatInt(d.Size, 10)})
		}
		for _, args := range steps {
			out, err := exec.CommandContext(ctx, r.cfg.QEMUImg, args...).CombinedOutput()
			if err != nil {
				_ = os.Remove(tmp)
				return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "disk %s: qemu-img %s: %s", d.Name, args[0], strings.TrimSpace(string(out)))
			}
		}
		if err := os.Rename(tmp, d.Path); err != nil {
			_ = os.Remove(tmp)
			return runtime.Fail(persysv1.FailureReason_FAILURE_REASON_STORAGE, err, "disk %s", d.Name)
		}
		log.Info("disk created", "disk", d.Name, "kind", string(d.Kind), "path", d.Path)
	}
	return nil
}

// imageFormat asks qemu-img for the format of an image file.
func (r *Runtime) imageFormat(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, r.cfg.QEMUImg, "info", "-U", "--output=json", path).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("qemu-img info: %s", strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("qemu-img info: %w", err)
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return "", fmt.Errorf("qemu-img info: no format in %q", strings.TrimSpace(string(out)))
	}
	return info.Format, nil
}
