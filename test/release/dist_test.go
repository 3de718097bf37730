package release

import (
	"debug/elf"
	"encoding/json"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	testVersion = "v0.0.0-release-test"
	// testDeb is the package dist.sh makes of testVersion (tools/deb's
	// Debian version: "~" sorts before the release).
	testDeb = "persys_0.0.0~release~test_amd64.deb"
)

var (
	distOnce sync.Once
	distDir  string
	distOut  string
	distErr  string
)

// dist runs scripts/dist.sh once per test process for linux/amd64 (the
// arm64 build is the same command with another GOARCH; it is left to
// `make dist` to save the shared machine a second cross-build).
func dist(t *testing.T) string {
	t.Helper()
	distOnce.Do(func() {
		dir, err := os.MkdirTemp("", "persys-dist-")
		if err != nil {
			distErr = err.Error()
			return
		}
		distDir = dir
		// Not run(): t.Fatal inside Once would leave later tests a half-made dir.
		cmd := osexec.Command("bash", "scripts/dist.sh")
		cmd.Dir = root(t)
		cmd.Env = append(os.Environ(), "PLATFORMS=linux/amd64", "DIST_DIR="+dir, "VERSION="+testVersion,
			"COMMIT=0123456789abcdef0123456789abcdef01234567", "BUILD_DATE=2026-01-02T03:04:05Z")
		out, err := cmd.CombinedOutput()
		distOut = string(out)
		if err != nil {
			distErr = "scripts/dist.sh: " + err.Error() + "\n" + distOut
		}
	})
	if distErr != "" {
		t.Fatal(distErr)
	}
	return distDir
}

func TestDistStampsVersion(t *testing.T) {
	dir := dist(t)
	bin := filepath.Join(dir, "persys_"+testVersion+"_linux_amd64")
	var info struct{ Version, Commit, Date, Platform string }
	if err := json.Unmarshal([]byte(run(t, nil, bin, "version", "--json")), &info); err != nil {
		t.Fatal(err)
	}
	if info.Version != testVersion || info.Commit != "0123456789abcdef0123456789abcdef01234567" ||
		info.Date != "2026-01-02T03:04:05Z" || info.Platform != "linux/amd64" {
		t.Fatalf("persys version --json = %+v", info)
	}
	if out := run(t, nil, bin, "version"); !strings.HasPrefix(out, "persys "+testVersion+" (commit 0123456") {
		t.Fatalf("persys version printed %q", out)
	}
	ctl := filepath.Join(dir, "persysctl_"+testVersion+"_linux_amd64")
	if out := run(t, nil, ctl, "version"); !strings.HasPrefix(out, "persysctl "+testVersion+" (commit 0123456") {
		t.Fatalf("persysctl version printed %q", out)
	}
	if out := run(t, nil, "go", "version", "-m", ctl); !strings.Contains(out, "CGO_ENABLED=0") {
		t.Fatalf("go version -m %s does not show CGO_ENABLED=0:\n%s", ctl, out)
	}
	for _, b := range []string{bin, ctl} {
		f, err := elf.Open(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("%s has a dynamic loader: not static", b)
			}
		}
		_ = f.Close()
		st, _ := os.Stat(b)
		t.Logf("%s: %d bytes", filepath.Base(b), st.Size())
	}
}

func TestDistSums(t *testing.T) {
	dir := dist(t)
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"persys_" + testVersion + "_linux_amd64", "persysctl_" + testVersion + "_linux_amd64",
		testDeb, "persys_" + testVersion + ".spdx.json"}
	for _, w := range want {
		if !strings.Contains(string(sums), "  "+w+"\n") {
			t.Errorf("SHA256SUMS does not list %s:\n%s", w, sums)
		}
	}
	cmd := run(t, nil, "sh", "-c", "cd '"+dir+"' && sha256sum -c SHA256SUMS")
	if strings.Count(cmd, ": OK") != len(want) {
		t.Fatalf("sha256sum -c:\n%s", cmd)
	}
	// A changed byte is caught: the sums are of these files.
	f := filepath.Join(dir, want[3])
	orig, _ := os.ReadFile(f)
	if err := os.WriteFile(f, append(orig, ' '), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = os.WriteFile(f, orig, 0o644) }()
	c := osexec.Command("sha256sum", "-c", "--quiet", "SHA256SUMS")
	c.Dir = dir
	if err := c.Run(); err == nil {
		t.Fatal("sha256sum -c passed after the SBOM was changed")
	}
}

func TestDistSBOM(t *testing.T) {
	dir := dist(t)
	data, err := os.ReadFile(filepath.Join(dir, "persys_"+testVersion+".spdx.json"))
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		SPDXVersion  string `json:"spdxVersion"`
		CreationInfo struct{ Created string }
		Describes    []string `json:"documentDescribes"`
		Packages     []struct {
			SPDXID    string `json:"SPDXID"`
			Name      string `json:"name"`
			Version   string `json:"versionInfo"`
			Checksums []struct {
				Value string `json:"checksumValue"`
			} `json:"checksums"`
		} `json:"packages"`
		Relationships []struct {
			Element, Type, Related string
		} `json:"relationships"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.SPDXVersion != "SPDX-2.3" || doc.CreationInfo.Created != "2026-01-02T03:04:05Z" || len(doc.Describes) != 2 {
		t.Fatalf("SBOM header: %s, created %s, describes %v", doc.SPDXVersion, doc.CreationInfo.Created, doc.Describes)
	}
	sums, _ := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	mods := map[string]string{}
	for _, p := range doc.Packages {
		mods[p.Name] = p.Version
		if strings.HasPrefix(p.SPDXID, "SPDXRef-binary-") {
			if len(p.Checksums) != 1 || !strings.Contains(string(sums), p.Checksums[0].Value+"  "+p.Name) {
				t.Errorf("binary %s: checksum %v does not match SHA256SUMS", p.Name, p.Checksums)
			}
		}
	}
	// Modules of go.mod that the binaries link must be listed with their versions.
	gomod, _ := os.ReadFile(filepath.Join(root(t), "go.mod"))
	for _, m := range []string{"github.com/spf13/cobra", "go.etcd.io/etcd/client/v3", "google.golang.org/grpc"} {
		v, ok := mods[m]
		if !ok || !strings.Contains(string(gomod), m+" "+v) {
			t.Errorf("SBOM lists %s at %q (present %v); go.mod does not agree", m, v, ok)
		}
	}
	if mods["stdlib"] == "" {
		t.Error("SBOM does not list the Go standard library")
	}
}
