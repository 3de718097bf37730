package secretsvc

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestValidateAllowLists(t *testing.T) {
	for _, ok := range [][2][]string{{{"operator"}, {"olga"}}, {{"viewer", "operator"}, nil}, {nil, nil}} {
		if err := validateAllowLists(ok[0], ok[1]); err != nil {
			t.Errorf("%v: %v", ok, err)
		}
	}
	for _, bad := range [][2][]string{{{"admin"}, nil}, {{"scheduler"}, nil}, {{""}, nil}, {nil, {"a/b"}}, {nil, {""}}} {
		if err := validateAllowLists(bad[0], bad[1]); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", bad, err)
		}
	}
}
