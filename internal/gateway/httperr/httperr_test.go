package httperr

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/persys-dev/compute/internal/manifest"
)

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		code codes.Code
		want int
	}{
		{codes.InvalidArgument, http.StatusBadRequest},
		{codes.NotFound, http.StatusNotFound},
		{codes.AlreadyExists, http.StatusConflict},
		{codes.Aborted, http.StatusConflict},
		{codes.FailedPrecondition, http.StatusConflict},
		{codes.Unavailable, http.StatusServiceUnavailable},
		{codes.DeadlineExceeded, http.StatusGatewayTimeout},
		{codes.PermissionDenied, http.StatusForbidden},
		{codes.Unauthenticated, http.StatusUnauthorized},
		{codes.Internal, http.StatusInternalServerError},
		{codes.Unknown, http.StatusInternalServerError},
	}
	for _, tt := range tests {
		t.Run(tt.code.String(), func(t *testing.T) {
			if got := HTTPStatus(tt.code); got != tt.want {
				t.Errorf("HTTPStatus(%v) = %d, want %d", tt.code, got, tt.want)
			}
		})
	}
}

// TestErrorDetail: a scheduler's gRPC error becomes the error body: the
// code mapped by HTTPStatus, BadRequest fields kept, Unavailable said so.
// Codes a test cannot make a real scheduler answer are checked here.
func TestErrorDetail(t *testing.T) {
	withFields, err := status.New(codes.InvalidArgument, "invalid manifest: items[1].spec.compose.inline: not a compose file").
		WithDetails(&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{
			{Field: "items[1].spec.compose.inline", Description: "not a compose file"},
		}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		err       error
		wantCode  int
		wantField string
		wantMsg   string
	}{
		{"fields", withFields.Err(), http.StatusBadRequest, "items[1].spec.compose.inline", "invalid manifest"},
		{"already exists", status.Error(codes.AlreadyExists, "boom"), http.StatusConflict, "", "boom"},
		{"aborted", status.Error(codes.Aborted, "boom"), http.StatusConflict, "", "boom"},
		{"unavailable", status.Error(codes.Unavailable, "no leader"), http.StatusServiceUnavailable, "", "scheduler unavailable: no leader"},
		{"busy", status.Error(codes.ResourceExhausted, "busy"), http.StatusTooManyRequests, "", "busy"},
		{"deadline", status.Error(codes.DeadlineExceeded, "boom"), http.StatusGatewayTimeout, "", "boom"},
		{"permission", status.Error(codes.PermissionDenied, "boom"), http.StatusForbidden, "", "boom"},
		{"unauthenticated", status.Error(codes.Unauthenticated, "boom"), http.StatusUnauthorized, "", "boom"},
		{"internal", status.Error(codes.Internal, "boom"), http.StatusInternalServerError, "", "boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Detail(tt.err)
			if d.Code != tt.wantCode || !strings.Contains(d.Message, tt.wantMsg) {
				t.Fatalf("detail %+v, want code %d and message with %q", d, tt.wantCode, tt.wantMsg)
			}
			if tt.wantField != "" && (len(d.Fields) != 1 || d.Fields[0].Field != tt.wantField || d.Fields[0].Reason == "") {
				t.Fatalf("fields %+v, want %s", d.Fields, tt.wantField)
			}
		})
	}
}

// TestFromManifest: a manifest's field errors become the body's fields
// under a short message; any other parse error is a plain 400.
func TestFromManifest(t *testing.T) {
	_, err := manifest.Parse([]byte("apiVersion: persys/v1\nkind: Workload\nmetadata: {name: Bad_Name}\nspec: {}\n"))
	if err == nil {
		t.Fatal("the manifest parsed")
	}
	d := Detail(FromManifest(err))
	if d.Code != http.StatusBadRequest || d.Message != manifest.ErrInvalid.Error() || len(d.Fields) == 0 || d.Fields[0].Reason == "" {
		t.Fatalf("detail %+v, want a 400 with the manifest's fields", d)
	}
	d = Detail(FromManifest(errors.New("yaml: line 1: did not find expected key")))
	if d.Code != http.StatusBadRequest || d.Message != "yaml: line 1: did not find expected key" || d.Fields != nil {
		t.Fatalf("detail %+v, want a plain 400", d)
	}
}

// TestWrite: the body is ErrorBody as JSON, with its headers.
func TestWrite(t *testing.T) {
	w := httptest.NewRecorder()
	if code := Write(w, Field("selector", "bad")); code != http.StatusBadRequest || w.Code != code {
		t.Fatalf("Write returned %d and wrote %d, want 400", code, w.Code)
	}
	if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Fatalf("headers %v", w.Header())
	}
	want := `{"error":{"code":400,"message":"invalid selector: bad","fields":[{"field":"selector","reason":"bad"}]}}` + "\n"
	if w.Body.String() != want {
		t.Fatalf("body %s, want %s", w.Body, want)
	}
	if CodeOf(fmt.Errorf("wrapped: %w", New(http.StatusGone, "gone"))) != http.StatusGone || CodeOf(errors.New("plain")) != 0 {
		t.Fatal("CodeOf does not find the code through wrapping, or finds one in a plain error")
	}
}
