package client_test

import (
	"context"
	"errors"
	"net/http"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/client"
	"github.com/persys-dev/compute/internal/pki"
	"github.com/persys-dev/compute/internal/secrets/secretstest"
)

func TestSecretCalls(t *testing.T) {
	env := secretstest.Start(t)
	c := secretstest.Client(t, env.Config)
	ctx := context.Background()
	value := []byte{0, 1, 2, 0xff, 'v'}
	info, err := c.PutSecret(ctx, "bin", persysv1.SecretType_SECRET_TYPE_OPAQUE, map[string][]byte{"blob": value})
	if err != nil {
		t.Fatal(err)
	}
	if info.GetVersion() != 1 || len(info.GetKeys()) != 1 || info.GetKeys()[0] != "blob" {
		t.Fatalf("PutSecret = %v", info)
	}
	sealed, _, err := env.Store.GetSecret(ctx, "bin")
	if err != nil {
		t.Fatal(err)
	}
	data, err := env.Keyring.Open(sealed)
	if err != nil || string(data["blob"]) != string(value) {
		t.Fatalf("binary value not stored byte for byte (err %v)", err)
	}
	got, err := c.GetSecret(ctx, "bin")
	if err != nil || got.GetName() != "bin" || got.GetType() != persysv1.SecretType_SECRET_TYPE_OPAQUE {
		t.Fatalf("GetSecret = %v, %v", got, err)
	}
	list, err := c.ListSecrets(ctx)
	if err != nil || len(list.GetSecrets()) != 1 {
		t.Fatalf("ListSecrets = %v, %v", list, err)
	}
	if err := c.DeleteSecret(ctx, "bin"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetSecret(ctx, "bin"); !client.IsNotFound(err) {
		t.Fatalf("GetSecret after delete = %v, want 404", err)
	}
	_, err = c.PutSecret(ctx, "reg", persysv1.SecretType_SECRET_TYPE_REGISTRY, map[string][]byte{"server": []byte("r.local")})
	var ae *client.APIError
	if !asAPIError(err, &ae) || ae.Code != http.StatusBadRequest || len(ae.Fields) == 0 {
		t.Fatalf("PutSecret of an incomplete registry secret = %v, want 400 with fields", err)
	}
	op := secretstest.Client(t, env.IssueUser(t, "olga", pki.RoleOperator))
	if _, err := op.ListSecrets(ctx); !asAPIError(err, &ae) || ae.Code != http.StatusForbidden {
		t.Fatalf("ListSecrets as operator = %v, want 403", err)
	}
}

func asAPIError(err error, target **client.APIError) bool { return errors.As(err, target) }
