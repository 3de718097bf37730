// Package registryauth chooses the registry credentials for an image
// reference and encodes them the way the Docker Engine API expects them
// (the X-Registry-Auth header: base64url JSON of an AuthConfig). It is
// shared by the container runtimes (docker, compose). Callers pass the
// secret values the workload received; only secrets of type REGISTRY are
// considered, and their keys "server", "username" and "password" are
// validated. Nothing here logs, and no error message carries a secret
// value.
package registryauth

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"unicode/utf8"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"

	"github.com/persys-dev/compute/api/persys/contract"
	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Keys of a REGISTRY secret.
const (
	KeyServer   = "server"
	KeyUsername = "username"
	KeyPassword = "password"
)

// DockerHub is the host of bare image names ("nginx", "library/nginx").
const DockerHub = "docker.io"

// Size limits of a REGISTRY secret's values.
const (
	maxServer   = 253 + 6 // a DNS name and a port
	maxUsername = 256
	maxPassword = 16 << 10
)

var (
	// ErrInvalidImage is wrapped by errors about an image reference that
	// does not parse.
	ErrInvalidImage = errors.New("invalid image reference")
	// ErrInvalidSecret is wrapped by errors about a REGISTRY secret that
	// lacks a key or holds an unusable value.
	ErrInvalidSecret = errors.New("invalid registry secret")
	// ErrMissingKey is wrapped (next to ErrInvalidSecret) by errors about a
	// REGISTRY secret that lacks one of its keys or holds it empty.
	ErrMissingKey = errors.New("missing or empty")
)

// HostOf returns the registry host (with its port, when one is given) of
// an image reference, after Docker's normalisation: bare names
// ("busybox", "library/busybox", "user/app") live on docker.io. An image
// that does not parse returns "".
func HostOf(image string) string {
	h, err := hostOf(image)
	if err != nil {
		return ""
	}
	return h
}

func hostOf(image string) (string, error) {
	image = strings.TrimSpace(image)
	if image == "" {
		return "", fmt.Errorf("%w: empty", ErrInvalidImage)
	}
	named, err := reference.ParseNormalizedNamed(image)
	if err != nil {
		return "", fmt.Errorf("%w: %q: %v", ErrInvalidImage, image, err)
	}
	return NormalizeServer(reference.Domain(named)), nil
}

// NormalizeServer turns a registry server as people write it
// ("https://index.docker.io/v1/", "Registry.Example.com:5000/",
// "127.0.0.1:5000") into the host form HostOf returns: no scheme, no path,
// lower case, and Docker Hub's aliases folded into docker.io.
func NormalizeServer(server string) string {
	s := strings.TrimSpace(server)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexByte(s, '/'); i >= 0 {
		s = s[:i]
	}
	s = strings.ToLower(s)
	switch s {
	case "index.docker.io", "registry-1.docker.io", "registry.hub.docker.com":
		return DockerHub
	}
	return s
}

// Credentials are the usable content of one REGISTRY secret.
type Credentials struct {
	// Secret is the name of the secret they come from.
	Secret string
	// Server is the registry host, normalised (see NormalizeServer).
	Server   string
	Username string
	Password string
}

// String names the secret and server only, so that printing credentials
// never shows the password.
func (c Credentials) String() string {
	return fmt.Sprintf("registry credentials from secret %q for %s", c.Secret, c.Server)
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return c.String() }

// LogValue keeps the password (and username) out of slog output.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("secret", c.Secret), slog.String("server", c.Server))
}

// Parse validates a REGISTRY secret and returns its credentials. Errors
// wrap ErrInvalidSecret and name the secret and the key, never a value.
func Parse(sv *persysv1.SecretValue) (Credentials, error) {
	if sv == nil {
		return Credentials{}, fmt.Errorf("%w: missing", ErrInvalidSecret)
	}
	name := sv.GetName()
	if sv.GetType() != persysv1.SecretType_SECRET_TYPE_REGISTRY {
		return Credentials{}, fmt.Errorf("%w: secret %q: type is %s, not %s", ErrInvalidSecret, name, contract.Name(sv.GetType()), contract.Name(persysv1.SecretType_SECRET_TYPE_REGISTRY))
	}
	data := sv.GetData()
	get := func(key string, limit int) (string, error) {
		v := data[key]
		if len(v) == 0 {
			return "", fmt.Errorf("%w: secret %q: key %q: %w", ErrInvalidSecret, name, key, ErrMissingKey)
		}
		if len(v) > limit {
			return "", fmt.Errorf("%w: secret %q: key %q is %d bytes, above the limit of %d", ErrInvalidSecret, name, key, len(v), limit)
		}
		if !utf8.Valid(v) {
			return "", fmt.Errorf("%w: secret %q: key %q is not valid UTF-8", ErrInvalidSecret, name, key)
		}
		return string(v), nil
	}
	server, err := get(KeyServer, maxServer+len("https://")+len("/v1/"))
	if err != nil {
		return Credentials{}, err
	}
	host := NormalizeServer(server)
	if err := validHost(host); err != nil {
		return Credentials{}, fmt.Errorf("%w: secret %q: key %q: %v", ErrInvalidSecret, name, KeyServer, err)
	}
	user, err := get(KeyUsername, maxUsername)
	if err != nil {
		return Credentials{}, err
	}
	if strings.ContainsAny(user, ":\x00\r\n") {
		return Credentials{}, fmt.Errorf("%w: secret %q: key %q contains ':', NUL or a line break", ErrInvalidSecret, name, KeyUsername)
	}
	pass, err := get(KeyPassword, maxPassword)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Secret: name, Server: host, Username: user, Password: pass}, nil
}

// validHost checks a normalised server: a host name or IP with an optional
// port, as image references allow.
func validHost(host string) error {
	if host == "" {
		return errors.New("no host")
	}
	if len(host) > maxServer {
		return fmt.Errorf("host is %d characters, above the limit of %d", len(host), maxServer)
	}
	// The reference grammar is the authority on what a registry host is.
	named, err := reference.ParseNormalizedNamed(host + "/x")
	if err != nil || NormalizeServer(reference.Domain(named)) != host {
		return errors.New("not a registry host (want host[:port])")
	}
	if h, port, err := net.SplitHostPort(host); err == nil && (h == "" || port == "") {
		return errors.New("not a registry host (want host[:port])")
	}
	return nil
}

// Select returns the credentials, among secrets, whose server is the
// image's registry host; the first match in order wins. Secrets of a type
// other than REGISTRY are ignored; a REGISTRY secret that is invalid is an
// error (wrapping ErrInvalidSecret) even when it would not match, so a
// broken pull secret is reported rather than silently unused. ok is false
// when no secret matches.
func Select(image string, secrets []*persysv1.SecretValue) (creds Credentials, ok bool, err error) {
	host, err := hostOf(image)
	if err != nil {
		return Credentials{}, false, err
	}
	for _, sv := range secrets {
		if sv.GetType() != persysv1.SecretType_SECRET_TYPE_REGISTRY {
			continue
		}
		c, err := Parse(sv)
		if err != nil {
			return Credentials{}, false, err
		}
		if !ok && c.Server == host {
			creds, ok = c, true
		}
	}
	return creds, ok, nil
}

// For picks the REGISTRY secret whose server matches the image's registry
// host (see Select) and returns it encoded for the Engine API's
// X-Registry-Auth header (client.ImagePullOptions.RegistryAuth). ok is false,
// with an empty encodedAuth, when no secret matches: pull anonymously.
func For(image string, secrets []*persysv1.SecretValue) (encodedAuth string, ok bool, err error) {
	creds, ok, err := Select(image, secrets)
	if err != nil || !ok {
		return "", false, err
	}
	enc, err := Encode(creds)
	if err != nil {
		return "", false, err
	}
	return enc, true, nil
}

// Encode renders credentials as the Engine API's X-Registry-Auth value.
func Encode(c Credentials) (string, error) {
	enc, err := authconfig.Encode(registry.AuthConfig{
		Username:      c.Username,
		Password:      c.Password,
		ServerAddress: c.Server,
	})
	if err != nil {
		// json.Marshal of strings does not fail; keep the value out anyway.
		return "", fmt.Errorf("encode registry auth for secret %q: %w", c.Secret, ErrInvalidSecret)
	}
	return enc, nil
}
