package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/backup"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/store"
)

func newBackupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Save the cluster's etcd state to a snapshot file, or restore one into a new data dir",
	}
	var endpoints, dataDir string
	etcd := &schedulerOptions{} // the scheduler's --etcd-ca/--etcd-cert/--etcd-key, same meaning
	save := &cobra.Command{
		Use:   "save FILE",
		Short: "Write an etcd snapshot: from --etcd-endpoints (running etcd) or --data-dir (a stopped scheduler's embedded etcd)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var (
				version string
				err     error
			)
			switch {
			case (endpoints == "") == (dataDir == ""):
				return fmt.Errorf("give exactly one of --etcd-endpoints and --data-dir")
			case endpoints != "":
				eps := strings.Split(endpoints, ",")
				tlsCfg, terr := etcd.etcdClientTLS(eps)
				if terr != nil {
					return terr
				}
				version, err = backup.Save(cmd.Context(), eps, tlsCfg, args[0])
			default:
				// The embedded etcd answers only its own store identity.
				sf, serr := pki.EnsureStoreIdentity(filepath.Join(dataDir, storePKIDir), time.Now())
				if serr != nil {
					return serr
				}
				version, err = backup.SaveDataDir(cmd.Context(), dataDir,
					store.EmbeddedTLS{CAFile: sf.CA, CertFile: sf.Cert, KeyFile: sf.Key}, args[0])
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "saved %s (etcd %s)\n", args[0], version)
			return err
		},
	}
	save.Flags().StringVar(&endpoints, "etcd-endpoints", "", "etcd client URLs, comma separated")
	save.Flags().StringVar(&dataDir, "data-dir", "", "a stopped scheduler's --data-dir (embedded etcd)")
	save.Flags().StringVar(&etcd.etcdCA, "etcd-ca", "", "with --etcd-endpoints: CA bundle that signed etcd's server certificate")
	save.Flags().StringVar(&etcd.etcdCert, "etcd-cert", "", "with --etcd-endpoints: client certificate etcd accepts (the scheduler's)")
	save.Flags().StringVar(&etcd.etcdKey, "etcd-key", "", "with --etcd-endpoints: key of --etcd-cert")

	var restoreDir string
	restore := &cobra.Command{
		Use:   "restore FILE",
		Short: "Make a new scheduler --data-dir (embedded etcd) from a snapshot",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := backup.Restore(args[0], restoreDir); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "restored %s into %s; start: persys scheduler --data-dir %s ...\n", args[0], restoreDir, restoreDir)
			return err
		},
	}
	restore.Flags().StringVar(&restoreDir, "data-dir", "", "new data dir (must not hold an etcd yet)")
	_ = restore.MarkFlagRequired("data-dir")
	cmd.AddCommand(save, restore)
	return cmd
}
