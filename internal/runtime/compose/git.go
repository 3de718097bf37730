package compose

import (
	"context"
	"path"
	"path/filepath"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gitsource"
	"github.com/persys-dev/compute/internal/runtime"
)

// fromGit checks out the workload's compose file from Git: the resolved
// commit when the scheduler pinned one, else the ref's head now. It
// returns the file, the commit and the folder relative paths in the file
// start from. The checkout is kept under the workload's folder.
func (r *Runtime) fromGit(ctx context.Context, inst runtime.Instance) (data []byte, commit, workingDir string, err error) {
	g := inst.Spec.GetCompose().GetGit()
	auth, err := gitAuth(inst)
	if err != nil {
		return nil, "", "", err
	}
	commit = g.GetResolvedCommit()
	if commit == "" {
		if commit, err = gitsource.Resolve(ctx, g, auth); err != nil {
			return nil, "", "", err
		}
	}
	dir, err := gitsource.Checkout(ctx, g, commit, filepath.Join(r.workDir(inst.Name), "git"), auth)
	if err != nil {
		return nil, "", "", err
	}
	data, file, err := gitsource.ReadComposeFile(dir, g.GetPath())
	if err != nil {
		return nil, "", "", err
	}
	return data, commit, filepath.Join(dir, filepath.FromSlash(path.Dir(file))), nil
}

// gitAuth returns the credentials of spec.compose.git.credentials_secret;
// nil when none is named.
func gitAuth(inst runtime.Instance) (*gitsource.Auth, error) {
	c := inst.Spec.GetCompose().GetGit().GetCredentialsSecret()
	if c == "" {
		return nil, nil
	}
	sv, ok := inst.Secrets[c]
	if !ok {
		return nil, runtime.Fail(persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND, nil, "spec.compose.git.credentials_secret: secret %q was not delivered with the workload", c)
	}
	a, err := gitsource.AuthFromSecret(sv)
	if err != nil {
		return nil, invalid("spec.compose.git.credentials_secret %q: %v", c, err)
	}
	return a, nil
}
