// Package gitcompose reads the compose files of workloads whose compose
// source is a Git repository: it resolves a ref to its commit with the
// source's credentials (a secret), reads the file from that commit out of
// a bare clone per repository kept under the scheduler's data folder, and
// polls the sources that ask for it, writing a new revision to the store
// when a ref moved. It owns the clone folder and the poll schedule; what a
// spec is checked against and how a write reaches the scheduler's cache
// are its callers'.
package gitcompose

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/grpc/codes"

	"github.com/persys-dev/compute/api/persys/contract/rpcreason"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/gitsource"
	"github.com/persys-dev/compute/internal/principal"
)

// Secrets delivers secret values (internal/secretsvc.Service).
type Secrets interface {
	ValuesFor(ctx context.Context, who principal.Principal, spec *persysv1.WorkloadSpec) ([]*persysv1.SecretValue, error)
}

// Fetcher reads compose files from Git sources. Concurrent reads of one
// repository share its bare clone; each reads its own commit's tree.
type Fetcher struct {
	secrets Secrets
	dir     string
	once    sync.Once
	err     error
}

// NewFetcher keeps its clones in dir (made mode 0700 on first use; empty:
// a new folder under the system's temporary folder) and opens credentials
// through secrets.
func NewFetcher(dir string, secrets Secrets) *Fetcher {
	return &Fetcher{dir: dir, secrets: secrets}
}

// Fetch resolves g's ref and reads its compose file from that commit.
// Errors are gRPC statuses that name their failure reason.
func (f *Fetcher) Fetch(ctx context.Context, g *persysv1.GitSource) (commit string, file []byte, err error) {
	auth, err := f.Auth(ctx, g)
	if err != nil {
		return "", nil, err
	}
	commit, err = gitsource.Resolve(ctx, g, auth)
	if err != nil {
		return "", nil, gitError(err)
	}
	dir, err := f.repoDir(g.GetUrl())
	if err != nil {
		return "", nil, err
	}
	data, _, err := gitsource.ReadComposeAt(ctx, g, commit, dir, auth)
	if err != nil {
		return "", nil, gitError(err)
	}
	return commit, data, nil
}

// Auth opens the Git credentials secret g names; nil when it names none.
func (f *Fetcher) Auth(ctx context.Context, g *persysv1.GitSource) (*gitsource.Auth, error) {
	if g.GetCredentialsSecret() == "" {
		return nil, nil
	}
	// The scheduler itself reads the repository; whether the workload's
	// principal may use the secret was checked at apply (secretsvc CheckUse)
	// and is checked again when the secret is delivered.
	vals, err := f.secrets.ValuesFor(ctx, principal.Scheduler, &persysv1.WorkloadSpec{Compose: &persysv1.ComposeSpec{
		Git: &persysv1.GitSource{CredentialsSecret: g.GetCredentialsSecret()}}})
	if err != nil {
		return nil, rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND,
			fmt.Sprintf("spec.compose.git.credentialsSecret: %v", err))
	}
	var sv *persysv1.SecretValue
	for _, v := range vals {
		if v.GetName() == g.GetCredentialsSecret() {
			sv = v
		}
	}
	auth, err := gitsource.AuthFromSecret(sv)
	if err != nil {
		return nil, rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_SECRET_NOT_FOUND,
			fmt.Sprintf("spec.compose.git.credentialsSecret %q: %v", g.GetCredentialsSecret(), err))
	}
	return auth, nil
}

// repoDir is the clone folder of one repository, inside the fetcher's
// folder, never the user's cache folder: that one is shared with other
// processes and outlives the data folder.
func (f *Fetcher) repoDir(url string) (string, error) {
	f.once.Do(func() {
		if f.dir == "" {
			f.dir, f.err = os.MkdirTemp("", "persys-scheduler-git-")
			return
		}
		if f.err = os.MkdirAll(f.dir, 0o700); f.err == nil {
			f.err = os.Chmod(f.dir, 0o700)
		}
	})
	if f.err != nil {
		return "", rpcreason.Error(codes.Internal, persysv1.FailureReason_FAILURE_REASON_STORAGE, fmt.Sprintf("git cache folder %s: %v", f.dir, f.err))
	}
	return filepath.Join(f.dir, cacheKey(url)), nil
}

// cacheKey turns a URL into a file name without its credentials: the
// end of the URL for people, a hash of all of it so that two URLs never
// share a folder.
func cacheKey(url string) string {
	clean := gitsource.RedactURL(url)
	var b strings.Builder
	for _, r := range clean {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	out := b.String()
	if len(out) > 80 {
		out = out[len(out)-80:]
	}
	sum := sha256.Sum256([]byte(clean))
	return out + "-" + hex.EncodeToString(sum[:8])
}

func gitError(err error) error {
	return rpcreason.Error(codes.FailedPrecondition, persysv1.FailureReason_FAILURE_REASON_GIT_FETCH_FAILED,
		"spec.compose.git: "+err.Error())
}
