package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/api/persys/v1/persysv1grpc"
	"github.com/persys-dev/compute/internal/agent"
	"github.com/persys-dev/compute/internal/cli"
	"github.com/persys-dev/compute/internal/grpcauth"
	"github.com/persys-dev/compute/internal/pki"
)

// adminConn is how the identity commands reach the scheduler: with an
// admin client certificate, by default the one `persys dev` writes.
type adminConn struct {
	scheduler, ca, cert, key string
	devDir                   string
	timeout                  time.Duration
}

func (a *adminConn) flags(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&a.scheduler, "scheduler", "127.0.0.1:9443", "scheduler ControlService address host:port")
	f.StringVar(&a.devDir, "dev-data-dir", ".persys-dev", "data folder of `persys dev`, where --ca, --cert and --key default to")
	f.StringVar(&a.ca, "ca", "", "CA bundle (PEM) (default: DEV-DATA-DIR/pki/ca.crt)")
	f.StringVar(&a.cert, "cert", "", "admin client certificate (PEM) (default: DEV-DATA-DIR/pki/admin.crt)")
	f.StringVar(&a.key, "key", "", "admin client key (PEM) (default: DEV-DATA-DIR/pki/admin.key)")
	f.DurationVar(&a.timeout, "timeout", 30*time.Second, "how long to wait for the scheduler")
}

// dial returns a ControlService client and a close function.
func (a *adminConn) dial() (persysv1grpc.ControlServiceClient, func(), error) {
	files := pki.Files{CA: a.ca, Cert: a.cert, Key: a.key}
	pkiDir := filepath.Join(a.devDir, "pki")
	if files.CA == "" {
		files.CA = filepath.Join(pkiDir, pki.CACertFile)
	}
	if files.Cert == "" {
		files.Cert = filepath.Join(pkiDir, "admin.crt")
	}
	if files.Key == "" {
		files.Key = filepath.Join(pkiDir, "admin.key")
	}
	cfg, err := pki.ClientTLS(files, "")
	if err != nil {
		return nil, nil, fmt.Errorf("--ca/--cert/--key: %w", err)
	}
	conn, err := grpc.NewClient(a.scheduler, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		return nil, nil, fmt.Errorf("--scheduler %s: %w", a.scheduler, err)
	}
	return persysv1grpc.NewControlServiceClient(conn), func() { _ = conn.Close() }, nil
}

func (a *adminConn) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	if parent == nil {
		parent = context.Background()
	}
	return context.WithTimeout(parent, a.timeout)
}

func newJoinTokenCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "join-token",
		Short: "Create, list and revoke the join tokens agents use to obtain a node certificate",
		Args:  cobra.NoArgs,
	}
	cmd.AddCommand(newJoinTokenCreateCommand(), newJoinTokenListCommand(), newJoinTokenRevokeCommand())
	return cmd
}

func newJoinTokenCreateCommand() *cobra.Command {
	var (
		a       adminConn
		ttl     time.Duration
		maxUses int32
		labels  string
		outDir  string
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a join token; prints the token (shown once) and the CA hash to pin",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if ttl < time.Second {
				return fmt.Errorf("--ttl %s: must be at least 1s", ttl)
			}
			if maxUses < 0 {
				return fmt.Errorf("--max-uses %d: must not be negative (0: unlimited)", maxUses)
			}
			l, err := agent.ParseLabels(labels)
			if err != nil {
				return fmt.Errorf("--labels: %w", err)
			}
			c, closeConn, err := a.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := a.ctx(cmd.Context())
			defer cancel()
			// A scheduler that is still starting is waited for, up to --timeout.
			resp, err := c.CreateJoinToken(ctx, &persysv1.CreateJoinTokenRequest{TtlSeconds: int64(ttl / time.Second), MaxUses: maxUses, Labels: l},
				grpc.WaitForReady(true))
			if err != nil {
				return err
			}
			if outDir != "" {
				return writeJoinFiles(outDir, resp.GetToken(), resp.GetCaHash(), cmd.OutOrStdout())
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "token:    %s\n", resp.GetToken())
			fmt.Fprintf(w, "ca hash:  %s\n", resp.GetCaHash())
			fmt.Fprintf(w, "expires:  %s\n", resp.GetInfo().GetExpiresAt().AsTime().UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "\nJoin a node (the token is shown only now):\n  persys agent --scheduler %s --join-token %s --ca-hash %s --data-dir DIR\n",
				a.scheduler, resp.GetToken(), resp.GetCaHash())
			return nil
		},
	}
	a.flags(cmd)
	cmd.Flags().DurationVar(&ttl, "ttl", time.Hour, "how long the token can be used")
	cmd.Flags().Int32Var(&maxUses, "max-uses", 1, "how many joins it allows (0: unlimited until it expires)")
	cmd.Flags().StringVar(&labels, "labels", "", "labels given to nodes that join with it, k=v,k2=v2")
	cmd.Flags().StringVar(&outDir, "out-dir", "", "write the token to DIR/token (0600) and the CA hash to DIR/ca-hash instead of printing the token (for --join-token-file and --ca-hash-file)")
	return cmd
}

// writeJoinFiles writes the token and the CA hash for an agent's
// --join-token-file and --ca-hash-file, each replaced atomically.
func writeJoinFiles(dir, token, hash string, w io.Writer) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("--out-dir: %w", err)
	}
	for _, f := range []struct {
		name, val string
		mode      os.FileMode
	}{{"token", token, 0o600}, {"ca-hash", hash, 0o644}} {
		path := filepath.Join(dir, f.name)
		if err := os.WriteFile(path+".tmp", []byte(f.val+"\n"), f.mode); err != nil {
			return fmt.Errorf("--out-dir: %w", err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			return fmt.Errorf("--out-dir: %w", err)
		}
	}
	_, err := fmt.Fprintf(w, "token written to %s, ca hash %s to %s\n", filepath.Join(dir, "token"), hash, filepath.Join(dir, "ca-hash"))
	return err
}

func newJoinTokenListCommand() *cobra.Command {
	var a adminConn
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List join tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			c, closeConn, err := a.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := a.ctx(cmd.Context())
			defer cancel()
			resp, err := c.ListJoinTokens(ctx, &persysv1.ListJoinTokensRequest{})
			if err != nil {
				return err
			}
			return cli.PrintJoinTokens(cmd.OutOrStdout(), resp.GetTokens(), time.Now())
		},
	}
	a.flags(cmd)
	return cmd
}

func newJoinTokenRevokeCommand() *cobra.Command {
	var a adminConn
	cmd := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a join token: no further joins with it (nodes that joined keep their certificates)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			id, _, _ := strings.Cut(args[0], ".") // a whole token is accepted too
			c, closeConn, err := a.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := a.ctx(cmd.Context())
			defer cancel()
			if _, err := c.RevokeJoinToken(ctx, &persysv1.RevokeJoinTokenRequest{Id: id}); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "join token %s revoked\n", id)
			return nil
		},
	}
	a.flags(cmd)
	return cmd
}

func newCARevokeCommand() *cobra.Command {
	var (
		a          adminConn
		node, user string
	)
	cmd := &cobra.Command{
		Use:   "revoke [SERIAL]",
		Short: "Revoke a certificate by serial, or every certificate issued so far to --node ID or --user NAME",
		Long: "The scheduler refuses a revoked certificate at the next handshake and on open connections; a revoked " +
			"node turns NotReady at once and its workloads move as for a lost node. Revoking a node or a user covers " +
			"certificates issued up to now: a node may join again with a new token.",
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			req := &persysv1.RevokeCertificateRequest{NodeId: node, User: user}
			if len(args) == 1 {
				req.Serial = strings.ToLower(strings.ReplaceAll(args[0], ":", ""))
			}
			n := 0
			for _, v := range []string{req.Serial, node, user} {
				if v != "" {
					n++
				}
			}
			if n != 1 {
				return errors.New("give exactly one of SERIAL, --node and --user")
			}
			c, closeConn, err := a.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := a.ctx(cmd.Context())
			defer cancel()
			resp, err := c.RevokeCertificate(ctx, req)
			if err != nil {
				return err
			}
			r := resp.GetRevocation()
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s at %s\n", cli.RevocationSubject(r), r.GetRevokedAt().AsTime().UTC().Format(time.RFC3339))
			return nil
		},
	}
	a.flags(cmd)
	cmd.Flags().StringVar(&node, "node", "", "revoke every certificate issued so far to this node id")
	cmd.Flags().StringVar(&user, "user", "", "revoke every certificate issued so far to this user")
	return cmd
}

func newCARevocationsCommand() *cobra.Command {
	var a adminConn
	cmd := &cobra.Command{
		Use:   "revocations",
		Short: "List revoked certificates, nodes and users",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			c, closeConn, err := a.dial()
			if err != nil {
				return err
			}
			defer closeConn()
			ctx, cancel := a.ctx(cmd.Context())
			defer cancel()
			resp, err := c.ListRevocations(ctx, &persysv1.ListRevocationsRequest{})
			if err != nil {
				return err
			}
			return cli.PrintRevocations(cmd.OutOrStdout(), resp.GetRevocations())
		},
	}
	a.flags(cmd)
	return cmd
}

func newCARotateCommand() *cobra.Command {
	var (
		dir      string
		cn       string
		validity time.Duration
		overlap  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "rotate",
		Short: "Replace the CA in --dir with a new one; the old one stays trusted (ca-bundle.crt) for --overlap",
		Long: "rotate creates a new CA key and certificate in --dir; certificates signed from then on (joins, renewals) " +
			"carry the new CA, and ca-bundle.crt lists both CAs until --overlap has passed, so certificates of the old " +
			"CA keep working while every component renews. Renewals hand out the new bundle.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if dir == "" {
				return errors.New("--dir: required")
			}
			if validity <= 0 || overlap <= 0 {
				return fmt.Errorf("--validity %s and --overlap %s: must be positive", validity, overlap)
			}
			ca, err := pki.RotateCA(dir, cn, validity, overlap)
			if err != nil {
				return err
			}
			_, bundle, err := pki.LoadBundle(dir, time.Now())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "new CA %q, valid until %s\n", ca.Cert.Subject.CommonName, ca.Cert.NotAfter.UTC().Format(time.RFC3339))
			fmt.Fprintf(w, "hash:    %s (pin this in new join commands)\n", pki.HashCert(ca.Cert))
			fmt.Fprintf(w, "bundle:  %s (%d CAs trusted)\n", filepath.Join(dir, pki.CABundleFile), len(bundle))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "", "directory holding ca.crt and ca.key")
	cmd.Flags().StringVar(&cn, "cn", pki.BootstrapCAName, "common name of the new CA")
	cmd.Flags().DurationVar(&validity, "validity", pki.DefaultCAValidity, "lifetime of the new CA certificate")
	cmd.Flags().DurationVar(&overlap, "overlap", 30*24*time.Hour, "how long the old CA stays trusted")
	_ = cmd.MarkFlagRequired("dir")
	return cmd
}

// identityFlags adds the agent's join and renewal flags.
func identityFlags(cmd *cobra.Command, o *agentOptions) {
	f := cmd.Flags()
	f.StringVar(&o.joinToken, "join-token", "", "join token <id>.<secret> (from `persys ca join-token create`): when --data-dir holds no identity and --ca/--cert/--key are not given, join with it")
	f.StringVar(&o.caHash, "ca-hash", "", "with --join-token: sha256:<hex> of the cluster CA's public key; the scheduler must prove it holds a certificate of that CA")
	// Files keep the token out of the process list and let containers
	// without a shell take it from a volume (deploy/compose).
	f.StringVar(&o.joinTokenFile, "join-token-file", "", "file holding the join token (instead of --join-token)")
	f.StringVar(&o.caHashFile, "ca-hash-file", "", "file holding the CA hash (instead of --ca-hash)")
	f.Float64Var(&o.renewFraction, "cert-renew-fraction", pki.DefaultRenewFraction, "renew the certificate through the scheduler after this share of its lifetime, in (0, 1)")
	f.DurationVar(&o.revocationRefresh, "revocation-refresh", 30*time.Second, "how often to fetch the revoked certificates from the scheduler (a revoked caller is refused)")
	f.DurationVar(&o.identityReload, "identity-reload-interval", pki.DefaultWatchInterval, "how often to look for changed identity files (a CA bundle replaced after `persys ca rotate`) and load them without a restart")
}

// validateIdentity checks the identity flags: files given, or a joined
// identity in --data-dir, or a join token and CA hash to get one.
func (o *agentOptions) validateIdentity() error {
	// Zero (a caller that sets no flags, such as persys dev) is the default.
	if o.renewFraction < 0 || o.renewFraction >= 1 {
		return fmt.Errorf("--cert-renew-fraction %v must be in (0, 1)", o.renewFraction)
	}
	if o.revocationRefresh != 0 && o.revocationRefresh < time.Second {
		return fmt.Errorf("--revocation-refresh %s must be at least 1s", o.revocationRefresh)
	}
	if o.identityReload < 0 {
		return fmt.Errorf("--identity-reload-interval %s must not be negative", o.identityReload)
	}
	given := 0
	for _, v := range []string{o.ca, o.cert, o.key} {
		if v != "" {
			given++
		}
	}
	switch {
	case given == 3:
		if o.joinToken != "" {
			return errors.New("--join-token: not with --ca, --cert and --key (the identity is given)")
		}
		return nil
	case given > 0:
		return errors.New("--ca, --cert and --key go together (or leave all three out to use --data-dir and --join-token)")
	}
	if o.dataDir == "" {
		return errors.New("--data-dir is required without --ca, --cert and --key")
	}
	if agent.HasIdentity(o.dataDir) {
		return nil
	}
	if err := o.readJoinFiles(); err != nil {
		return err
	}
	if o.joinToken == "" || o.caHash == "" {
		return fmt.Errorf("%s holds no identity: give --join-token and --ca-hash to join, or --ca, --cert and --key", o.dataDir)
	}
	if err := pki.ValidateCAHash(o.caHash); err != nil {
		return fmt.Errorf("--ca-hash: %w", err)
	}
	return nil
}

// readJoinFiles fills the token and the CA hash from --join-token-file and
// --ca-hash-file; each value comes from its flag or its file, not both.
func (o *agentOptions) readJoinFiles() error {
	for _, f := range []struct {
		flag, file string
		val        *string
	}{{"join-token", o.joinTokenFile, &o.joinToken}, {"ca-hash", o.caHashFile, &o.caHash}} {
		if f.file == "" {
			continue
		}
		if *f.val != "" {
			return fmt.Errorf("--%s and --%s-file: give one", f.flag, f.flag)
		}
		data, err := os.ReadFile(f.file)
		if err != nil {
			return fmt.Errorf("--%s-file: %w", f.flag, err)
		}
		*f.val = strings.TrimSpace(string(data))
	}
	return nil
}

// joinRetryFor is how long an agent keeps trying to reach a scheduler to
// join (a refusal ends it at once).
const joinRetryFor = 5 * time.Minute

// agentSANs are the names of the node the agent's certificate carries:
// its advertised address (or its host name). No one dials the agent (it
// dials out); they name the node for whoever reads the certificate.
func agentSANs(o agentOptions) ([]string, []net.IP) {
	var dns []string
	var ips []net.IP
	host := o.advertise
	if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
		ips = append(ips, ip)
	} else if host != "" && ip == nil {
		dns = append(dns, host)
	} else if h, err := os.Hostname(); err == nil {
		dns = append(dns, h)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		ips = append(ips, net.IPv4(127, 0, 0, 1))
	}
	return dns, ips
}

// agentIdentity loads the agent's identity, joining first when needed.
func agentIdentity(ctx context.Context, o agentOptions, schedulers []string, log *slog.Logger) (*pki.Holder, map[string]string, error) {
	if o.ca != "" {
		h, err := pki.LoadHolder(pki.Files{CA: o.ca, Cert: o.cert, Key: o.key})
		return h, nil, err
	}
	files := agent.IdentityFiles(o.dataDir)
	if !agent.HasIdentity(o.dataDir) {
		dns, ips := agentSANs(o)
		var err error
		files, _, err = agent.Join(ctx, agent.JoinConfig{
			Schedulers: schedulers, Token: o.joinToken, CAHash: o.caHash, NodeID: o.nodeID,
			DataDir: o.dataDir, DNSNames: dns, IPs: ips, Logger: log, RetryFor: joinRetryFor,
		})
		if err != nil {
			return nil, nil, err
		}
	}
	h, err := pki.LoadHolder(files)
	if err != nil {
		return nil, nil, err
	}
	if cn := h.Leaf().Subject.CommonName; cn != o.nodeID {
		return nil, nil, fmt.Errorf("--node-id %q differs from the identity in %s (node %q)", o.nodeID, filepath.Dir(files.Cert), cn)
	}
	labels, err := agent.JoinLabels(o.dataDir)
	if err != nil {
		return nil, nil, fmt.Errorf("join labels: %w", err)
	}
	return h, labels, nil
}

// startAgentRenewal renews the agent's certificate through the schedulers
// until ctx ends or the returned function, which waits for it, is called.
func startAgentRenewal(ctx context.Context, o agentOptions, schedulers []string, h *pki.Holder, log *slog.Logger) func() {
	renewal, err := agent.NewSchedulerRenewal(schedulers, h)
	if err != nil {
		log.Warn("certificate renewal disabled", "err", err)
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = (&pki.Renewer{Holder: h, Renew: renewal.Renew, Fraction: o.renewFraction, Logger: log, Stale: caRotated(h)}).Run(ctx)
	}()
	return func() { cancel(); <-done; _ = renewal.Close() }
}

// caRotated is a Renewer.Stale that renews as soon as a peer showed that
// the cluster's CA was rotated (pki.Holder.CARotated): the renewal brings
// the new bundle, so users and nodes of the new CA are trusted within
// seconds of the scheduler's own renewal instead of at the end of this
// certificate's lifetime.
func caRotated(h *pki.Holder) func(*x509.Certificate) bool {
	return func(*x509.Certificate) bool { return h.CARotated() }
}

// keepAgentIdentity keeps the agent's revocation set current from the
// schedulers (installed in the holder, so revoked peers fail the
// handshake) and reloads the identity files when they change (a CA bundle
// replaced after a rotation), until ctx ends or the returned function,
// which waits for both, is called.
func keepAgentIdentity(ctx context.Context, o agentOptions, h *pki.Holder, revs *pki.RevocationSet, scheds grpcauth.RevocationLister, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	h.SetRevocationChecker(revs)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		grpcauth.PollRevocations(ctx, scheds, revs, o.revocationRefresh, log)
	}()
	go func() {
		defer wg.Done()
		h.WatchFiles(ctx, o.identityReload, log)
	}()
	return func() { cancel(); wg.Wait() }
}

// startGatewayIdentity keeps the gateway's revocation set current from the
// scheduler, renews its certificate through it and reloads its identity
// files when they change (a CA bundle replaced after a rotation), until
// ctx ends or the returned function (which waits for all three) is called.
func startGatewayIdentity(ctx context.Context, o gatewayOptions, h *pki.Holder, revs *pki.RevocationSet, control persysv1grpc.ControlServiceClient, log *slog.Logger) func() {
	ctx, cancel := context.WithCancel(ctx)
	h.SetRevocationChecker(revs)
	var wg sync.WaitGroup
	wg.Add(3)
	go func() {
		defer wg.Done()
		grpcauth.PollRevocations(ctx, control, revs, o.revocationRefresh, log)
	}()
	go func() {
		defer wg.Done()
		h.WatchFiles(ctx, o.identityReload, log)
	}()
	renew := func(ctx context.Context, _ *x509.Certificate, csrPEM []byte) ([]byte, []byte, error) {
		resp, err := control.RenewCertificate(ctx, &persysv1.RenewCertificateRequest{CsrPem: csrPEM})
		if err != nil {
			return nil, nil, err
		}
		return resp.GetCertificatePem(), resp.GetCaBundlePem(), nil
	}
	go func() {
		defer wg.Done()
		_ = (&pki.Renewer{Holder: h, Renew: renew, Fraction: o.renewFraction, Logger: log, Stale: caRotated(h)}).Run(ctx)
	}()
	return func() { cancel(); wg.Wait() }
}
