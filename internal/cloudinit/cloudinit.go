// Package cloudinit validates the cloud-init inputs of a VM (user-data,
// meta-data, network-config, vendor-data and the login) and renders them
// into a NoCloud seed: an ISO 9660 volume labelled "cidata".
//
// Validate has no agent-only dependencies, so the scheduler's manifest
// validation calls it too; BuildSeed runs genisoimage and is called by the
// agent's qemu runtime.
//
// Rules for the login (VMLogin) and the user's user-data:
//   - without a login the user-data is passed through unchanged;
//   - with a login and #cloud-config user-data (or none), the login's user is
//     merged into the document's "users" list (created as ["default", user]
//     when absent; comments are kept) and ssh_pwauth is set to true when a
//     password is given and the document does not set it;
//   - with a login and a "#!" script, the user-data becomes a MIME multipart
//     message: a text/cloud-config part holding the login, then the script
//     as a text/x-shellscript part.
//
// meta-data always carries instance-id "<uid>-r<revision>" (so the guest
// reruns per-instance modules on a new revision) and local-hostname; keys of
// the user's meta-data are kept, except that those two are ours.
//
// Password values (a generated password delivered through a secret) are
// rendered as plain_text_passwd and must never be logged by callers.
package cloudinit

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	yaml "go.yaml.in/yaml/v3"
)

// Limits.
const (
	// MaxDocumentBytes bounds each of user-data, meta-data, network-config
	// and vendor-data.
	MaxDocumentBytes = 64 << 10
	// MaxSSHKeys bounds ssh_authorized_keys; MaxSSHKeyBytes each key.
	MaxSSHKeys     = 100
	MaxSSHKeyBytes = 16 << 10
	// MaxPasswordHashBytes bounds password_hash.
	MaxPasswordHashBytes = 512
)

// ErrInvalid is wrapped by every validation error.
var ErrInvalid = errors.New("invalid cloud-init input")

// Field paths used in errors (the manifest's JSON names).
const (
	FieldUserData       = "spec.vm.cloudInit.userData"
	FieldMetaData       = "spec.vm.cloudInit.metaData"
	FieldNetworkConfig  = "spec.vm.cloudInit.networkConfig"
	FieldVendorData     = "spec.vm.cloudInit.vendorData"
	FieldLogin          = "spec.vm.login"
	FieldLoginUser      = "spec.vm.login.user"
	FieldPasswordHash   = "spec.vm.login.passwordHash"
	FieldGeneratePass   = "spec.vm.login.generatePassword"
	FieldPasswordSecret = "spec.vm.login.passwordSecret"
	FieldSSHKeys        = "spec.vm.login.sshAuthorizedKeys"
)

// FieldError is a validation error of one field; it wraps ErrInvalid.
// Callers that collect errors per field (the manifest) read Field and
// Message instead of parsing the text.
type FieldError struct {
	Field   string // the manifest's JSON path, one of the Field constants
	Message string
}

func (e *FieldError) Error() string { return ErrInvalid.Error() + ": " + e.Field + ": " + e.Message }

// Unwrap makes errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

var (
	userRe   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	secretRe = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$`)
	keyTypes = []string{"ssh-", "ecdsa-sha2-", "sk-ssh-", "sk-ecdsa-"}
)

// Kind of a user-data (or vendor-data) document.
type Kind int

const (
	KindEmpty       Kind = iota
	KindCloudConfig      // starts with #cloud-config
	KindScript           // starts with #!
)

// Validate checks the cloud-init documents and the login. A nil ci or login
// is valid. Errors wrap ErrInvalid and name the field.
func Validate(ci *persysv1.CloudInit, login *persysv1.VMLogin) error {
	kind, err := docKind(FieldUserData, ci.GetUserData())
	if err != nil {
		return err
	}
	if kind == KindCloudConfig && hasLogin(login) {
		doc, _ := yamlMapping(FieldUserData, ci.GetUserData())
		if doc != nil {
			if u := mapGet(doc.Content[0], "users"); u != nil && u.Kind != yaml.SequenceNode {
				return invalid(FieldUserData, "users must be a list to add the login's user")
			}
		}
	}
	if _, err := docKind(FieldVendorData, ci.GetVendorData()); err != nil {
		return err
	}
	if _, err := yamlMapping(FieldMetaData, ci.GetMetaData()); err != nil {
		return err
	}
	if _, err := yamlMapping(FieldNetworkConfig, ci.GetNetworkConfig()); err != nil {
		return err
	}
	return ValidateLogin(login)
}

func checkText(field, s string) error {
	if len(s) > MaxDocumentBytes {
		return invalid(field, "is %d bytes, more than the limit of %d", len(s), MaxDocumentBytes)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return invalid(field, "contains a NUL byte")
	}
	if !utf8.ValidString(s) {
		return invalid(field, "is not valid UTF-8")
	}
	return nil
}

// docKind validates a user-data or vendor-data document and says its kind.
func docKind(field, s string) (Kind, error) {
	if err := checkText(field, s); err != nil {
		return 0, err
	}
	switch {
	case strings.TrimSpace(s) == "":
		return KindEmpty, nil
	case strings.HasPrefix(s, "#!"):
		return KindScript, nil
	case strings.HasPrefix(s, "#cloud-config"):
		first, _, _ := strings.Cut(s, "\n")
		if strings.TrimRight(first, " \t\r") != "#cloud-config" {
			return 0, invalid(field, "the first line must be exactly #cloud-config")
		}
		if _, err := yamlMapping(field, s); err != nil {
			return 0, err
		}
		return KindCloudConfig, nil
	default:
		return 0, invalid(field, "must start with #cloud-config or a #! script line")
	}
}

// yamlMapping parses s as one YAML document whose top level is a mapping
// (or empty) and returns that mapping node (nil when empty).
func yamlMapping(field, s string) (*yaml.Node, error) {
	if err := checkText(field, s); err != nil {
		return nil, err
	}
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	dec := yaml.NewDecoder(strings.NewReader(s))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		return nil, invalid(field, "is not valid YAML: %v", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, invalid(field, "holds more than one YAML document")
	} else if err.Error() != "EOF" {
		return nil, invalid(field, "is not valid YAML: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, nil
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return nil, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, invalid(field, "must be a YAML mapping at the top level")
	}
	return &doc, nil
}

// ValidateLogin checks a VM's login: the one definition of the login
// rules (user name, root refused, password, SSH keys and their limits),
// used by the manifest, the scheduler (through Validate) and the qemu
// runtime. The error is a *FieldError.
func ValidateLogin(l *persysv1.VMLogin) error {
	if l == nil {
		return nil
	}
	set := l.GetPasswordHash() != "" || l.GetGeneratePassword() || l.GetPasswordSecret() != "" || len(l.GetSshAuthorizedKeys()) > 0
	if l.GetUser() == "" {
		if set {
			return invalid(FieldLoginUser, "is required when a password or ssh key is given")
		}
		return nil
	}
	if !userRe.MatchString(l.GetUser()) {
		return invalid(FieldLoginUser, "%q is not a valid user name (lower-case letters, digits, _ and -, at most 32, not starting with a digit or -)", l.GetUser())
	}
	if l.GetUser() == "root" {
		return invalid(FieldLoginUser, "root is not allowed; use a regular user (it gets sudo)")
	}
	if h := l.GetPasswordHash(); h != "" {
		if l.GetGeneratePassword() {
			return invalid(FieldGeneratePass, "is mutually exclusive with passwordHash")
		}
		if l.GetPasswordSecret() != "" {
			return invalid(FieldPasswordSecret, "is mutually exclusive with passwordHash")
		}
		if len(h) > MaxPasswordHashBytes {
			return invalid(FieldPasswordHash, "is %d bytes, more than the limit of %d", len(h), MaxPasswordHashBytes)
		}
		if !strings.HasPrefix(h, "$") || strings.ContainsAny(h, " \t\r\n:\x00") || !utf8.ValidString(h) {
			return invalid(FieldPasswordHash, "must be a crypt(3) hash such as $6$salt$hash (no spaces or colons)")
		}
	}
	if l.GetGeneratePassword() && l.GetPasswordSecret() == "" {
		return invalid(FieldPasswordSecret, "is required when generatePassword is true (the secret that keeps the password)")
	}
	if s := l.GetPasswordSecret(); s != "" && !secretRe.MatchString(s) {
		return invalid(FieldPasswordSecret, "%q is not a valid secret name", s)
	}
	keys := l.GetSshAuthorizedKeys()
	if len(keys) > MaxSSHKeys {
		return invalid(FieldSSHKeys, "has %d keys, more than the limit of %d", len(keys), MaxSSHKeys)
	}
	for i, k := range keys {
		f := fmt.Sprintf("%s[%d]", FieldSSHKeys, i)
		if len(k) > MaxSSHKeyBytes {
			return invalid(f, "is %d bytes, more than the limit of %d", len(k), MaxSSHKeyBytes)
		}
		if strings.ContainsAny(k, "\r\n\x00") {
			return invalid(f, "must be one line")
		}
		// Rendered as a YAML string, which must be UTF-8 (FuzzValidate).
		if !utf8.ValidString(k) {
			return invalid(f, "is not valid UTF-8")
		}
		k = strings.TrimSpace(k)
		ok := false
		for _, p := range keyTypes {
			if strings.HasPrefix(k, p) {
				ok = true
				break
			}
		}
		if !ok || len(strings.Fields(k)) < 2 {
			return invalid(f, "is not an OpenSSH public key (\"ssh-ed25519 AAAA... comment\")")
		}
	}
	return nil
}

// Input is what a seed is rendered from.
type Input struct {
	CloudInit *persysv1.CloudInit
	Login     *persysv1.VMLogin
	// Password is the plain password of the login, read by the caller from
	// the secret login.password_secret (key "password"); empty when the
	// login uses password_hash or no password.
	Password string
	// InstanceID goes into meta-data (see InstanceID).
	InstanceID string
	// Hostname goes into meta-data as local-hostname (see Hostname).
	Hostname string
	// Metadata (the VM spec's metadata map) is added to meta-data; keys of
	// the user's meta-data document win over it, instance-id and
	// local-hostname are always ours.
	Metadata map[string]string
}

// Seed is the rendered content of the NoCloud files; empty documents are
// left out of the volume, except user-data and meta-data which are always
// written.
type Seed struct {
	UserData      string
	MetaData      string
	NetworkConfig string
	VendorData    string
}

// InstanceID is the meta-data instance-id of one revision of a workload.
func InstanceID(uid string, revision uint64) string {
	return fmt.Sprintf("%s-r%d", uid, revision)
}

// Hostname turns a workload name into an RFC 1123 host label.
func Hostname(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	h := strings.Trim(b.String(), "-")
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-")
	}
	if h == "" {
		h = "vm"
	}
	return h
}

// Render validates in and renders the seed's documents.
func Render(in Input) (Seed, error) {
	if err := Validate(in.CloudInit, in.Login); err != nil {
		return Seed{}, err
	}
	if in.Login.GetPasswordSecret() != "" && in.Password == "" {
		return Seed{}, invalid(FieldPasswordSecret, "the secret's password is empty")
	}
	// Not UTF-8, the password cannot be a YAML string (found by FuzzValidate).
	if strings.ContainsAny(in.Password, "\x00") || len(in.Password) > 1024 || !utf8.ValidString(in.Password) {
		return Seed{}, invalid(FieldPasswordSecret, "the secret's password must be at most 1024 bytes of UTF-8 without NUL")
	}
	ud, err := renderUserData(in)
	if err != nil {
		return Seed{}, err
	}
	md, err := renderMetaData(in)
	if err != nil {
		return Seed{}, err
	}
	return Seed{
		UserData:      ud,
		MetaData:      md,
		NetworkConfig: in.CloudInit.GetNetworkConfig(),
		VendorData:    in.CloudInit.GetVendorData(),
	}, nil
}

// userNode builds the cloud-config "users" entry of the login.
func userNode(in Input) *yaml.Node {
	l := in.Login
	m := &yaml.Node{Kind: yaml.MappingNode}
	add := func(k string, v *yaml.Node) {
		m.Content = append(m.Content, str(k), v)
	}
	add("name", str(l.GetUser()))
	add("shell", str("/bin/sh"))
	add("sudo", str("ALL=(ALL) NOPASSWD:ALL"))
	switch {
	case l.GetPasswordHash() != "":
		add("passwd", str(l.GetPasswordHash()))
		add("lock_passwd", boolNode(false))
	case in.Password != "":
		add("plain_text_passwd", str(in.Password))
		add("lock_passwd", boolNode(false))
	}
	if keys := l.GetSshAuthorizedKeys(); len(keys) > 0 {
		seq := &yaml.Node{Kind: yaml.SequenceNode}
		for _, k := range keys {
			seq.Content = append(seq.Content, str(strings.TrimSpace(k)))
		}
		add("ssh_authorized_keys", seq)
	}
	return m
}

func str(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s}
}

func boolNode(b bool) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: fmt.Sprint(b)}
}

// mapGet returns the value node of key in mapping m.
func mapGet(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

func mapSet(m *yaml.Node, key string, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			m.Content[i+1] = v
			return
		}
	}
	m.Content = append(m.Content, str(key), v)
}

// mergeLogin adds the login to a #cloud-config document (nil: a new one).
func mergeLogin(doc *yaml.Node, in Input) (string, error) {
	if doc == nil {
		doc = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	top := doc.Content[0]
	users := mapGet(top, "users")
	switch {
	case users == nil:
		users = &yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{str("default")}}
		mapSet(top, "users", users)
	case users.Kind != yaml.SequenceNode:
		return "", invalid(FieldUserData, "users must be a list to add the login's user")
	}
	users.Content = append(users.Content, userNode(in))
	if (in.Password != "" || in.Login.GetPasswordHash() != "") && mapGet(top, "ssh_pwauth") == nil {
		mapSet(top, "ssh_pwauth", boolNode(true))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("render user-data: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("render user-data: %w", err)
	}
	out := buf.String()
	// The encoder keeps the head comment "#cloud-config" of the original
	// document; make sure the header is there exactly once.
	if !strings.HasPrefix(out, "#cloud-config\n") {
		out = "#cloud-config\n" + out
	}
	return out, nil
}

func hasLogin(l *persysv1.VMLogin) bool {
	return l.GetUser() != ""
}

func renderUserData(in Input) (string, error) {
	ud := in.CloudInit.GetUserData()
	if !hasLogin(in.Login) {
		if strings.TrimSpace(ud) == "" {
			return "#cloud-config\n{}\n", nil
		}
		return ud, nil
	}
	kind, err := docKind(FieldUserData, ud)
	if err != nil {
		return "", err
	}
	switch kind {
	case KindCloudConfig:
		doc, err := yamlMapping(FieldUserData, ud)
		if err != nil {
			return "", err
		}
		return mergeLogin(doc, in)
	case KindScript:
		cc, err := mergeLogin(nil, in)
		if err != nil {
			return "", err
		}
		return multipart([]part{{"text/cloud-config", "login.cfg", cc}, {"text/x-shellscript", "user-script", ud}}), nil
	default:
		return mergeLogin(nil, in)
	}
}

func renderMetaData(in Input) (string, error) {
	doc, err := yamlMapping(FieldMetaData, in.CloudInit.GetMetaData())
	if err != nil {
		return "", err
	}
	if doc == nil {
		doc = &yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	top := doc.Content[0]
	keys := make([]string, 0, len(in.Metadata))
	for k := range in.Metadata {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if mapGet(top, k) == nil {
			mapSet(top, k, str(in.Metadata[k]))
		}
	}
	mapSet(top, "instance-id", str(in.InstanceID))
	if in.Hostname != "" {
		mapSet(top, "local-hostname", str(in.Hostname))
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return "", fmt.Errorf("render meta-data: %w", err)
	}
	if err := enc.Close(); err != nil {
		return "", fmt.Errorf("render meta-data: %w", err)
	}
	return buf.String(), nil
}

type part struct {
	contentType, filename, body string
}

// multipart renders a MIME multipart/mixed user-data message as cloud-init
// reads it. The boundary is derived from the content so the output is
// stable and does not occur inside the parts.
func multipart(parts []part) string {
	boundary := "persys-cloudinit-boundary"
	for n := 0; ; n++ {
		clash := false
		for _, p := range parts {
			if strings.Contains(p.body, boundary) {
				clash = true
			}
		}
		if !clash {
			break
		}
		boundary = fmt.Sprintf("persys-cloudinit-boundary-%d", n)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Content-Type: multipart/mixed; boundary=\"%s\"\nMIME-Version: 1.0\n\n", boundary)
	for _, p := range parts {
		fmt.Fprintf(&b, "--%s\nContent-Type: %s; charset=\"utf-8\"\nMIME-Version: 1.0\nContent-Transfer-Encoding: 8bit\nContent-Disposition: attachment; filename=\"%s\"\n\n", boundary, p.contentType, p.filename)
		b.WriteString(p.body)
		if !strings.HasSuffix(p.body, "\n") {
			b.WriteByte('\n')
		}
	}
	fmt.Fprintf(&b, "--%s--\n", boundary)
	return b.String()
}
