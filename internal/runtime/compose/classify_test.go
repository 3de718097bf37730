package compose

import (
	"errors"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		msg  string
		want persysv1.FailureReason
	}{
		{"Error response from daemon: driver failed programming external connectivity on endpoint p-web-1: Bind for 0.0.0.0:8080 failed: port is already allocated", persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT},
		{"listen tcp4 0.0.0.0:8080: bind: address already in use", persysv1.FailureReason_FAILURE_REASON_PORT_CONFLICT},
		{"network p_default not found", persysv1.FailureReason_FAILURE_REASON_NETWORK},
		{"No such image: app:1", persysv1.FailureReason_FAILURE_REASON_IMAGE_NOT_FOUND},
		{"exit status 1", persysv1.FailureReason_FAILURE_REASON_RUNTIME_ERROR},
		{"container persys-w-network-1 is unhealthy", persysv1.FailureReason_FAILURE_REASON_HEALTH_CHECK_FAILED},
	}
	for _, tt := range tests {
		if got := classify(errors.New(tt.msg)); got != tt.want {
			t.Errorf("classify(%q) = %s, want %s", tt.msg, got, tt.want)
		}
	}
}
