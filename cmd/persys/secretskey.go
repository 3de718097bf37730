package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/persys-dev/compute/internal/secrets"
)

// newSecretsKeyCommand manages the scheduler's secrets key file:
// generate a new one, or rotate (a new primary key; old keys stay so that
// existing secrets still decrypt). Running schedulers pick a rotation up
// on SIGHUP or restart; secrets are re-sealed with the new key when next
// written.
func newSecretsKeyCommand() *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "secrets-key",
		Short: "Generate or rotate the scheduler's secrets encryption key file",
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&file, "file", "", "the key file (the scheduler's --secrets-key-file) (required)")
	need := func() error {
		if file == "" {
			return errors.New("--file is required")
		}
		return nil
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate",
		Short: "Write a new key file with one random AES-256 key (mode 0600); refuses to overwrite",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			id, err := secrets.GenerateKeyFile(file)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "generated %s with key %s\n", file, id)
			return err
		},
	}, &cobra.Command{
		Use:   "rotate",
		Short: "Add a new primary key to the key file; then send the schedulers SIGHUP (or restart them)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := need(); err != nil {
				return err
			}
			id, err := secrets.AddKey(file)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "rotated %s: new primary key %s; send the schedulers SIGHUP or restart them\n", file, id)
			return err
		},
	})
	return cmd
}

// loadSecretsKeyring loads --secrets-key-file; an empty path disables
// secrets (the secret API answers FailedPrecondition).
func loadSecretsKeyring(path string, log *slog.Logger) (*secrets.Keyring, error) {
	if path == "" {
		log.Warn("secrets disabled: no --secrets-key-file")
		return nil, nil
	}
	k, err := secrets.Load(path)
	if err != nil {
		return nil, fmt.Errorf("--secrets-key-file: %w", err)
	}
	log.Info("secrets keyring loaded", "file", path, "primary_key", k.PrimaryID(), "keys", len(k.KeyIDs()))
	return k, nil
}

// reloadKeyringOnSIGHUP re-reads the key file on every SIGHUP until ctx
// ends; a bad file keeps the keys in use.
func reloadKeyringOnSIGHUP(ctx context.Context, k *secrets.Keyring, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := k.Reload(); err != nil {
				log.Error("secrets key file reload failed; keeping the keys in use", "file", k.Path(), "err", err)
				continue
			}
			log.Info("secrets keyring reloaded", "file", k.Path(), "primary_key", k.PrimaryID(), "keys", len(k.KeyIDs()))
		}
	}
}
