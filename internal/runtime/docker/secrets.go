package docker

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/mount"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/registryauth"
	"github.com/persys-dev/compute/internal/runtime"
)

// Limits on what a workload may ask of its secrets.
const (
	maxSecretRefs      = 128     // secret_env, secret_files and image_pull_secrets entries, each
	maxSecretFileBytes = 1 << 20 // one file written from one key
	maxSecretTotal     = 8 << 20 // every secret file of one container
	maxFileName        = 255
	maxPath            = 4096
	// secretValueFile is the file name a single key is written to (the key
	// itself may not be a valid file name).
	secretValueFile = "value"
)

// secretFile is one secret_files entry, resolved: the files to write in
// its own folder, and where that folder (or its single file) is mounted.
type secretFile struct {
	target string
	// single: the entry names one key, written to secretValueFile and
	// mounted as a file; otherwise the folder is mounted.
	single bool
	files  map[string][]byte
}

// secretEnv renders secret_env as KEY=VALUE entries after checking that
// no name repeats one of env's. Values never appear in errors.
func secretEnv(inst runtime.Instance, env map[string]string) ([]string, error) {
	refs := inst.Spec.GetSecretEnv()
	if len(refs) > maxSecretRefs {
		return nil, invalid("spec.secret_env: %d entries, above the limit of %d", len(refs), maxSecretRefs)
	}
	out := make([]string, 0, len(refs))
	seen := map[string]int{}
	for i, ref := range refs {
		field := fmt.Sprintf("spec.secret_env[%d]", i)
		if ref == nil {
			return nil, invalid("%s: missing", field)
		}
		name := ref.GetName()
		if name == "" || len(name) > maxFileName || strings.ContainsAny(name, "=\x00") {
			return nil, invalid("%s.name: %q must be 1..%d characters without '=' or NUL", field, name, maxFileName)
		}
		if _, dup := env[name]; dup {
			return nil, invalid("%s.name: %q is also set by spec.container.env", field, name)
		}
		if j, dup := seen[name]; dup {
			return nil, invalid("%s.name: %q is also set by spec.secret_env[%d]", field, name, j)
		}
		seen[name] = i
		if ref.GetSecret() == "" {
			return nil, invalid("%s.secret: empty", field)
		}
		if ref.GetKey() == "" {
			return nil, invalid("%s.key: empty", field)
		}
		v, err := inst.SecretValue(ref.GetSecret(), ref.GetKey())
		if err != nil {
			return nil, prefixed(field, err)
		}
		if slices.Contains(v, 0) {
			return nil, invalid("%s: secret %q key %q contains NUL, which an environment variable cannot hold", field, ref.GetSecret(), ref.GetKey())
		}
		out = append(out, name+"="+string(v))
	}
	return out, nil
}

// secretFiles resolves secret_files against the delivered values and the
// targets the volumes already use.
func secretFiles(inst runtime.Instance, mounts []mount.Mount) ([]secretFile, error) {
	refs := inst.Spec.GetSecretFiles()
	if len(refs) > maxSecretRefs {
		return nil, invalid("spec.secret_files: %d entries, above the limit of %d", len(refs), maxSecretRefs)
	}
	if len(refs) == 0 {
		return nil, nil
	}
	targets := map[string]string{}
	for i, m := range mounts {
		targets[m.Target] = fmt.Sprintf("spec.container.volumes[%d]", i)
	}
	total := 0
	out := make([]secretFile, 0, len(refs))
	for i, ref := range refs {
		field := fmt.Sprintf("spec.secret_files[%d]", i)
		if ref == nil {
			return nil, invalid("%s: missing", field)
		}
		target := ref.GetPath()
		if target == "" || len(target) > maxPath || !path.IsAbs(target) || strings.ContainsRune(target, 0) {
			return nil, invalid("%s.path: %q is not an absolute path of at most %d characters", field, target, maxPath)
		}
		target = path.Clean(target)
		if target == "/" {
			return nil, invalid("%s.path: cannot mount over /", field)
		}
		if other, dup := targets[target]; dup {
			return nil, invalid("%s.path: %q is also the target of %s", field, target, other)
		}
		targets[target] = field
		if ref.GetSecret() == "" {
			return nil, invalid("%s.secret: empty", field)
		}
		sf := secretFile{target: target, files: map[string][]byte{}}
		if key := ref.GetKey(); key != "" {
			v, err := inst.SecretValue(ref.GetSecret(), key)
			if err != nil {
				return nil, prefixed(field, err)
			}
			sf.single = true
			sf.files[secretValueFile] = v
		} else {
			sv, ok := inst.Secrets[ref.GetSecret()]
			if !ok {
				return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "%s: secret %q was not delivered with the workload", field, ref.GetSecret())
			}
			for key, v := range sv.GetData() {
				if key == "" || key == "." || key == ".." || len(key) > maxFileName || strings.ContainsAny(key, "/\x00") {
					return nil, invalid("%s: secret %q key %q cannot be a file name (1..%d characters, no '/' or NUL, not . or ..)", field, ref.GetSecret(), key, maxFileName)
				}
				sf.files[key] = v
			}
		}
		for key, v := range sf.files {
			if len(v) > maxSecretFileBytes {
				return nil, invalid("%s: secret %q key %q is %d bytes, above the file limit of %d", field, ref.GetSecret(), key, len(v), maxSecretFileBytes)
			}
			total += len(v)
		}
		if total > maxSecretTotal {
			return nil, invalid("%s: secret files add up to %d bytes, above the limit of %d", field, total, maxSecretTotal)
		}
		out = append(out, sf)
	}
	return out, nil
}

// pullAuth checks image_pull_secrets and returns the Engine API auth for
// the image ("" to pull anonymously).
func pullAuth(inst runtime.Instance, image string) (string, error) {
	names := inst.Spec.GetImagePullSecrets()
	if len(names) == 0 {
		return "", nil
	}
	if len(names) > maxSecretRefs {
		return "", invalid("spec.image_pull_secrets: %d entries, above the limit of %d", len(names), maxSecretRefs)
	}
	svs := make([]*persysv1.SecretValue, 0, len(names))
	for i, name := range names {
		field := fmt.Sprintf("spec.image_pull_secrets[%d]", i)
		if name == "" {
			return "", invalid("%s: empty", field)
		}
		sv, ok := inst.Secrets[name]
		if !ok {
			return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "%s: secret %q was not delivered with the workload", field, name)
		}
		if sv.GetType() != persysv1.SecretType_SECRET_TYPE_REGISTRY {
			return "", invalid("%s: secret %q is of type %s, not %s", field, name, contract.Name(sv.GetType()), contract.Name(persysv1.SecretType_SECRET_TYPE_REGISTRY))
		}
		svs = append(svs, sv)
	}
	auth, _, err := registryauth.For(image, svs)
	switch {
	case err == nil:
		return auth, nil
	case errors.Is(err, registryauth.ErrMissingKey):
		return "", runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "spec.image_pull_secrets: %v", err)
	case errors.Is(err, registryauth.ErrInvalidImage):
		return "", invalid("spec.container.image: %v", err)
	default:
		return "", invalid("spec.image_pull_secrets: %v", err)
	}
}

// prefixed puts the spec field in front of a failure's message, keeping
// its reason.
func prefixed(field string, err error) error {
	var f *runtime.Failure
	if errors.As(err, &f) {
		return runtime.Fail(f.Reason, f.Err, "%s: %s", field, f.Message)
	}
	return fmt.Errorf("%s: %w", field, err)
}

// secretsPath is the folder holding one container's secret files:
// <secretsDir>/<workload>/<uid>/<container>. ok is false when a part is
// not a name this runtime would have made a folder for.
func (r *Runtime) secretsPath(workload, uid, containerName string) (string, bool) {
	for _, part := range []string{workload, uid, containerName} {
		if part == "" || !nameRE.MatchString(part) || part == "." || part == ".." {
			return "", false
		}
	}
	return filepath.Join(r.secretsDir, workload, uid, containerName), true
}

// secretMounts returns the read-only bind mounts of the files that
// writeSecrets puts in the container's folder. The names were validated
// by buildCreateSpec.
func (r *Runtime) secretMounts(workload, uid, containerName string, files []secretFile) []mount.Mount {
	dir, _ := r.secretsPath(workload, uid, containerName)
	out := make([]mount.Mount, 0, len(files))
	for i, sf := range files {
		src := filepath.Join(dir, strconv.Itoa(i))
		if sf.single {
			src = filepath.Join(src, secretValueFile)
		}
		out = append(out, mount.Mount{Type: mount.TypeBind, Source: src, Target: sf.target, ReadOnly: true})
	}
	return out
}

// writeSecrets replaces the container's secret folder with the files, each
// 0400 in a 0700 folder per entry.
func (r *Runtime) writeSecrets(workload, uid, containerName string, files []secretFile) error {
	if err := r.removeSecrets(workload, uid, containerName); err != nil {
		return err
	}
	if len(files) == 0 {
		return nil
	}
	dir, ok := r.secretsPath(workload, uid, containerName)
	if !ok {
		return fmt.Errorf("secret files: container %q of %q (uid %q) has no valid folder name", containerName, workload, uid)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("secret files: %w", err)
	}
	for i, sf := range files {
		sub := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o700); err != nil {
			return fmt.Errorf("secret files: %w", err)
		}
		for name, data := range sf.files {
			if err := writeFile0400(filepath.Join(sub, name), data); err != nil {
				return fmt.Errorf("secret files: %w", err)
			}
		}
	}
	return nil
}

func writeFile0400(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Chmod(0o400); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// removeSecrets removes one container's secret folder, and the uid and
// workload folders above it when they are left empty; none is fine.
func (r *Runtime) removeSecrets(workload, uid, containerName string) error {
	dir, ok := r.secretsPath(workload, uid, containerName)
	if !ok {
		return nil // not a container this runtime made a folder for
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove secret files: %w", err)
	}
	// Remove fails on a folder that is not empty: other revisions stay.
	uidDir := filepath.Dir(dir)
	if os.Remove(uidDir) == nil {
		_ = os.Remove(filepath.Dir(uidDir))
	}
	return nil
}

// removeWorkloadSecrets removes the secret folders of every container of
// the workload (of one uid, when uid is not empty).
func (r *Runtime) removeWorkloadSecrets(workload, uid string) error {
	if workload == "" || !nameRE.MatchString(workload) || (uid != "" && !nameRE.MatchString(uid)) {
		return nil
	}
	dir := filepath.Join(r.secretsDir, workload)
	if uid != "" {
		dir = filepath.Join(dir, uid)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove secret files: %w", err)
	}
	if uid != "" {
		_ = os.Remove(filepath.Dir(dir)) // the workload's folder, when now empty
	}
	return nil
}
