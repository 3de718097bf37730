package cli

import (
	"bytes"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestListFormats(t *testing.T) {
	views := []*persysv1.WorkloadView{fixtureRunning(), fixtureFailed(), fixturePending()}
	for _, format := range []string{FormatWide, FormatName} {
		var buf bytes.Buffer
		if err := printWorkloads(&buf, format, views, fixedNow); err != nil {
			t.Fatal(err)
		}
		golden(t, "workloads."+format, buf.Bytes())

		buf.Reset()
		if err := printNodes(&buf, format, fixtureNodes(), fixedNow); err != nil {
			t.Fatal(err)
		}
		golden(t, "nodes."+format, buf.Bytes())
	}
	// The table format is the plain table, golden already.
	var plain, table bytes.Buffer
	if err := printWorkloads(&plain, FormatTable, views, fixedNow); err != nil {
		t.Fatal(err)
	}
	if err := printWorkloadsTable(&table, views, fixedNow); err != nil {
		t.Fatal(err)
	}
	if plain.String() != table.String() {
		t.Errorf("-o table differs from the table:\n%s\n%s", plain.String(), table.String())
	}
}

func TestGetWithoutArguments(t *testing.T) {
	var out, errOut bytes.Buffer
	code := run(t.Context(), []string{"get"}, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}, nil)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	for _, kind := range []string{"workloads", "services", "nodes", "leader"} {
		if !strings.Contains(out.String(), "\n"+kind+" ") {
			t.Errorf("get without arguments does not list %s:\n%s", kind, out.String())
		}
	}
}

func TestVersionWithoutCluster(t *testing.T) {
	var out, errOut bytes.Buffer
	args := []string{"version", "--config", t.TempDir() + "/missing.yaml"}
	if code := run(t.Context(), args, Streams{In: strings.NewReader(""), Out: &out, Err: &errOut}, nil); code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
	if !strings.HasPrefix(out.String(), "persysctl ") || strings.Count(out.String(), "\n") != 1 {
		t.Errorf("stdout %q: want the client's line only", out.String())
	}
	if !strings.Contains(errOut.String(), "gateway: not asked") {
		t.Errorf("stderr %q: want why the gateway was not asked", errOut.String())
	}
}

func TestFailedBefore(t *testing.T) {
	failed := fixtureFailed()
	tests := []struct {
		name string
		view *persysv1.WorkloadView
		want bool
	}{
		{"failure of the current revision", failed, true},
		{"failure of an older revision", withRevision(failed, failed.GetWorkload().GetRevision()+1), false},
		{"running", fixtureRunning(), false},
		{"not yet reported", fixturePending(), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := failedBefore(tt.view); got != tt.want {
				t.Errorf("failedBefore = %v, want %v (status %v)", got, tt.want, tt.view.GetStatus())
			}
		})
	}
	err := failedBeforeErr(failed)
	for _, want := range []string{"already failed before this apply", "persysctl retry workload " + failed.GetWorkload().GetName()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// withRevision is v with its workload at revision rev (a new spec the
// failure predates).
func withRevision(v *persysv1.WorkloadView, rev uint64) *persysv1.WorkloadView {
	out := &persysv1.WorkloadView{Workload: &persysv1.Workload{Name: v.GetWorkload().GetName(), Revision: rev}, Status: v.GetStatus()}
	return out
}

// version against a real gateway: the client's line, then the gateway's.
func TestVersionWithCluster(t *testing.T) {
	c := startCluster(t)
	r := c.persysctl(t, "", "version")
	lines := strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
	if r.code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "persysctl ") || !strings.HasPrefix(lines[1], "gateway ") {
		t.Fatalf("exit %d, stdout %q, stderr %q: want a persysctl line and a gateway line", r.code, r.out, r.err)
	}
	if r := c.persysctl(t, "", "version", "--client"); r.code != 0 || strings.Contains(r.out, "gateway") {
		t.Errorf("version --client: exit %d, stdout %q", r.code, r.out)
	}
}

// completion writes a script for each shell the README names, and refuses
// others by name.
func TestCompletion(t *testing.T) {
	for shell, marker := range map[string]string{
		"bash": "complete -o default -F __start_persysctl persysctl",
		"zsh":  "#compdef persysctl",
		"fish": "complete -c persysctl",
	} {
		t.Run(shell, func(t *testing.T) {
			r := runCLI(t, "", "completion", shell)
			if r.code != 0 || !strings.Contains(r.out, marker) {
				t.Fatalf("exit %d, stderr %q; script lacks %q", r.code, r.err, marker)
			}
		})
	}
	if r := runCLI(t, "", "completion", "tcsh"); r.code == 0 || !strings.Contains(r.err, "tcsh") {
		t.Errorf("completion tcsh: exit %d, stderr %q; want an error naming it", r.code, r.err)
	}
}
