package cli

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
)

// IssueUserOptions is what `persys ca issue-user` issues: a user's client
// certificate for persysctl, signed locally with the CA in Dir.
type IssueUserOptions struct {
	Name string
	Role pki.Role
	// Dir holds ca.crt and ca.key; Out (default Dir) receives NAME.crt,
	// NAME.key and NAME-ca.crt.
	Dir, Out string
	TTL      time.Duration
	// OutConfig, when set, receives a persysctl config naming Endpoint and
	// the files.
	OutConfig, Endpoint string
	// Force replaces existing files.
	Force bool
}

// IssuedUser is what IssueUser wrote.
type IssuedUser struct {
	Identity                 pki.Identity
	NotAfter                 time.Time
	Cert, Key, CA, OutConfig string
}

func (o IssueUserOptions) validate() error {
	if err := pki.ValidateName("NAME", o.Name); err != nil {
		return err
	}
	if o.Role != pki.RoleAdmin && o.Role != pki.RoleOperator && o.Role != pki.RoleViewer {
		return fmt.Errorf("--role %q: must be admin, operator or viewer", o.Role)
	}
	if o.Dir == "" {
		return errors.New("--dir: required (the folder with ca.crt and ca.key)")
	}
	if o.TTL <= 0 || o.TTL > 10*365*24*time.Hour {
		return fmt.Errorf("--ttl %s: must be positive and at most 87600h", o.TTL)
	}
	if o.OutConfig != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return fmt.Errorf("--endpoint %q: must be an https:// URL with a host", o.Endpoint)
		}
	}
	return nil
}

// IssueUser issues and writes a user's certificate, key and CA bundle
// (and a persysctl config with OutConfig). It replaces no file without
// Force.
func IssueUser(o IssueUserOptions) (*IssuedUser, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.Out == "" {
		o.Out = o.Dir
	}
	res := &IssuedUser{
		Cert:      filepath.Join(o.Out, o.Name+".crt"),
		Key:       filepath.Join(o.Out, o.Name+".key"),
		CA:        filepath.Join(o.Out, o.Name+"-ca.crt"),
		OutConfig: o.OutConfig,
	}
	if !o.Force {
		for _, p := range []string{res.Cert, res.Key, res.CA, o.OutConfig} {
			if _, err := os.Lstat(p); p != "" && err == nil {
				return nil, fmt.Errorf("%s: %w (use --force to replace)", p, pki.ErrExists)
			}
		}
	}
	ca, err := pki.LoadCA(o.Dir)
	if err != nil {
		return nil, err
	}
	bundle, _, err := pki.LoadBundle(o.Dir, time.Now())
	if err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := ca.Issue(pki.IssueRequest{CommonName: o.Name, Role: o.Role, Validity: o.TTL})
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.Out, 0o700); err != nil {
		return nil, fmt.Errorf("--out %s: %w", o.Out, err)
	}
	if err := pki.WriteIdentity(o.Out, o.Name, certPEM, keyPEM); err != nil {
		return nil, err
	}
	if err := os.WriteFile(res.CA, bundle, 0o644); err != nil {
		return nil, fmt.Errorf("write %s: %w", res.CA, err)
	}
	certs, err := pki.ReadCertFile(res.Cert)
	if err != nil {
		return nil, err
	}
	if res.Identity, err = pki.IdentityFromCert(certs[0]); err != nil {
		return nil, err
	}
	res.NotAfter = certs[0].NotAfter
	if o.OutConfig == "" {
		return res, nil
	}
	cfg := &client.Config{Endpoint: o.Endpoint, CA: absPath(res.CA), Cert: absPath(res.Cert), Key: absPath(res.Key)}
	if err := client.WriteConfig(o.OutConfig, cfg); err != nil {
		return nil, err
	}
	return res, nil
}

// absPath makes a config's file paths work from any directory.
func absPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// Print tells what was issued and where it is.
func (u *IssuedUser) Print(w io.Writer) {
	fmt.Fprintf(w, "issued user %q (role %s, serial %s), valid until %s\n", u.Identity.CommonName, u.Identity.Role, u.Identity.Serial,
		u.NotAfter.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "certificate: %s\n", u.Cert)
	fmt.Fprintf(w, "key:         %s\n", u.Key)
	fmt.Fprintf(w, "ca bundle:   %s\n", u.CA)
	if u.OutConfig != "" {
		fmt.Fprintf(w, "config:      %s (use: persysctl --config %s, or %s=%s)\n", u.OutConfig, u.OutConfig, client.EnvConfig, u.OutConfig)
	}
}
