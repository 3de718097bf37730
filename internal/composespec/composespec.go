// Package composespec parses and validates the compose files of COMPOSE
// workloads with the compose-spec loader, offline and without any Docker
// call, so the scheduler can refuse a bad file at apply time and the agent
// can load the same file the same way before running it.
//
// Every error it returns is a *Error carrying the path of the bad field
// (services.web.ports[0]) and the reason; errors.Is(err, ErrInvalid) holds
// for all of them, so callers map them to FAILURE_REASON_INVALID_SPEC.
//
// Beyond the compose schema it refuses what a Persys node cannot honour:
//
//   - build: nodes have no build context and no registry to push to; images
//     must be built elsewhere and referenced by name.
//   - include and extends.file: only the one compose file travels with the
//     workload (inline) or is read from the repository; other files are not
//     there. extends of a service in the same file is fine. With a working
//     directory (a Git checkout) extends.file inside it is allowed.
//   - env_file, and top-level secrets/configs with file: the referenced files
//     cannot be shipped to the node. Use spec.compose.env, secret_env and
//     secret_files instead.
//   - network_mode: host, pid: host, ipc: host, privileged, devices and
//     cap_add ALL/SYS_ADMIN: they escape the container onto the node,
//     unless Options allow them.
//   - bind mounts of host paths: a workload may land on any node, so a host
//     path means nothing portable and can expose the node; allowed only
//     under Options.AllowedBindPaths. The same holds for a local volume
//     whose driver_opts device is a host path.
package composespec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/compose-spec/compose-go/v2/loader"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// MaxFileBytes is the largest compose file accepted.
const MaxFileBytes = 1 << 20

// Limits on the environment passed for interpolation.
const (
	maxEnvEntries    = 1000
	maxEnvNameBytes  = 256
	maxEnvValueBytes = 64 << 10
)

// ErrInvalid is matched (errors.Is) by every error of this package.
var ErrInvalid = errors.New("invalid compose spec")

// Error is a compose file error: Path names the bad field ("" when the
// whole file is at fault) and Reason says what is wrong.
type Error struct {
	Path   string
	Reason string
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "compose: " + e.Reason
	}
	return "compose: " + e.Path + ": " + e.Reason
}

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

func invalid(p, format string, args ...any) *Error {
	return &Error{Path: p, Reason: fmt.Sprintf(format, args...)}
}

// Options relax the refusals listed in the package comment.
type Options struct {
	// WorkingDir is the folder relative paths resolve against (a Git
	// checkout). Empty: a private empty folder name that holds nothing,
	// so extends.file and relative binds are refused.
	WorkingDir string
	// AllowHostNetwork allows network_mode/pid/ipc: host.
	AllowHostNetwork bool
	// AllowPrivileged allows privileged: true.
	AllowPrivileged bool
	// AllowedBindPaths are host folders under which bind mounts are
	// allowed (absolute, cleaned). Empty: no host bind mounts.
	AllowedBindPaths []string
}

// fileName is the name the inline file gets in loader messages.
const fileName = "compose.yaml"

// Parse loads a compose file with the default Options. env is used for
// ${VAR} interpolation (nothing is read from the process environment);
// projectName names the project and must be a valid compose project name.
func Parse(ctx context.Context, data []byte, env map[string]string, projectName string) (*types.Project, error) {
	return ParseWithOptions(ctx, data, env, projectName, Options{})
}

// Validate checks a compose file as Parse does, with a placeholder project
// name, and returns the first error.
func Validate(ctx context.Context, data []byte, env map[string]string) error {
	_, err := Parse(ctx, data, env, "persys-validate")
	return err
}

// ValidateSpec checks the compose part of a workload spec: exactly one of
// inline and git, the env map, the retain policy, and the inline file when
// there is one (a Git file is checked by the agent after checkout). Paths
// are relative to spec.compose.
func ValidateSpec(ctx context.Context, spec *persysv1.ComposeSpec) error {
	return ValidateSpecWith(ctx, spec, Options{})
}

// ValidateSpecWith is ValidateSpec with the inline file's refusals relaxed
// by opts.
func ValidateSpecWith(ctx context.Context, spec *persysv1.ComposeSpec, opts Options) error {
	if spec == nil {
		return invalid("compose", "is required for a compose workload")
	}
	hasInline, hasGit := spec.GetInline() != "", spec.GetGit() != nil
	switch {
	case hasInline && hasGit:
		return invalid("compose", "set exactly one of inline and git, not both")
	case !hasInline && !hasGit:
		return invalid("compose", "set one of inline and git")
	}
	if err := checkEnv(spec.GetEnv()); err != nil {
		return err
	}
	if _, ok := persysv1.RetainPolicy_name[int32(spec.GetVolumeRetain())]; !ok {
		return invalid("compose.volume_retain", "unknown retain policy %d", spec.GetVolumeRetain())
	}
	if hasGit {
		g := spec.GetGit()
		if g.GetUrl() == "" {
			return invalid("compose.git.url", "is required")
		}
		if len(g.GetUrl()) > 2048 {
			return invalid("compose.git.url", "is longer than 2048 bytes")
		}
		if len(g.GetRef()) > 256 {
			return invalid("compose.git.ref", "is longer than 256 bytes")
		}
		if p := g.GetPath(); p != "" {
			if len(p) > 1024 {
				return invalid("compose.git.path", "is longer than 1024 bytes")
			}
			if err := checkRepoPath(p); err != nil {
				return invalid("compose.git.path", "%s", err)
			}
		}
		if g.GetPollIntervalSeconds() < 0 {
			return invalid("compose.git.poll_interval_seconds", "must not be negative")
		}
		return nil
	}
	_, err := ParseWithOptions(ctx, []byte(spec.GetInline()), spec.GetEnv(), "persys-validate", opts)
	return err
}

// checkRepoPath refuses absolute paths and paths that leave the repository.
func checkRepoPath(p string) error {
	if strings.ContainsRune(p, 0) {
		return errors.New("contains a NUL byte")
	}
	if path.IsAbs(p) || filepath.IsAbs(p) {
		return errors.New("must be relative to the repository root")
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return errors.New("leaves the repository")
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.-]*$`)

func checkEnv(env map[string]string) error {
	if len(env) > maxEnvEntries {
		return invalid("compose.env", "has %d entries, at most %d are allowed", len(env), maxEnvEntries)
	}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if len(k) > maxEnvNameBytes || !envName.MatchString(k) {
			return invalid("compose.env."+k, "is not a valid variable name (letters, digits, _ . -, not starting with a digit, at most %d bytes)", maxEnvNameBytes)
		}
		if len(env[k]) > maxEnvValueBytes {
			return invalid("compose.env."+k, "value is longer than %d bytes", maxEnvValueBytes)
		}
	}
	return nil
}

// ParseWithOptions is Parse with refusals relaxed by opts.
func ParseWithOptions(ctx context.Context, data []byte, env map[string]string, projectName string, opts Options) (*types.Project, error) {
	if len(data) > MaxFileBytes {
		return nil, invalid("", "file is %d bytes, larger than the %d bytes (1 MiB) allowed", len(data), MaxFileBytes)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, invalid("", "file is empty")
	}
	if err := checkEnv(env); err != nil {
		return nil, err
	}
	if projectName == "" {
		return nil, invalid("name", "project name is empty")
	}
	if loader.NormalizeProjectName(projectName) != projectName {
		return nil, invalid("name", "project name %q must be lowercase letters, digits, dashes and underscores, starting with a letter or digit", projectName)
	}
	if err := precheck(data, opts); err != nil {
		return nil, err
	}

	workDir := opts.WorkingDir
	if workDir == "" {
		// A folder that does not exist: nothing relative can be found.
		workDir = "/nonexistent/persys-compose"
	}
	details := types.ConfigDetails{
		WorkingDir:  workDir,
		ConfigFiles: []types.ConfigFile{{Filename: filepath.Join(workDir, fileName), Content: data}},
		Environment: types.Mapping(maps.Clone(env)),
	}
	if details.Environment == nil {
		details.Environment = types.Mapping{}
	}
	project, err := loader.LoadWithContext(ctx, details, func(o *loader.Options) {
		o.SetProjectName(projectName, true)
		o.SkipInclude = opts.WorkingDir == ""
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("compose: load: %w", ctx.Err())
		}
		return nil, loaderError(err, details.ConfigFiles[0].Filename)
	}
	if err := checkProject(project, opts); err != nil {
		return nil, err
	}
	return project, nil
}

// precheck walks the raw YAML (keys are never interpolated) for what the
// loader would try to read from disk, or what the runtime cannot honour.
func precheck(data []byte, opts Options) error {
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return invalid("", "invalid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if len(root.Content) == 0 {
		return invalid("", "file is empty")
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return invalid("", "top level must be a mapping, not %s", kindName(top))
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		key, val := top.Content[i].Value, top.Content[i+1]
		switch key {
		case "include":
			return invalid("include", "is not supported: only the one compose file reaches the node")
		case "services":
			if val.Kind != yaml.MappingNode {
				continue // the schema reports it
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				if err := precheckService("services."+val.Content[j].Value, val.Content[j+1], opts); err != nil {
					return err
				}
			}
		case "secrets", "configs":
			if val.Kind != yaml.MappingNode {
				continue
			}
			for j := 0; j+1 < len(val.Content); j += 2 {
				obj := val.Content[j+1]
				if f := mapValue(obj, "file"); f != nil {
					return invalid(key+"."+val.Content[j].Value+".file", "is not supported: the file cannot be shipped to the node (use secret_files or environment)")
				}
			}
		}
	}
	return nil
}

func precheckService(p string, svc *yaml.Node, opts Options) error {
	if svc.Kind != yaml.MappingNode {
		return nil
	}
	if mapValue(svc, "build") != nil {
		return invalid(p+".build", "is not supported: nodes build nothing and there is no registry to push to; reference a built image")
	}
	if mapValue(svc, "env_file") != nil {
		return invalid(p+".env_file", "is not supported: the file cannot be shipped to the node (use compose.env or secret_env)")
	}
	if ext := mapValue(svc, "extends"); ext != nil && ext.Kind == yaml.MappingNode {
		if f := mapValue(ext, "file"); f != nil && opts.WorkingDir == "" {
			return invalid(p+".extends.file", "is not supported: only the one compose file reaches the node")
		}
	}
	return nil
}

func mapValue(n *yaml.Node, key string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return "a scalar"
	}
	return "this"
}

// checkProject refuses, after interpolation, what the runtime cannot honour.
func checkProject(p *types.Project, opts Options) error {
	for _, name := range slices.Sorted(maps.Keys(p.Services)) {
		s := p.Services[name]
		sp := "services." + name
		if s.Image == "" {
			return invalid(sp+".image", "is required (nodes do not build images)")
		}
		if s.Privileged && !opts.AllowPrivileged {
			return invalid(sp+".privileged", "is not allowed on this cluster")
		}
		for field, mode := range map[string]string{"network_mode": s.NetworkMode, "pid": s.Pid, "ipc": s.Ipc} {
			if mode == "host" && !opts.AllowHostNetwork {
				return invalid(sp+"."+field, "host is not allowed on this cluster")
			}
		}
		for i, v := range s.Volumes {
			if v.Type != types.VolumeTypeBind {
				continue
			}
			if !bindAllowed(v.Source, opts.AllowedBindPaths) {
				return invalid(fmt.Sprintf("%s.volumes[%d]", sp, i), "bind mount of host path %q is not allowed (a workload may run on any node); use a named volume", v.Source)
			}
		}
		if !opts.AllowPrivileged {
			if len(s.Devices) > 0 {
				return invalid(sp+".devices", "host devices are not allowed on this cluster")
			}
			for i, c := range s.CapAdd {
				if u := strings.ToUpper(strings.TrimPrefix(strings.ToUpper(c), "CAP_")); u == "ALL" || u == "SYS_ADMIN" {
					return invalid(fmt.Sprintf("%s.cap_add[%d]", sp, i), "%s is not allowed on this cluster", c)
				}
			}
		}
		if len(s.EnvFiles) > 0 {
			return invalid(sp+".env_file", "is not supported: the file cannot be shipped to the node")
		}
	}
	// A local volume with driver_opts device is a host bind in disguise.
	for _, name := range slices.Sorted(maps.Keys(p.Volumes)) {
		v := p.Volumes[name]
		if dev, ok := v.DriverOpts["device"]; ok && strings.HasPrefix(dev, "/") && !bindAllowed(dev, opts.AllowedBindPaths) {
			return invalid("volumes."+name+".driver_opts.device", "host path %q is not allowed (a workload may run on any node)", dev)
		}
	}
	return nil
}

func bindAllowed(src string, allowed []string) bool {
	src = filepath.Clean(src)
	for _, a := range allowed {
		a = filepath.Clean(a)
		if src == a || strings.HasPrefix(src, a+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

var (
	dottedPath = regexp.MustCompile(`^([A-Za-z0-9_.\-\[\]]+):? (.+)$`)
	numSeg     = regexp.MustCompile(`\.(\d+)(\.|$)`)
)

// loaderError turns a compose-go error into an *Error, recovering the
// field path from the message (compose-go does not export its schema
// error type). Its messages look like "validating FILE: services.web.ports
// must be a array", "error while interpolating services.web.image: ..." or
// "services.web.deploy.replicas: must be ...".
func loaderError(err error, file string) *Error {
	msg := err.Error()
	msg = strings.ReplaceAll(msg, file+": ", "")
	msg = strings.ReplaceAll(msg, file, fileName)
	msg = strings.TrimPrefix(msg, "validating ")
	msg = strings.TrimPrefix(msg, "error while interpolating ")
	if rest, ok := strings.CutPrefix(msg, "failed to parse "); ok {
		return invalid("", "invalid YAML: %s", strings.TrimPrefix(rest, "yaml: "))
	}
	if rest, ok := strings.CutPrefix(strings.TrimSpace(msg), "additional properties "); ok {
		key := strings.Trim(strings.TrimSuffix(rest, " not allowed"), "'")
		return invalid(key, "is not a known top-level key")
	}
	if m := dottedPath.FindStringSubmatch(msg); m != nil && (strings.Contains(m[1], ".") || isTopKey(m[1])) {
		reason := m[2]
		if reason == "false schema" {
			reason = "is not a known field"
		}
		return &Error{Path: indexPath(strings.ReplaceAll(m[1], ".[]", "[]")), Reason: reason}
	}
	if m := serviceMsg.FindStringSubmatch(msg); m != nil {
		reason := strings.TrimSuffix(m[2], ": invalid compose project")
		if strings.Contains(reason, "neither an image nor a build context") {
			return invalid("services."+m[1]+".image", "is required (nodes do not build images)")
		}
		return &Error{Path: "services." + m[1], Reason: reason}
	}
	return &Error{Reason: msg}
}

var serviceMsg = regexp.MustCompile(`^service "([^"]+)" (.+)$`)

func isTopKey(s string) bool {
	switch s {
	case "services", "networks", "volumes", "secrets", "configs", "name", "version", "models":
		return true
	}
	return false
}

// indexPath writes numeric segments as indexes: a.0.b → a[0].b.
func indexPath(p string) string {
	for {
		loc := numSeg.FindStringSubmatchIndex(p)
		if loc == nil {
			return p
		}
		n, _ := strconv.Atoi(p[loc[2]:loc[3]])
		p = p[:loc[0]] + "[" + strconv.Itoa(n) + "]" + p[loc[4]:]
	}
}

// ResourcesOf sums the services' limits (deploy.resources.limits, or the
// service-level cpus and mem_limit) times their replicas, in CPU
// millicores and bytes, so the scheduler can place the project. Services
// without limits count zero.
func ResourcesOf(p *types.Project) (cpuMillis, memoryBytes int64) {
	if p == nil {
		return 0, 0
	}
	for _, s := range p.Services {
		replicas := int64(1)
		if s.Deploy != nil && s.Deploy.Replicas != nil {
			replicas = int64(*s.Deploy.Replicas)
		} else if s.Scale != nil {
			replicas = int64(*s.Scale)
		}
		if replicas < 0 {
			replicas = 0
		}
		var cpus float64
		var mem int64
		if s.Deploy != nil && s.Deploy.Resources.Limits != nil {
			cpus = float64(s.Deploy.Resources.Limits.NanoCPUs)
			mem = int64(s.Deploy.Resources.Limits.MemoryBytes)
		}
		if cpus == 0 {
			cpus = float64(s.CPUS)
		}
		if mem == 0 {
			mem = int64(s.MemLimit)
		}
		cpuMillis += int64(cpus*1000+0.5) * replicas
		memoryBytes += mem * replicas
	}
	return cpuMillis, memoryBytes
}
