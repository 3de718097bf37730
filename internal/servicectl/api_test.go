package servicectl

import (
	"errors"
	"testing"

	"github.com/persys-dev/compute/internal/manifest"
	"github.com/persys-dev/compute/internal/principal"
)

func TestTemplateError(t *testing.T) {
	other := errors.New("etcd unavailable")
	tests := []struct {
		name string
		in   error
		want string
	}{
		{"manifest field", &manifest.Error{Fields: []manifest.FieldError{{Field: "spec.compose.inline.services.web", Reason: "bad"}}},
			"invalid manifest: spec.template.compose.inline.services.web: bad"},
		{"whole spec", &manifest.Error{Fields: []manifest.FieldError{{Field: "", Reason: "bad"}}}, "invalid manifest: spec.template: bad"},
		{"denied", &principal.FieldDenied{Field: "spec.container.privileged", Reason: "needs workloads.host"},
			"spec.template.container.privileged: needs workloads.host"},
		{"other", other, other.Error()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := templateError(tt.in)
			if got.Error() != tt.want {
				t.Errorf("templateError = %q, want %q", got, tt.want)
			}
			var denied *principal.FieldDenied
			if errors.As(tt.in, &denied) != errors.As(got, &denied) {
				t.Errorf("the refusal changed kind: %T → %T", tt.in, got)
			}
		})
	}
}
