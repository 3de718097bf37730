package console

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	pclient "github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/testutil/devproc"
	"github.com/persys-dev/compute/internal/testutil/images"
)

// dev is one `persys dev` (scheduler, gateway and a Docker agent in one
// process, real mTLS) on a temporary data dir.
type dev struct {
	t         *testing.T
	persysctl string
	dir, gw   string
	image     string
	nodeID    string
}

// startDev runs persys dev and waits until its node is ready; the
// containers its node made are removed when the test ends.
func startDev(t *testing.T) *dev {
	t.Helper()
	cli, image := images.PollerImage(t)
	b := devproc.Build(t)
	p := devproc.StartDev(t, b, "console", "", cli)
	p.LogLines = 80
	p.WaitReady(t)
	return &dev{t: t, persysctl: b.Persysctl, dir: p.Dir, gw: p.Gateway, image: image, nodeID: p.NodeID}
}

func (d *dev) ctl(args ...string) string {
	d.t.Helper()
	cmd := exec.Command(d.persysctl, append([]string{"--config", filepath.Join(d.dir, "persysctl.yaml")}, args...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		d.t.Fatalf("persysctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

var tokenLine = regexp.MustCompile(`(?m)^Token:\s+(psy_\S+)$`)

// token creates an API token for user with role.
func (d *dev) token(user, role string) string {
	d.t.Helper()
	out := d.ctl("token", "create", "--user", user, "--role", role, "--ttl", "1h")
	m := tokenLine.FindStringSubmatch(out)
	if m == nil {
		d.t.Fatalf("no token in persysctl output:\n%s", out)
	}
	return m[1]
}

// httpClient trusts the cluster CA and presents no certificate.
func (d *dev) httpClient() *http.Client {
	d.t.Helper()
	cfg, _, err := pclient.LoadConfig(filepath.Join(d.dir, "persysctl.yaml"))
	if err != nil {
		d.t.Fatal(err)
	}
	ca := cfg.CA
	if !filepath.IsAbs(ca) {
		ca = filepath.Join(d.dir, ca)
	}
	pem, err := os.ReadFile(ca)
	if err != nil {
		d.t.Fatalf("cluster CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		d.t.Fatal("cluster CA: no certificate in " + ca)
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}
