package release

import (
	osexec "os/exec"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// debCheck installs, reinstalls, removes and purges the package with dpkg
// in a clean Debian container and prints "CHECK <name> <value>" lines.
const debCheck = `set -eu
check() { echo "CHECK $1 $2"; }
dpkg -i /dist/` + testDeb + ` >/tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
check version "$(persys version --json | sed 's/.*"version":"\([^"]*\)".*/\1/')"
check ctl "$(persysctl version | cut -d' ' -f2)"
check user "$(id -un persys):$(id -gn persys):$(getent passwd persys | cut -d: -f6,7)"
check etc "$(stat -c %U:%G:%a /etc/persys)"
check state "$(stat -c %U:%G:%a /var/lib/persys)"
check units "$(ls /lib/systemd/system | grep -c '^persys-.*\.service$')"
check example "$(test -f /usr/share/doc/persys/examples/agent.env.example && echo yes)"
# What an operator adds: configuration and cluster state.
echo 'PERSYS_AGENT_FLAGS=--scheduler x:9443' >/etc/persys/agent.env
echo state >/var/lib/persys/marker
# Installing again (an upgrade to the same version) keeps both.
dpkg -i /dist/` + testDeb + ` >/tmp/install.log 2>&1 || { cat /tmp/install.log; exit 1; }
check reinstall "$(cat /etc/persys/agent.env | cut -c1-18):$(cat /var/lib/persys/marker)"
dpkg -r persys >/tmp/remove.log 2>&1 || { cat /tmp/remove.log; exit 1; }
check removed "$(test -e /usr/bin/persys && echo binary-left || echo gone):$(test -e /lib/systemd/system/persys-agent.service && echo unit-left || echo gone)"
check kept-after-remove "$(test -f /etc/persys/agent.env && echo config):$(cat /var/lib/persys/marker)"
dpkg -P persys >/tmp/purge.log 2>&1 || { cat /tmp/purge.log; exit 1; }
check purged "$(test -e /etc/persys && echo config-left || echo gone):$(cat /var/lib/persys/marker)"
check status "$(dpkg-query -W -f '${Status}' persys 2>/dev/null || echo not-installed)"
`

// TestDebInstallRemove installs the package that `make dist` builds in a
// clean Debian bookworm container (debootstrap --variant=minbase from the
// apt mirror, docker import; scripts/debian-image.sh caches it) and checks
// the user, owners, modes, and what remove and purge leave.
func TestDebInstallRemove(t *testing.T) {
	if err := osexec.Command("docker", "info").Run(); err != nil {
		need.Missing(t, "no Docker engine answers: %v", err)
	}
	if _, err := osexec.LookPath("debootstrap"); err != nil {
		need.Missing(t, "debootstrap not installed (scripts/install-deps.sh installs it)")
	}
	const image = "persys-debian:bookworm-minbase"
	run(t, nil, "bash", "scripts/debian-image.sh", image)
	dir := dist(t)
	out := run(t, nil, "docker", "run", "--rm", "--network", "none", "-v", dir+":/dist:ro", image, "bash", "-c", debCheck)
	got := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.SplitN(line, " ", 3); len(f) == 3 && f[0] == "CHECK" {
			got[f[1]] = f[2]
		}
	}
	want := map[string]string{
		"version":           testVersion,
		"ctl":               testVersion,
		"user":              "persys:persys:/var/lib/persys:/usr/sbin/nologin",
		"etc":               "root:persys:750",
		"state":             "persys:persys:750",
		"units":             "3",
		"example":           "yes",
		"reinstall":         "PERSYS_AGENT_FLAGS:state",
		"removed":           "gone:gone",
		"kept-after-remove": "config:state",
		"purged":            "gone:state",
		"status":            "not-installed",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
	if t.Failed() {
		t.Logf("container output:\n%s", out)
	}
}
