package cli

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/secrets"
)

// newSecretCommand groups create, get, list and delete of secrets. Values
// go in, never come out: every read prints names, types and key names.
func newSecretCommand(o *options) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "secret",
		Aliases: []string{"secrets"},
		Short:   "Create, list, show or delete secrets (admin); values are never printed",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	cmd.AddCommand(newSecretCreateCommand(o), newSecretGetCommand(o), newSecretListCommand(o), newSecretDeleteCommand(o))
	return cmd
}

func newSecretCreateCommand(o *options) *cobra.Command {
	var (
		typ        string
		literals   []string
		files      []string
		allowRoles []string
		allowUsers []string
	)
	cmd := &cobra.Command{
		Use:   "create NAME (--from-literal KEY=VALUE | --from-file [KEY=]PATH)...",
		Short: "Create a secret, or update it (a new version) when it exists",
		Long: "Create or update a secret. Values come from --from-literal KEY=VALUE or --from-file [KEY=]PATH\n" +
			"(the key defaults to the file's base name); both may repeat. Prefer --from-file: a literal is\n" +
			"visible in your shell history and the process list. Types: opaque (default), registry\n" +
			"(keys server, username, password) and git (token, or username and password).",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := secrets.ValidateName(name); err != nil {
				return fmt.Errorf("NAME: %s", strings.TrimPrefix(err.Error(), "secrets: "))
			}
			t, err := secrets.ParseType(typ)
			if err != nil {
				return fmt.Errorf("--type %q: must be opaque, registry or git", typ)
			}
			data, err := secretData(literals, files)
			if err != nil {
				return err
			}
			if err := secrets.Validate(name, t, data); err != nil {
				return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "secrets: "))
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.PutSecretAllowing(cmd.Context(), name, t, data, allowRoles, allowUsers)
			for k := range data {
				clear(data[k])
			}
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, info)
			}
			verb := "updated"
			if info.GetVersion() == 1 {
				verb = "created"
			}
			_, err = fmt.Fprintf(o.streams.Out, "secret/%s %s (version %d, keys: %s)\n", info.GetName(), verb, info.GetVersion(),
				strings.Join(info.GetKeys(), ", "))
			return err
		},
	}
	cmd.Flags().StringVar(&typ, "type", "opaque", "secret type: opaque, registry or git")
	cmd.Flags().StringArrayVar(&literals, "from-literal", nil, "a key and its value, KEY=VALUE (repeatable)")
	cmd.Flags().StringArrayVar(&files, "from-file", nil, "a key and the file holding its value, [KEY=]PATH (repeatable)")
	cmd.Flags().StringArrayVar(&allowRoles, "allow-role", nil, "a role (operator or viewer) whose users' workloads may reference the secret (repeatable; admins always may)")
	cmd.Flags().StringArrayVar(&allowUsers, "allow-user", nil, "a user whose workloads may reference the secret (repeatable)")
	return cmd
}

// secretData collects the values of --from-literal and --from-file; a key
// may be given once. Errors name the flag and the key, never a value.
func secretData(literals, files []string) (map[string][]byte, error) {
	if len(literals) == 0 && len(files) == 0 {
		return nil, fmt.Errorf("give at least one --from-literal KEY=VALUE or --from-file [KEY=]PATH")
	}
	data := map[string][]byte{}
	add := func(flag, key string, v []byte) error {
		if err := secrets.ValidateKey(key); err != nil {
			return fmt.Errorf("%s: %s", flag, strings.TrimPrefix(err.Error(), "secrets: "))
		}
		if _, dup := data[key]; dup {
			return fmt.Errorf("%s: key %q is given twice", flag, key)
		}
		data[key] = v
		return nil
	}
	for i, l := range literals {
		k, v, ok := strings.Cut(l, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("--from-literal #%d: want KEY=VALUE", i+1)
		}
		if err := add("--from-literal", k, []byte(v)); err != nil {
			return nil, err
		}
	}
	for _, f := range files {
		k, path, ok := strings.Cut(f, "=")
		if !ok {
			k, path = filepath.Base(f), f
		}
		if path == "" {
			return nil, fmt.Errorf("--from-file %q: empty path", f)
		}
		v, err := readSecretFile(path)
		if err != nil {
			return nil, fmt.Errorf("--from-file %s: %w", k, err)
		}
		if err := add("--from-file", k, v); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// readSecretFile reads at most secrets.MaxDataSize bytes of a regular file.
func readSecretFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, secrets.MaxDataSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > secrets.MaxDataSize {
		return nil, fmt.Errorf("%s is larger than %d bytes", path, secrets.MaxDataSize)
	}
	return b, nil
}

func newSecretGetCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "get NAME",
		Short: "Show a secret's type, key names and version (never its values)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			info, err := c.GetSecret(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, info)
			}
			return printSecretsTable(o.streams.Out, []*persysv1.SecretInfo{info}, o.now())
		},
	}
}

func newSecretListCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List secrets: names, types, key names and versions",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			list, err := c.ListSecrets(cmd.Context())
			if err != nil {
				return err
			}
			if o.structured() {
				return printObject(o.streams.Out, o.output, list)
			}
			return printSecretsTable(o.streams.Out, list.GetSecrets(), o.now())
		},
	}
}

func newSecretDeleteCommand(o *options) *cobra.Command {
	return &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a secret; workloads that reference it fail their next apply",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := o.client()
			if err != nil {
				return err
			}
			defer c.Close()
			if err := c.DeleteSecret(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(o.streams.Out, "secret/%s deleted\n", args[0])
			return err
		},
	}
}

// printSecretsTable lists secrets, one per line.
func printSecretsTable(w io.Writer, list []*persysv1.SecretInfo, now time.Time) error {
	if len(list) == 0 {
		_, err := fmt.Fprintln(w, "No secrets.")
		return err
	}
	sorted := append([]*persysv1.SecretInfo(nil), list...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].GetName() < sorted[j].GetName() })
	tw := newTable(w)
	row(tw, "", "NAME", "TYPE", "KEYS", "VERSION", "AGE", "UPDATED")
	for _, s := range sorted {
		row(tw, "",
			s.GetName(),
			secrets.TypeName(s.GetType()),
			strings.Join(s.GetKeys(), ","),
			strconv.FormatUint(s.GetVersion(), 10),
			age(now, s.GetCreatedAt()),
			age(now, s.GetUpdatedAt()),
		)
	}
	return tw.Flush()
}
