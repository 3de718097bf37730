package registryauth

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"

	"github.com/moby/moby/api/pkg/authconfig"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestHostOf(t *testing.T) {
	tests := []struct {
		name, image, want string
	}{
		{"bare name", "busybox", "docker.io"},
		{"bare name with tag", "busybox:1.36", "docker.io"},
		{"library path", "library/busybox", "docker.io"},
		{"user repo", "someone/app:v1", "docker.io"},
		{"explicit hub", "docker.io/library/busybox", "docker.io"},
		{"hub alias", "index.docker.io/library/busybox", "docker.io"},
		{"host with port", "127.0.0.1:5000/app:v1", "127.0.0.1:5000"},
		{"localhost", "localhost/app", "localhost"},
		{"dns host", "registry.example.com/team/app@sha256:" + strings.Repeat("a", 64), "registry.example.com"},
		{"ipv6 host", "[::1]:5000/app", "[::1]:5000"},
		{"empty", "", ""},
		{"upper case repo", "Registry.example.com/App", ""},
		{"garbage", "::", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HostOf(tt.image); got != tt.want {
				t.Errorf("HostOf(%q) = %q, want %q", tt.image, got, tt.want)
			}
		})
	}
}

func TestNormalizeServer(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://index.docker.io/v1/", "docker.io"},
		{"registry-1.docker.io", "docker.io"},
		{"docker.io", "docker.io"},
		{"http://127.0.0.1:5000", "127.0.0.1:5000"},
		{"Registry.Example.com:5000/", "registry.example.com:5000"},
		{" ghcr.io ", "ghcr.io"},
	}
	for _, tt := range tests {
		if got := NormalizeServer(tt.in); got != tt.want {
			t.Errorf("NormalizeServer(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func regSecret(name, server, user, pass string) *persysv1.SecretValue {
	data := map[string][]byte{}
	if server != "" {
		data[KeyServer] = []byte(server)
	}
	if user != "" {
		data[KeyUsername] = []byte(user)
	}
	if pass != "" {
		data[KeyPassword] = []byte(pass)
	}
	return &persysv1.SecretValue{Name: name, Type: persysv1.SecretType_SECRET_TYPE_REGISTRY, Data: data}
}

func TestParse(t *testing.T) {
	const pass = "s3cret-value"
	tests := []struct {
		name    string
		sv      *persysv1.SecretValue
		want    Credentials
		wantErr string // substring; empty means success
	}{
		{name: "ok", sv: regSecret("reg", "https://127.0.0.1:5000/v2/", "alice", pass),
			want: Credentials{Secret: "reg", Server: "127.0.0.1:5000", Username: "alice", Password: pass}},
		{name: "hub alias", sv: regSecret("hub", "https://index.docker.io/v1/", "bob", pass),
			want: Credentials{Secret: "hub", Server: "docker.io", Username: "bob", Password: pass}},
		{name: "nil", sv: nil, wantErr: "missing"},
		{name: "wrong type", sv: &persysv1.SecretValue{Name: "o", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE},
			wantErr: `secret "o": type is OPAQUE, not REGISTRY`},
		{name: "missing server", sv: regSecret("reg", "", "alice", pass), wantErr: `secret "reg": key "server": missing or empty`},
		{name: "missing username", sv: regSecret("reg", "127.0.0.1:5000", "", pass), wantErr: `secret "reg": key "username": missing or empty`},
		{name: "missing password", sv: regSecret("reg", "127.0.0.1:5000", "alice", ""), wantErr: `secret "reg": key "password": missing or empty`},
		{name: "empty username", sv: &persysv1.SecretValue{Name: "reg", Type: persysv1.SecretType_SECRET_TYPE_REGISTRY,
			Data: map[string][]byte{KeyServer: []byte("h.example"), KeyUsername: {}, KeyPassword: []byte(pass)}},
			wantErr: `key "username": missing or empty`},
		{name: "bad server", sv: regSecret("reg", "not a host!", "alice", pass), wantErr: `key "server": not a registry host`},
		{name: "server without port number", sv: regSecret("reg", "host.example:", "alice", pass), wantErr: `key "server"`},
		{name: "colon in username", sv: regSecret("reg", "h.example", "a:b", pass), wantErr: `key "username" contains ':'`},
		{name: "password too long", sv: regSecret("reg", "h.example", "alice", strings.Repeat("p", maxPassword+1)),
			wantErr: `key "password" is 16385 bytes, above the limit of 16384`},
		{name: "password not utf-8", sv: regSecret("reg", "h.example", "alice", "\xff\xfe"), wantErr: `key "password" is not valid UTF-8`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.sv)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if got != tt.want {
					t.Fatalf("Parse = %+v, want %+v", got, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidSecret) {
				t.Errorf("error %v does not wrap ErrInvalidSecret", err)
			}
			if want := strings.Contains(tt.wantErr, "missing or empty"); errors.Is(err, ErrMissingKey) != want {
				t.Errorf("errors.Is(%v, ErrMissingKey) = %v, want %v", err, !want, want)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), pass) {
				t.Errorf("error %q shows the password", err)
			}
		})
	}
}

func TestFor(t *testing.T) {
	local := regSecret("local", "127.0.0.1:5000", "alice", "pw-local")
	local2 := regSecret("local2", "http://127.0.0.1:5000/", "carol", "pw-local2")
	hub := regSecret("hub", "https://index.docker.io/v1/", "bob", "pw-hub")
	opaque := &persysv1.SecretValue{Name: "app", Type: persysv1.SecretType_SECRET_TYPE_OPAQUE,
		Data: map[string][]byte{"token": []byte("x")}}
	broken := regSecret("broken", "127.0.0.1:6000", "", "pw")

	tests := []struct {
		name     string
		image    string
		secrets  []*persysv1.SecretValue
		wantOK   bool
		wantUser string
		wantErr  error
	}{
		{name: "match by host and port", image: "127.0.0.1:5000/app:v1", secrets: []*persysv1.SecretValue{hub, local}, wantOK: true, wantUser: "alice"},
		{name: "first match wins", image: "127.0.0.1:5000/app", secrets: []*persysv1.SecretValue{local2, local}, wantOK: true, wantUser: "carol"},
		{name: "bare name uses docker hub", image: "busybox", secrets: []*persysv1.SecretValue{local, hub}, wantOK: true, wantUser: "bob"},
		{name: "other port does not match", image: "127.0.0.1:5001/app", secrets: []*persysv1.SecretValue{local}},
		{name: "no secrets", image: "127.0.0.1:5000/app"},
		{name: "opaque secrets ignored", image: "127.0.0.1:5000/app", secrets: []*persysv1.SecretValue{opaque}},
		{name: "invalid registry secret is an error", image: "127.0.0.1:5000/app", secrets: []*persysv1.SecretValue{local, broken}, wantErr: ErrInvalidSecret},
		{name: "invalid image", image: "app:bad tag!", secrets: []*persysv1.SecretValue{local}, wantErr: ErrInvalidImage},
		{name: "empty image", image: "", wantErr: ErrInvalidImage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			enc, ok, err := For(tt.image, tt.secrets)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("For error = %v, want %v", err, tt.wantErr)
				}
				if ok || enc != "" {
					t.Fatalf("For returned ok=%v enc=%q with an error", ok, enc)
				}
				return
			}
			if err != nil {
				t.Fatalf("For: %v", err)
			}
			if ok != tt.wantOK {
				t.Fatalf("For ok = %v, want %v", ok, tt.wantOK)
			}
			if !ok {
				if enc != "" {
					t.Fatalf("For returned %q without a match", enc)
				}
				return
			}
			// The engine decodes it with DecodeAuthConfig: check the round trip.
			if strings.ContainsAny(enc, "+/") {
				t.Errorf("encoded auth %q is not base64url", enc)
			}
			got, err := authconfig.Decode(enc)
			if err != nil {
				t.Fatalf("DecodeAuthConfig: %v", err)
			}
			if got.Username != tt.wantUser || got.Password == "" || got.ServerAddress != HostOf(tt.image) {
				t.Fatalf("decoded %+v, want user %q on %q", got, tt.wantUser, HostOf(tt.image))
			}
		})
	}
}

func TestCredentialsNeverPrintPassword(t *testing.T) {
	c := Credentials{Secret: "reg", Server: "127.0.0.1:5000", Username: "alice", Password: "top-secret-pw"}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("pull", "creds", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%v %+v %#v %s", c, c, c, c), logs.String()} {
		if strings.Contains(s, c.Password) {
			t.Errorf("output %q shows the password", s)
		}
		if !strings.Contains(s, "reg") {
			t.Errorf("output %q does not name the secret", s)
		}
	}
}
