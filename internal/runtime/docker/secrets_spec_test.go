package docker

import (
	"errors"
	"strings"
	"testing"

	"github.com/moby/moby/api/pkg/authconfig"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/runtime"
	"github.com/persys-dev/compute/internal/runtime/imagepull"
)

const testSecretValue = "hunter2-do-not-print"

func secretInstance() runtime.Instance {
	inst := validInstance()
	inst.Spec.Container.Image = "127.0.0.1:5000/team/app:v1"
	inst.Spec.SecretEnv = []*persysv1.SecretEnv{{Name: "DB_PASSWORD", Secret: "db", Key: "password"}}
	inst.Spec.SecretFiles = []*persysv1.SecretFile{
		{Secret: "db", Key: "password", Path: "/run/secrets/db_password"},
		{Secret: "tls", Path: "/etc/tls/"},
	}
	inst.Spec.ImagePullSecrets = []string{"reg"}
	inst.Secrets = map[string]*persysv1.SecretValue{
		"db":  {Name: "db", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Data: map[string][]byte{"password": []byte(testSecretValue)}},
		"tls": {Name: "tls", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE, Data: map[string][]byte{"tls.crt": []byte("CERT"), "tls.key": []byte("KEY")}},
		"reg": {Name: "reg", Type: persysv1.SecretType_SECRET_TYPE_REGISTRY, Data: map[string][]byte{
			"server": []byte("127.0.0.1:5000"), "username": []byte("alice"), "password": []byte(testSecretValue)}},
	}
	return inst
}

func TestBuildCreateSpecSecrets(t *testing.T) {
	cs, err := buildCreateSpec(secretInstance(), 5)
	if err != nil {
		t.Fatalf("buildCreateSpec: %v", err)
	}
	if got := strings.Join(cs.config.Env, ","); got != "A=1,B=2,DB_PASSWORD="+testSecretValue {
		t.Errorf("env = %q", got)
	}
	for k, v := range cs.config.Labels {
		if strings.Contains(k+v, testSecretValue) {
			t.Errorf("label %s=%s holds the secret value", k, v)
		}
	}
	if len(cs.secretFiles) != 2 {
		t.Fatalf("secret files = %d, want 2", len(cs.secretFiles))
	}
	if f := cs.secretFiles[0]; !f.single || f.target != "/run/secrets/db_password" || string(f.files[secretValueFile]) != testSecretValue {
		t.Errorf("secret file 0 = target %q single %v", f.target, f.single)
	}
	if f := cs.secretFiles[1]; f.single || f.target != "/etc/tls" || len(f.files) != 2 || string(f.files["tls.key"]) != "KEY" {
		t.Errorf("secret file 1 = target %q single %v with %d files", f.target, f.single, len(f.files))
	}
	ac, err := authconfig.Decode(cs.pullAuth)
	if err != nil {
		t.Fatalf("pull auth: %v", err)
	}
	if ac.Username != "alice" || ac.Password != testSecretValue || ac.ServerAddress != "127.0.0.1:5000" {
		t.Errorf("pull auth for user %q on %q", ac.Username, ac.ServerAddress)
	}

	rt := &Runtime{secretsDir: "/var/lib/persys/secrets"}
	ms := rt.secretMounts(cs.workload, cs.uid, cs.name, cs.secretFiles)
	base := "/var/lib/persys/secrets/web/0123456789abcdef/" + cs.name
	if len(ms) != 2 || ms[0].Source != base+"/0/value" || ms[0].Target != "/run/secrets/db_password" ||
		ms[1].Source != base+"/1" || !ms[0].ReadOnly || !ms[1].ReadOnly {
		t.Errorf("mounts = %+v", ms)
	}

	// Without pull secrets nothing is sent to the registry.
	inst := secretInstance()
	inst.Spec.ImagePullSecrets = nil
	if cs, err := buildCreateSpec(inst, 5); err != nil || cs.pullAuth != "" {
		t.Errorf("without image_pull_secrets: auth %q, err %v", cs.pullAuth, err)
	}
	// A pull secret for another registry is fine: pull anonymously.
	inst = secretInstance()
	inst.Spec.Container.Image = "busybox"
	if cs, err := buildCreateSpec(inst, 5); err != nil || cs.pullAuth != "" {
		t.Errorf("pull secret of another registry: auth %q, err %v", cs.pullAuth, err)
	}
}

func TestBuildCreateSpecSecretsInvalid(t *testing.T) {
	const (
		notFound = persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND
		invalidR = persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC
	)
	tests := []struct {
		name   string
		mutate func(*runtime.Instance)
		reason persysv1.FailureReason
		want   string
	}{
		{"env secret not delivered", func(i *runtime.Instance) { delete(i.Secrets, "db") }, notFound,
			`spec.secret_env[0]: secret "db" was not delivered`},
		{"env key missing", func(i *runtime.Instance) { i.Spec.SecretEnv[0].Key = "user" }, notFound,
			`spec.secret_env[0]: secret "db" has no key "user"`},
		{"env name empty", func(i *runtime.Instance) { i.Spec.SecretEnv[0].Name = "" }, invalidR, "spec.secret_env[0].name"},
		{"env name with =", func(i *runtime.Instance) { i.Spec.SecretEnv[0].Name = "A=B" }, invalidR, "spec.secret_env[0].name"},
		{"env name clashes with env", func(i *runtime.Instance) { i.Spec.SecretEnv[0].Name = "A" }, invalidR,
			`spec.secret_env[0].name: "A" is also set by spec.container.env`},
		{"env name repeated", func(i *runtime.Instance) {
			i.Spec.SecretEnv = append(i.Spec.SecretEnv, &persysv1.SecretEnv{Name: "DB_PASSWORD", Secret: "db", Key: "password"})
		}, invalidR, "is also set by spec.secret_env[0]"},
		{"env secret empty", func(i *runtime.Instance) { i.Spec.SecretEnv[0].Secret = "" }, invalidR, "spec.secret_env[0].secret: empty"},
		{"env key empty", func(i *runtime.Instance) { i.Spec.SecretEnv[0].Key = "" }, invalidR, "spec.secret_env[0].key: empty"},
		{"env value with NUL", func(i *runtime.Instance) { i.Secrets["db"].Data["password"] = []byte("a\x00b") }, invalidR, "contains NUL"},
		{"file secret not delivered", func(i *runtime.Instance) { delete(i.Secrets, "tls") }, notFound,
			`spec.secret_files[1]: secret "tls" was not delivered`},
		{"file key missing", func(i *runtime.Instance) { i.Spec.SecretFiles[0].Key = "nope" }, notFound,
			`spec.secret_files[0]: secret "db" has no key "nope"`},
		{"file path relative", func(i *runtime.Instance) { i.Spec.SecretFiles[0].Path = "run/x" }, invalidR, "spec.secret_files[0].path"},
		{"file path root", func(i *runtime.Instance) { i.Spec.SecretFiles[1].Path = "/" }, invalidR, "spec.secret_files[1].path: cannot mount over /"},
		{"file path on a volume", func(i *runtime.Instance) { i.Spec.SecretFiles[1].Path = "/data" }, invalidR,
			`spec.secret_files[1].path: "/data" is also the target of spec.container.volumes[1]`},
		{"file paths repeat", func(i *runtime.Instance) { i.Spec.SecretFiles[1].Path = "/run/secrets/db_password/" }, invalidR,
			"is also the target of spec.secret_files[0]"},
		{"file key not a file name", func(i *runtime.Instance) { i.Secrets["tls"].Data["../x"] = []byte("v") }, invalidR,
			`key "../x" cannot be a file name`},
		{"file too big", func(i *runtime.Instance) { i.Secrets["tls"].Data["big"] = make([]byte, maxSecretFileBytes+1) }, invalidR,
			"above the file limit"},
		{"pull secret not delivered", func(i *runtime.Instance) { delete(i.Secrets, "reg") }, notFound,
			`spec.image_pull_secrets[0]: secret "reg" was not delivered`},
		{"pull secret empty name", func(i *runtime.Instance) { i.Spec.ImagePullSecrets = []string{""} }, invalidR, "spec.image_pull_secrets[0]: empty"},
		{"pull secret not REGISTRY", func(i *runtime.Instance) { i.Spec.ImagePullSecrets = []string{"db"} }, invalidR,
			`secret "db" is of type OPAQUE, not REGISTRY`},
		{"pull secret without username", func(i *runtime.Instance) { delete(i.Secrets["reg"].Data, "username") }, notFound,
			`key "username": missing or empty`},
		{"pull secret with a bad server", func(i *runtime.Instance) { i.Secrets["reg"].Data["server"] = []byte("not a host") }, invalidR,
			`key "server"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inst := secretInstance()
			tt.mutate(&inst)
			_, err := buildCreateSpec(inst, 5)
			if err == nil {
				t.Fatal("buildCreateSpec succeeded")
			}
			var f *runtime.Failure
			if !errors.As(err, &f) || f.Reason != tt.reason {
				t.Fatalf("error %v: want reason %s", err, tt.reason)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if strings.Contains(err.Error(), testSecretValue) {
				t.Errorf("error %q shows the secret value", err)
			}
		})
	}
}

func TestClassifyPull(t *testing.T) {
	tests := []struct {
		msg  string
		want persysv1.FailureReason
	}{
		// Texts read from engine 20.10 against distribution registry 2.8.
		{`Error response from daemon: Head "http://127.0.0.1:32987/v2/persys/app/manifests/v1": no basic auth credentials`, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
		{"Error response from daemon: unauthorized: authentication required", persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
		{"Error response from daemon: manifest for 127.0.0.1:32987/persys/absent:v1 not found: manifest unknown: manifest unknown", persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND},
		{`Error response from daemon: Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused`, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
		{`Error response from daemon: Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io on 10.0.0.53:53: no such host`, persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
		// Docker Hub's answer for a repository it does not show.
		{"Error response from daemon: pull access denied for nope, repository does not exist or may require 'docker login': denied: requested access to the resource is denied", persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
		{"write /var/lib/docker/tmp/x: no space left on device", persysv1.FailureReason_FAILURE_REASON_STORAGE},
		{"invalid reference format", persysv1.FailureReason_FAILURE_REASON_INVALID_SPEC},
		{"context deadline exceeded", persysv1.FailureReason_FAILURE_REASON_IMAGE_PULL_FAILED},
	}
	for _, tt := range tests {
		if got := imagepull.Classify(errors.New(tt.msg)); got != tt.want {
			t.Errorf("classifyPull(%q) = %s, want %s", tt.msg, got, tt.want)
		}
	}
}
