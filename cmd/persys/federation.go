package main

import (
	"fmt"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/federation/fedapi"
	"github.com/persys-dev/compute/internal/federation/monitor"
	"github.com/persys-dev/compute/internal/federation/server"
	"github.com/persys-dev/compute/internal/obs"
	"github.com/persys-dev/compute/internal/pki"
)

type federationOptions struct {
	server.Options
	etcdEndpoints string
	logLevel      string
}

// newFederationCommand returns `persys federation`: the control plane
// over member clusters, and its join and leave commands.
func newFederationCommand() *cobra.Command {
	o := &federationOptions{}
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "Run a federation: one front door over member clusters, each reached through its gateway",
		Long: "federation keeps its own state in etcd (embedded in --data-dir, or --etcd-endpoints), creates its own CA " +
			"and admin identity in --data-dir/pki on first start, serves its API over HTTPS with mutual TLS, and writes " +
			"a persysctl config for its admin (--data-dir/persysctl.yaml). It probes every member's gateway each " +
			"--probe-interval with the identity the member issued; a member not reached for --grace is Lost.\n\n" +
			"Add members with `persys federation join`.\n\n" +
			"Replicas: run several with the same --etcd-endpoints and a copy of the first one's --data-dir/pki in each " +
			"--data-dir (one CA for the API). One leads (etcd election, --election-ttl) and runs placement, failover, " +
			"service divisions and the event relay; the others answer reads and refuse changes naming the leader.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			level, err := gatewayLogLevel(o.logLevel)
			if err != nil {
				return err
			}
			if o.etcdEndpoints != "" {
				for _, e := range strings.Split(o.etcdEndpoints, ",") {
					if e = strings.TrimSpace(e); !strings.HasPrefix(e, "https://") {
						return fmt.Errorf("--etcd-endpoints %q: want https://host:port", e)
					}
					o.EtcdEndpoints = append(o.EtcdEndpoints, strings.TrimSpace(e))
				}
			}
			o.Logger = obs.NewLogger(os.Stderr, "federation", level)
			o.Out = os.Stdout
			return server.Run(ctx, o.Options)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.DataDir, "data-dir", ".persys-federation", "folder for the federation's etcd data, CA, certificates and persysctl config")
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8543", "host:port of the federation API (HTTPS, mTLS)")
	f.StringSliceVar(&o.SANs, "tls-san", nil, "extra host names or IP addresses for the API's certificate, comma separated (it always covers localhost and loopback); the certificate is issued again when one is missing")
	f.StringVar(&o.MetricsListen, "metrics-listen", "127.0.0.1:9110", "plain HTTP listener for /metrics, /healthz and /readyz (empty disables it)")
	f.StringVar(&o.etcdEndpoints, "etcd-endpoints", "", "external etcd, comma separated https:// URLs (needs --etcd-ca, --etcd-cert, --etcd-key); default: embedded in --data-dir")
	f.StringVar(&o.EtcdCA, "etcd-ca", "", "CA bundle of the external etcd")
	f.StringVar(&o.EtcdCert, "etcd-cert", "", "client certificate for the external etcd")
	f.StringVar(&o.EtcdKey, "etcd-key", "", "client key for the external etcd")
	f.StringVar(&o.Prefix, "prefix", "/persys-federation", "etcd key prefix of the federation's state")
	f.DurationVar(&o.Interval, "probe-interval", monitor.DefaultInterval, "how often every member's gateway is probed")
	f.DurationVar(&o.Grace, "grace", monitor.DefaultGrace, "a member not reached for this long is Lost")
	f.DurationVar(&o.ProbeTimeout, "probe-timeout", monitor.DefaultTimeout, "time allowed to one probe")
	f.StringVar(&o.Advertise, "advertise", "", "https:// URL clients reach this replica's API at (default: https:// and --listen); followers name the leader's")
	f.DurationVar(&o.ElectionTTL, "election-ttl", 5*time.Second, "with --etcd-endpoints: how long a dead leader keeps its seat before another replica takes over")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.AddCommand(newFederationJoinCommand(), newFederationLeaveCommand(), newFederationLabelCommand())
	return cmd
}

func newFederationJoinCommand() *cobra.Command {
	var (
		configPath, gateway, ca, cert, key string
		labels                             []string
	)
	cmd := &cobra.Command{
		Use:   "join CLUSTER --gateway URL --ca FILE --cert FILE --key FILE [--label KEY=VALUE]...",
		Short: "Add a member cluster, reached at its gateway with an identity its CA issued to the federation",
		Long: "join sends the member's gateway URL, its CA bundle and the identity the member issued to the federation " +
			"(on the member: `persysctl user issue federation --role operator`, or `persys ca issue-user`) to the " +
			"federation named by --config (default $" + client.EnvConfig + ": the federation's persysctl config). " +
			"The federation probes the member with that identity and stores it only if the probe succeeds; an " +
			"error names the field at fault (ca when the gateway's certificate does not verify, cert when the " +
			"member refuses the identity or it expired, gateway when it cannot be reached, name when taken).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := fedapi.JoinRequest{Name: args[0], Gateway: gateway}
			set, remove, err := parseLabelArgs(labels)
			if err != nil {
				return fmt.Errorf("--label %w", err)
			}
			if len(remove) > 0 {
				return fmt.Errorf("--label %q: want KEY=VALUE", remove[0]+"-")
			}
			req.Labels = set
			for _, f := range []struct {
				flag, path string
				dst        *string
			}{{"--ca", ca, &req.CA}, {"--cert", cert, &req.Cert}, {"--key", key, &req.Key}} {
				if f.path == "" {
					return fmt.Errorf("%s: required", f.flag)
				}
				data, err := readSmallFile(f.path)
				if err != nil {
					return fmt.Errorf("%s: %w", f.flag, err)
				}
				*f.dst = string(data)
			}
			c, err := federationClient(configPath)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.JoinCluster(cmd.Context(), req)
			if err != nil {
				return joinError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s joined: %s, leader %s, %d nodes, identity %s until %s\n",
				out.Name, out.Health.State, orDash(out.Health.Leader), out.Health.NodesTotal, out.Identity, out.IdentityExpires.UTC().Format(time.RFC3339))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&configPath, "config", "", "the federation's persysctl config (default $"+client.EnvConfig+")")
	f.StringVar(&gateway, "gateway", "", "the member gateway's URL, https://host:port (required)")
	f.StringVar(&ca, "ca", "", "the member's CA bundle, PEM (required)")
	f.StringVar(&cert, "cert", "", "the certificate the member issued to the federation, PEM (required)")
	f.StringVar(&key, "key", "", "its private key, PEM (required)")
	f.StringArrayVar(&labels, "label", nil, "a label of the member, KEY=VALUE (repeat the flag); placements select members by labels (clusterSelector)")
	return cmd
}

func newFederationLabelCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "label CLUSTER KEY=VALUE... | KEY-...",
		Short: "Set (KEY=VALUE) or remove (KEY-) labels of a member cluster",
		Long: "label changes the labels the federation keeps for a member; placements with a clusterSelector " +
			"see the change at their next decision (a new apply, a failover), not at once.",
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, remove, err := parseLabelArgs(args[1:])
			if err != nil {
				return err
			}
			c, err := federationClient(configPath)
			if err != nil {
				return err
			}
			defer c.Close()
			out, err := c.LabelCluster(cmd.Context(), args[0], fedapi.LabelsRequest{Set: set, Remove: remove})
			if err != nil {
				return joinError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s labelled: %s\n", out.Name, orDash(formatLabels(out.Labels)))
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the federation's persysctl config (default $"+client.EnvConfig+")")
	return cmd
}

// parseLabelArgs reads KEY=VALUE (set) and KEY- (remove) arguments.
func parseLabelArgs(args []string) (set map[string]string, remove []string, err error) {
	for _, a := range args {
		if k, v, ok := strings.Cut(a, "="); ok {
			if k == "" {
				return nil, nil, fmt.Errorf("%q: empty key", a)
			}
			if set == nil {
				set = map[string]string{}
			}
			set[k] = v
			continue
		}
		if k, ok := strings.CutSuffix(a, "-"); ok && k != "" {
			remove = append(remove, k)
			continue
		}
		return nil, nil, fmt.Errorf("%q: want KEY=VALUE to set or KEY- to remove", a)
	}
	return set, remove, nil
}

func formatLabels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return strings.Join(keys, ",")
}

func newFederationLeaveCommand() *cobra.Command {
	var configPath string
	cmd := &cobra.Command{
		Use:   "leave CLUSTER",
		Short: "Remove a member cluster from the federation (nothing changes at the member)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := federationClient(configPath)
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.LeaveCluster(cmd.Context(), args[0]); err != nil {
				return joinError(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "cluster %s removed\n", args[0])
			return nil
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the federation's persysctl config (default $"+client.EnvConfig+")")
	return cmd
}

func federationClient(path string) (*client.Client, error) {
	cfg, _, err := client.LoadConfig(path)
	if err != nil {
		return nil, err
	}
	return client.New(cfg)
}

// joinError puts the fields the federation named into the message.
func joinError(err error) error {
	ae, ok := err.(*client.APIError)
	if !ok || len(ae.Fields) == 0 {
		return err
	}
	parts := make([]string, 0, len(ae.Fields))
	for _, f := range ae.Fields {
		parts = append(parts, f.Field+": "+f.Reason)
	}
	return fmt.Errorf("%s", strings.Join(parts, "; "))
}

func readSmallFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > pki.MaxFileSize {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, pki.MaxFileSize)
	}
	return os.ReadFile(path)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
