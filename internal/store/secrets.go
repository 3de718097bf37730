package store

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/protobuf/proto"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// Secrets are stored at secrets/<name> as persysv1.SealedSecret: the
// values are encrypted by the caller (internal/secrets) before they reach
// the store, which never sees plaintext. The watch ignores this key space.

const dirSecrets = "secrets/"

func (s *Store) secretKey(name string) string { return s.dir(dirSecrets) + name }

func validateSealed(sec *persysv1.SealedSecret) error {
	if sec == nil {
		return fmt.Errorf("store: secret: %w: nil", ErrInvalid)
	}
	if err := ValidateName("secret name", sec.GetInfo().GetName()); err != nil {
		return err
	}
	if sec.GetKeyId() == "" {
		return fmt.Errorf("store: secret %q key_id: %w: empty (values must be sealed)", sec.GetInfo().GetName(), ErrInvalid)
	}
	if len(sec.GetNonce()) == 0 || len(sec.GetCiphertext()) == 0 {
		return fmt.Errorf("store: secret %q ciphertext: %w: empty (values must be sealed)", sec.GetInfo().GetName(), ErrInvalid)
	}
	return nil
}

// GetSecret returns the sealed secret and its mod revision.
func (s *Store) GetSecret(ctx context.Context, name string) (*persysv1.SealedSecret, int64, error) {
	if err := ValidateName("secret name", name); err != nil {
		return nil, 0, err
	}
	sec := &persysv1.SealedSecret{}
	rev, err := s.getProto(ctx, "secret", name, s.secretKey(name), sec)
	if err != nil {
		return nil, 0, err
	}
	return sec, rev, nil
}

// PutSecret writes a sealed secret and returns its new mod revision. With
// expectRev 0 it creates the secret (ErrExists when present); otherwise it
// replaces it only while its mod revision is still expectRev (ErrConflict
// if it changed, ErrNotFound if it is gone). The caller sets the version
// and timestamps in sec.Info.
func (s *Store) PutSecret(ctx context.Context, sec *persysv1.SealedSecret, expectRev int64) (int64, error) {
	if err := validateSealed(sec); err != nil {
		return 0, err
	}
	if expectRev < 0 {
		return 0, fmt.Errorf("store: expectRev: %w: negative", ErrInvalid)
	}
	name := sec.GetInfo().GetName()
	val, err := marshal("secret", sec)
	if err != nil {
		return 0, err
	}
	key := s.secretKey(name)
	if expectRev == 0 {
		resp, err := s.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, val)).
			Commit()
		if err != nil {
			return 0, fmt.Errorf("store: create secret %q: %w", name, err)
		}
		if !resp.Succeeded {
			return 0, fmt.Errorf("store: create secret %q: %w", name, ErrExists)
		}
		return resp.Header.Revision, nil
	}
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", expectRev)).
		Then(clientv3.OpPut(key, val)).
		Else(clientv3.OpGet(key, clientv3.WithKeysOnly())).
		Commit()
	if err != nil {
		return 0, fmt.Errorf("store: update secret %q: %w", name, err)
	}
	if !resp.Succeeded {
		return 0, casFailure("update", "secret", name, resp, expectRev)
	}
	return resp.Header.Revision, nil
}

// ListSecrets returns every sealed secret, sorted by name. Undecodable
// values are skipped with a warning.
func (s *Store) ListSecrets(ctx context.Context) ([]*persysv1.SealedSecret, error) {
	var out []*persysv1.SealedSecret
	var rev int64
	prefix := s.dir(dirSecrets)
	err := s.rangeAll(ctx, prefix, &rev, func(kv *mvccpb.KeyValue) {
		name := strings.TrimPrefix(string(kv.Key), prefix)
		if name == "" || strings.Contains(name, "/") {
			return
		}
		sec := &persysv1.SealedSecret{}
		if err := proto.Unmarshal(kv.Value, sec); err != nil {
			s.log.Warn("skipping undecodable secret", "key", string(kv.Key), "err", err)
			return
		}
		out = append(out, sec)
	})
	if err != nil {
		return nil, fmt.Errorf("store: list secrets: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetInfo().GetName() < out[j].GetInfo().GetName() })
	return out, nil
}

// DeleteSecret removes a secret; ErrNotFound when there is none.
func (s *Store) DeleteSecret(ctx context.Context, name string) error {
	if err := ValidateName("secret name", name); err != nil {
		return err
	}
	resp, err := s.cli.Delete(ctx, s.secretKey(name))
	if err != nil {
		return fmt.Errorf("store: delete secret %q: %w", name, err)
	}
	if resp.Deleted == 0 {
		return notFound("secret", name)
	}
	return nil
}
