package secretsvc

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/authz"
	"github.com/persys-dev/compute/internal/model"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/principal"
	"github.com/persys-dev/compute/internal/secrets"
	"github.com/persys-dev/compute/internal/store"
)

// secretWriteAttempts bounds the read-modify-write loop of a secret.
const secretWriteAttempts = 5

// errSecretsDisabled is the answer of the secret API without a keyring.
var errSecretsDisabled = status.Error(codes.FailedPrecondition,
	"secrets are not enabled on this scheduler: start it with --secrets-key-file (persys dev creates one in its data folder)")

func (s *Service) keyring() (*secrets.Keyring, error) {
	if s.keys == nil {
		return nil, errSecretsDisabled
	}
	return s.keys, nil
}

// secretCall checks that the caller holds perm (the gateway checks the
// route too; this is the second lock, and it fails closed) and returns
// the keyring.
func (s *Service) secretCall(ctx context.Context, method string, perm authz.Permission) (*secrets.Keyring, error) {
	who, err := principal.Of(ctx)
	if err != nil {
		return nil, err
	}
	if !who.May(perm) {
		return nil, status.Errorf(codes.PermissionDenied, "%s needs permission %s, which %s lacks", method, perm, who)
	}
	return s.keyring()
}

// maxSecretAllowEntries bounds a secret's allow lists.
const maxSecretAllowEntries = 64

// validateAllowLists checks a secret's allow lists: user roles below admin
// (an admin may always reference a secret) and valid user names.
func validateAllowLists(roles, users []string) error {
	if len(roles) > maxSecretAllowEntries || len(users) > maxSecretAllowEntries {
		return status.Errorf(codes.InvalidArgument, "allow_roles, allow_users: at most %d entries each", maxSecretAllowEntries)
	}
	for i, r := range roles {
		if r != string(pki.RoleViewer) && r != string(pki.RoleOperator) {
			return status.Errorf(codes.InvalidArgument, "allow_roles[%d]: %q is not a role to allow (operator or viewer; admins may always reference secrets)", i, r)
		}
	}
	for i, u := range users {
		if err := pki.ValidateName(fmt.Sprintf("allow_users[%d]", i), u); err != nil {
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
	return nil
}

// Put creates or replaces a secret and wakes the workloads waiting for it.
func (s *Service) Put(ctx context.Context, req *persysv1.PutSecretRequest) (*persysv1.SecretInfo, error) {
	k, err := s.secretCall(ctx, "PutSecret", authz.SecretsWrite)
	if err != nil {
		return nil, err
	}
	if err := secrets.Validate(req.GetName(), req.GetType(), req.GetData()); err != nil {
		return nil, err
	}
	if err := validateAllowLists(req.GetAllowRoles(), req.GetAllowUsers()); err != nil {
		return nil, err
	}
	allow := &persysv1.SecretInfo{AllowRoles: sortedUnique(req.GetAllowRoles()), AllowUsers: sortedUnique(req.GetAllowUsers())}
	info, created, err := s.putSecret(ctx, k, req.GetName(), req.GetType(), req.GetData(), allow)
	if err != nil {
		return nil, err
	}
	verb, typ := "updated", model.EventSecretUpdated
	if created {
		verb, typ = "created", model.EventSecretCreated
	}
	if s.changed != nil {
		s.changed(info.GetName())
	}
	by := principal.CN(ctx)
	s.log.Info("secret "+verb, "secret", info.GetName(), "type", secrets.TypeName(info.GetType()),
		"keys", strings.Join(info.GetKeys(), ","), "version", info.GetVersion(), "by", by)
	s.events.Add(typ, &persysv1.Event{Actor: by, Action: "secret." + strings.TrimSuffix(verb, "d"), Result: "ok",
		Message: fmt.Sprintf("secret %q %s (version %d, keys %s, may be referenced by roles [%s] users [%s]) by %s", info.GetName(), verb,
			info.GetVersion(), strings.Join(info.GetKeys(), ", "), strings.Join(info.GetAllowRoles(), ", "), strings.Join(info.GetAllowUsers(), ", "), by)})
	return info, nil
}

// Get returns a secret's info, never its values.
func (s *Service) Get(ctx context.Context, req *persysv1.GetSecretRequest) (*persysv1.SecretInfo, error) {
	if _, err := s.secretCall(ctx, "GetSecret", authz.SecretsRead); err != nil {
		return nil, err
	}
	sec, _, err := s.store.GetSecret(ctx, req.GetName())
	if err != nil {
		return nil, err
	}
	return publicInfo(sec), nil
}

// List returns every secret's info.
func (s *Service) List(ctx context.Context, _ *persysv1.ListSecretsRequest) (*persysv1.ListSecretsResponse, error) {
	if _, err := s.secretCall(ctx, "ListSecrets", authz.SecretsRead); err != nil {
		return nil, err
	}
	list, err := s.store.ListSecrets(ctx)
	if err != nil {
		return nil, err
	}
	out := &persysv1.ListSecretsResponse{Secrets: make([]*persysv1.SecretInfo, 0, len(list))}
	for _, sec := range list {
		out.Secrets = append(out.Secrets, publicInfo(sec))
	}
	return out, nil
}

// Delete removes a secret.
func (s *Service) Delete(ctx context.Context, req *persysv1.DeleteSecretRequest) (*persysv1.DeleteSecretResponse, error) {
	if _, err := s.secretCall(ctx, "DeleteSecret", authz.SecretsWrite); err != nil {
		return nil, err
	}
	if err := s.store.DeleteSecret(ctx, req.GetName()); err != nil {
		return nil, err
	}
	by := principal.CN(ctx)
	s.log.Info("secret deleted", "secret", req.GetName(), "by", by)
	s.events.Add(model.EventSecretDeleted, &persysv1.Event{Actor: by, Action: "secret.delete", Result: "ok",
		Message: fmt.Sprintf("secret %q deleted by %s", req.GetName(), by)})
	return &persysv1.DeleteSecretResponse{}, nil
}

// publicInfo is what the API shows of a sealed secret: its info, never
// the ciphertext.
func publicInfo(sec *persysv1.SealedSecret) *persysv1.SecretInfo {
	return proto.Clone(sec.GetInfo()).(*persysv1.SecretInfo)
}

// putSecret creates or replaces a secret: the version increments, the
// creation time stays, the values are sealed with the primary key.
func (s *Service) putSecret(ctx context.Context, k *secrets.Keyring, name string, typ persysv1.SecretType, data map[string][]byte, allow *persysv1.SecretInfo) (*persysv1.SecretInfo, bool, error) {
	now := timestamppb.New(s.now())
	for range secretWriteAttempts {
		cur, rev, err := s.store.GetSecret(ctx, name)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, false, err
		}
		info := &persysv1.SecretInfo{Name: name, Type: typ, CreatedAt: now, UpdatedAt: now, Version: 1,
			AllowRoles: allow.GetAllowRoles(), AllowUsers: allow.GetAllowUsers()}
		if cur != nil {
			info.CreatedAt = cur.GetInfo().GetCreatedAt()
			info.Version = cur.GetInfo().GetVersion() + 1
		}
		sealed, err := k.Seal(info, data)
		if err != nil {
			return nil, false, err
		}
		_, err = s.store.PutSecret(ctx, sealed, rev)
		if errors.Is(err, store.ErrExists) || errors.Is(err, store.ErrConflict) || (rev > 0 && errors.Is(err, store.ErrNotFound)) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		return publicInfo(sealed), cur == nil, nil
	}
	return nil, false, fmt.Errorf("secret %q: %w: too many concurrent changes", name, store.ErrConflict)
}

// secretRef is what one workload needs of one secret: some keys, or all
// of them, and which type it must have.
type secretRef struct {
	all  bool
	keys map[string]string // key → the field that references it
	// typ is the type the secret must have (UNSPECIFIED: any).
	typ   persysv1.SecretType
	field string
}

// References reports whether spec references the secret name.
func References(spec *persysv1.WorkloadSpec, name string) bool {
	_, ok := secretRefs(spec)[name]
	return ok
}

// secretRefs collects every secret spec references, by name.
func secretRefs(spec *persysv1.WorkloadSpec) map[string]*secretRef {
	refs := map[string]*secretRef{}
	ref := func(name, field string) *secretRef {
		r := refs[name]
		if r == nil {
			r = &secretRef{keys: map[string]string{}, field: field}
			refs[name] = r
		}
		return r
	}
	for i, e := range spec.GetSecretEnv() {
		if e.GetSecret() == "" {
			continue
		}
		f := fmt.Sprintf("spec.secret_env[%d]", i)
		r := ref(e.GetSecret(), f)
		if e.GetKey() == "" {
			r.all = true
		} else {
			r.keys[e.GetKey()] = f
		}
	}
	for i, sf := range spec.GetSecretFiles() {
		if sf.GetSecret() == "" {
			continue
		}
		f := fmt.Sprintf("spec.secret_files[%d]", i)
		r := ref(sf.GetSecret(), f)
		if sf.GetKey() == "" {
			r.all = true
		} else {
			r.keys[sf.GetKey()] = f
		}
	}
	for i, name := range spec.GetImagePullSecrets() {
		if name == "" {
			continue
		}
		r := ref(name, fmt.Sprintf("spec.image_pull_secrets[%d]", i))
		r.all, r.typ = true, persysv1.SecretType_SECRET_TYPE_REGISTRY
	}
	if name := spec.GetCompose().GetGit().GetCredentialsSecret(); name != "" {
		r := ref(name, "spec.compose.git.credentials_secret")
		r.all, r.typ = true, persysv1.SecretType_SECRET_TYPE_GIT
	}
	if name := spec.GetVm().GetLogin().GetPasswordSecret(); name != "" {
		f := "spec.vm.login.password_secret"
		ref(name, f).keys["password"] = f
	}
	return refs
}

// ValuesFor returns the values of every secret spec references, and
// of those only the keys it references (every key when a reference names
// none). A missing secret or key is an error naming it and the field that
// references it; the reconciler turns it into FAILED with reason
// SECRET_NOT_FOUND, and the retry engine tries again.
func (s *Service) ValuesFor(ctx context.Context, who principal.Principal, spec *persysv1.WorkloadSpec) ([]*persysv1.SecretValue, error) {
	refs := secretRefs(spec)
	if len(refs) == 0 {
		return nil, nil
	}
	names := make([]string, 0, len(refs))
	for n := range refs {
		names = append(names, n)
	}
	sort.Strings(names)
	if s.keys == nil {
		return nil, fmt.Errorf("secret %q (%s): secrets are not enabled on the scheduler (--secrets-key-file)", names[0], refs[names[0]].field)
	}
	out := make([]*persysv1.SecretValue, 0, len(names))
	for _, name := range names {
		r := refs[name]
		sec, _, err := s.store.GetSecret(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("secret %q (referenced by %s) does not exist", name, r.field)
		}
		if err != nil {
			return nil, fmt.Errorf("secret %q (referenced by %s): %w", name, r.field, err)
		}
		if err := secretUseAllowed(who, sec.GetInfo(), r.field); err != nil {
			return nil, err
		}
		if r.typ != persysv1.SecretType_SECRET_TYPE_UNSPECIFIED && sec.GetInfo().GetType() != r.typ {
			return nil, fmt.Errorf("secret %q (referenced by %s) has type %s, want %s", name, r.field,
				secrets.TypeName(sec.GetInfo().GetType()), secrets.TypeName(r.typ))
		}
		data, err := s.keys.Open(sec)
		if err != nil {
			return nil, fmt.Errorf("secret %q (referenced by %s): %w", name, r.field, err)
		}
		v := &persysv1.SecretValue{Name: name, Type: sec.GetInfo().GetType(), Data: map[string][]byte{}}
		keys := make([]string, 0, len(r.keys))
		for key := range r.keys {
			keys = append(keys, key)
		}
		sort.Strings(keys)
		for _, key := range keys {
			val, ok := data[key]
			if !ok {
				return nil, fmt.Errorf("secret %q has no key %q (referenced by %s)", name, key, r.keys[key])
			}
			v.Data[key] = val
		}
		if r.all {
			v.Data = data
		}
		out = append(out, v)
	}
	return out, nil
}

// EnsureGenerated creates, for a VM whose login asks for a generated
// password, the secret password_secret (key "password") when it does not
// exist yet. An existing secret is kept: the password stays the same
// across revisions.
func (s *Service) EnsureGenerated(ctx context.Context, who principal.Principal, name string, spec *persysv1.WorkloadSpec) error {
	login := spec.GetVm().GetLogin()
	if !login.GetGeneratePassword() {
		return nil
	}
	secret := login.GetPasswordSecret()
	if secret == "" {
		return status.Error(codes.InvalidArgument, "spec.vm.login.password_secret: required with generate_password")
	}
	k, err := s.keyring()
	if err != nil {
		return status.Errorf(codes.FailedPrecondition, "spec.vm.login.generate_password: %s", status.Convert(err).Message())
	}
	if _, _, err := s.store.GetSecret(ctx, secret); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	pw, err := secrets.GeneratePassword()
	if err != nil {
		return err
	}
	now := timestamppb.New(s.now())
	// Whoever asked for the password may reference it from their
	// workloads (and so read it inside the VM they log in to).
	sealed, err := k.Seal(&persysv1.SecretInfo{Name: secret, Type: persysv1.SecretType_SECRET_TYPE_OPAQUE,
		CreatedAt: now, UpdatedAt: now, Version: 1, AllowUsers: []string{who.Name}}, map[string][]byte{"password": []byte(pw)})
	if err != nil {
		return err
	}
	if _, err := s.store.PutSecret(ctx, sealed, 0); errors.Is(err, store.ErrExists) {
		return nil // created meanwhile by another apply: keep that one
	} else if err != nil {
		return err
	}
	s.log.Info("secret created", "secret", secret, "workload", name, "generated", "password")
	s.events.Add(model.EventSecretCreated, &persysv1.Event{Workload: name, Actor: principal.CN(ctx), Action: "secret.create", Result: "ok",
		Message: fmt.Sprintf("secret %q created with a generated login password for workload %q", secret, name)})
	return nil
}

// ErrDenied marks a secret reference its workload's principal may not
// make; the reconciler fails the attempt with reason POLICY_DENIED.
var ErrDenied = errors.New("secret use denied")

// secretUseAllowed reports whether who may reference the secret: callers
// who may read secrets may reference any, others only those whose allow
// list names their role or their name.
func secretUseAllowed(who principal.Principal, info *persysv1.SecretInfo, field string) error {
	if who.May(authz.SecretsRead) || slices.Contains(info.GetAllowRoles(), string(who.Role)) ||
		(who.Name != "" && slices.Contains(info.GetAllowUsers(), who.Name)) {
		return nil
	}
	return fmt.Errorf("%s: %w: secret %q may not be referenced by %s: that role lacks %s and the secret's allow list names neither the role nor the user (an admin can allow it: persysctl secret create %s ... --allow-role %s)",
		field, ErrDenied, info.GetName(), who, authz.SecretsRead, info.GetName(), who.Role)
}

// CheckUse refuses, at apply, a reference to an existing secret
// that who may not make, and records every reference a caller without
// secrets.read makes, allowed or refused, as an audit event. A secret
// that does not exist yet is checked when it is delivered.
func (s *Service) CheckUse(ctx context.Context, who principal.Principal, spec *persysv1.WorkloadSpec) error {
	refs := secretRefs(spec)
	if len(refs) == 0 || who.May(authz.SecretsRead) {
		return nil
	}
	for _, name := range slices.Sorted(maps.Keys(refs)) {
		sec, _, err := s.store.GetSecret(ctx, name)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		err = secretUseAllowed(who, sec.GetInfo(), refs[name].field)
		result, msg := "ok", fmt.Sprintf("%s may reference secret %q (%s): allowed by its allow list", who, name, refs[name].field)
		if err != nil {
			result, msg = "denied", err.Error()
		}
		s.recordAudit(ctx, &persysv1.Event{Actor: who.Name, Action: "secret.use", Result: result, Message: msg})
		if err != nil {
			return status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return nil
}

// recordAudit appends an audit event; a failure to record is logged and
// the call's answer stands (as the gateway's audit does).
func (s *Service) recordAudit(ctx context.Context, ev *persysv1.Event) {
	if ev.Actor == "" {
		ev.Actor = "(unknown)"
	}
	if err := s.audit.Append(ctx, ev); err != nil {
		s.log.Error("audit event not stored", "actor", ev.GetActor(), "action", ev.GetAction(), "result", ev.GetResult(), "err", err)
	}
}

// sortedUnique returns the values sorted without repeats.
func sortedUnique(v []string) []string {
	if len(v) == 0 {
		return nil
	}
	out := slices.Clone(v)
	slices.Sort(out)
	return slices.Compact(out)
}
