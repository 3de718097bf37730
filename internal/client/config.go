package client

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"
)

// EnvConfig names the environment variable that points at the config file
// when --config is not given.
const EnvConfig = "PERSYSCTL_CONFIG"

// DefaultConfigPath is the config file used when neither --config nor
// $PERSYSCTL_CONFIG is set, relative to the user's home directory.
const DefaultConfigPath = ".persys/config.yaml"

// maxConfigSize bounds the config file read from disk.
const maxConfigSize = 1 << 20

// Config is persysctl's configuration: where the gateway is and which
// certificate files to use. In the YAML file, relative paths are resolved
// against the file's directory.
type Config struct {
	// Endpoint is the gateway's base URL, for example https://127.0.0.1:8443.
	Endpoint string `json:"endpoint"`
	// CA is the cluster CA bundle the gateway's certificate must chain to.
	CA string `json:"ca"`
	// Cert and Key are the user's client certificate and key.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	// Token is an API token (psy_...) sent as "Authorization: Bearer";
	// $PERSYS_TOKEN overrides it. With a token the client presents no
	// certificate, so cert and key are optional.
	Token string `json:"token,omitempty"`
}

// EnvToken names the environment variable holding an API token; when set
// it replaces the config file's token.
const EnvToken = "PERSYS_TOKEN"

// maxTokenLen bounds an API token.
const maxTokenLen = 256

// Validate checks every field and names the first invalid one.
func (c *Config) Validate() error {
	if c == nil {
		return errors.New("config is empty")
	}
	if strings.TrimSpace(c.Endpoint) == "" {
		return errors.New("endpoint: required (the gateway's URL, for example https://127.0.0.1:8443)")
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil {
		return fmt.Errorf("endpoint: %w", err)
	}
	if u.Scheme != "https" {
		return fmt.Errorf("endpoint: must be an https:// URL, got %q", c.Endpoint)
	}
	if u.Host == "" {
		return fmt.Errorf("endpoint: no host in %q", c.Endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("endpoint: must not have a query or fragment, got %q", c.Endpoint)
	}
	if strings.TrimSpace(c.CA) == "" {
		return errors.New("ca: required (path to a PEM file)")
	}
	if c.Token != "" {
		if len(c.Token) > maxTokenLen || strings.ContainsAny(c.Token, " \t\r\n") {
			return fmt.Errorf("token: must be one word of at most %d characters (psy_...)", maxTokenLen)
		}
		if (c.Cert == "") != (c.Key == "") {
			return errors.New("cert and key: give both or neither")
		}
		return nil
	}
	for _, f := range []struct{ name, val string }{{"cert", c.Cert}, {"key", c.Key}} {
		if strings.TrimSpace(f.val) == "" {
			return fmt.Errorf("%s: required (path to a PEM file), or set token or $%s", f.name, EnvToken)
		}
	}
	return nil
}

// LoadConfig reads the config file named by explicitPath (--config), else
// by $PERSYSCTL_CONFIG, else ~/.persys/config.yaml, validates it and
// resolves relative file paths against the file's directory. It returns
// the config and the path it read; errors name the source that was tried.
func LoadConfig(explicitPath string) (*Config, string, error) {
	path, source := explicitPath, "--config"
	if path == "" {
		path, source = os.Getenv(EnvConfig), "$"+EnvConfig
	}
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, "", fmt.Errorf("no config: --config and $%s are not set and the home directory is unknown: %w", EnvConfig, err)
		}
		path, source = filepath.Join(home, DefaultConfigPath), "the default path"
	}
	c, err := readConfig(path)
	if err != nil {
		hint := ""
		if errors.Is(err, os.ErrNotExist) {
			hint = fmt.Sprintf(" (set --config or $%s, or run `persys dev`, which prints the config to use)", EnvConfig)
		}
		return nil, path, fmt.Errorf("config from %s %s: %w%s", source, path, err, hint)
	}
	return c, path, nil
}

func readConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigSize)
	}
	c := &Config{}
	if err := yaml.UnmarshalStrict(data, c); err != nil {
		return nil, fmt.Errorf("parsing: %w", err)
	}
	if tok := strings.TrimSpace(os.Getenv(EnvToken)); tok != "" {
		c.Token = tok
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(abs)
	for _, p := range []*string{&c.CA, &c.Cert, &c.Key} {
		if *p != "" {
			*p = resolvePath(dir, *p)
		}
	}
	return c, nil
}

// resolvePath expands a leading ~/ and makes p absolute against dir.
func resolvePath(dir, p string) string {
	if strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[2:])
		}
	}
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// WriteConfig validates c and writes it as YAML to path (mode 0600),
// creating the directory (mode 0700) when missing. The file is replaced
// atomically.
func WriteConfig(path string, c *Config) error {
	if err := c.Validate(); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config %s: %w", path, err)
	}
	return nil
}
