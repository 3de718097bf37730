package monitoring

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/persys-dev/compute/internal/testutil/need"
)

// promtool returns the path of promtool (Debian's prometheus package).
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		need.Missing(t, "promtool not installed (scripts/install-deps.sh installs prometheus)")
	}
	return p
}

func runPromtool(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(promtool(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestRulesAreValid(t *testing.T) {
	out := runPromtool(t, "check", "rules", "alerts.yml")
	if !strings.Contains(out, "SUCCESS") {
		t.Fatalf("promtool check rules said:\n%s", out)
	}
}

func TestScrapeConfigIsValid(t *testing.T) {
	runPromtool(t, "check", "config", "prometheus.yml")
}

// TestRulesUnitTests runs alerts_test.yml; it also checks that every alert
// of alerts.yml has at least one test that expects it to fire.
func TestRulesUnitTests(t *testing.T) {
	out := runPromtool(t, "test", "rules", "alerts_test.yml")
	t.Logf("promtool test rules:\n%s", out)

	alerts := alertNames(t, "alerts.yml", "- alert: ")
	tested := map[string]bool{}
	for _, n := range alertNames(t, "alerts_test.yml", "alertname: ") {
		tested[n] = true
	}
	for _, a := range alerts {
		if !tested[a] {
			t.Errorf("alert %s has no test in alerts_test.yml", a)
		}
	}
	if len(alerts) < 10 {
		t.Errorf("found %d alerts in alerts.yml, want the 10 rules the file defines", len(alerts))
	}
}

func alertNames(t *testing.T, file, marker string) []string {
	t.Helper()
	data, err := Files.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		if i := strings.Index(line, marker); i >= 0 {
			names = append(names, strings.TrimSpace(line[i+len(marker):]))
		}
	}
	return names
}
