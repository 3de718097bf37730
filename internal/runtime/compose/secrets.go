package compose

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
)

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
