package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/backup"
)

func newBackupCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Save the cluster's etcd state to a snapshot file, or restore one into a new data dir",
	}
	var endpoints, dataDir string
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
				version, err = backup.Save(cmd.Context(), strings.Split(endpoints, ","), args[0])
			default:
				version, err = backup.SaveDataDir(cmd.Context(), dataDir, args[0])
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
