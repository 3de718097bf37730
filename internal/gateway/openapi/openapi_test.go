package openapi

import (
	"encoding/json"
	"strings"
	"testing"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
	"github.com/persys-dev/compute/internal/manifest"
)

// Stand-ins for the gateway's own bodies: the document describes
// whatever Go types it is given, by their json tags.
type (
	testToken struct {
		User       string `json:"user"`
		TTLSeconds int64  `json:"ttlSeconds,omitempty"`
	}
	testScale struct {
		CPU manifest.Quantity `json:"cpu"`
	}
	testEmpty struct{}
)

func testDocument(t *testing.T) []byte {
	t.Helper()
	b, err := Build(Input{
		Bodies: Bodies{SecretRequest: testEmpty{}, CreateToken: testToken{}, IssueUserCertificate: testEmpty{},
			WhoAmI: testEmpty{}, Scale: testScale{}, Undo: testEmpty{}, EndpointsEvent: testEmpty{}},
		WaitConditions:     []string{"running", "stopped"},
		MaxEventsLimit:     10,
		MaxServiceName:     20,
		FollowErrorTrailer: "X-Test-Error",
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBuildRefusesMissingInput: bad input is an error naming the field.
func TestBuildRefusesMissingInput(t *testing.T) {
	if _, err := Build(Input{}); err == nil || !strings.Contains(err.Error(), "WaitConditions") {
		t.Fatalf("Build of an Input without WaitConditions: %v, want an error naming WaitConditions", err)
	}
	_, err := Build(Input{WaitConditions: []string{"running"}, Bodies: Bodies{SecretRequest: testEmpty{}}})
	if err == nil || !strings.Contains(err.Error(), "Bodies.CreateToken") {
		t.Fatalf("Build without a CreateToken body: %v, want an error naming Bodies.CreateToken", err)
	}
}

func TestOpenAPISchemaFollowsProtoJSON(t *testing.T) {
	var all struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]map[string]any `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(testDocument(t), &all); err != nil {
		t.Fatal(err)
	}
	s := all.Components.Schemas
	tests := []struct {
		name, schema, prop, key string
		want                    any
	}{
		{"lowerCamel names", "Resources", "cpuMillis", "type", "string"},
		{"int64 as string", "Workload", "revision", "format", "uint64"},
		{"timestamps", "Workload", "createdAt", "format", "date-time"},
		{"int32 as integer", "PlacementDecision", "feasibleNodes", "type", "integer"},
		{"maps", "Workload", "labels", "type", "object"},
		{"manifest by json tags", "Manifest", "apiVersion", "type", "string"},
		{"bodies by json tags", "CreateTokenBody", "ttlSeconds", "type", "integer"},
		{"quantities", "ScaleRequest", "cpu", "description", "A quantity: CPU cores as 250m, 0.5 or 2; bytes as 64Mi, 1G or 1048576."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, ok := s[tt.schema].Properties[tt.prop]
			if !ok {
				t.Fatalf("%s.%s missing", tt.schema, tt.prop)
			}
			if p[tt.key] != tt.want {
				t.Errorf("%s.%s.%s = %v, want %v", tt.schema, tt.prop, tt.key, p[tt.key], tt.want)
			}
		})
	}
	state := s["WorkloadStatus"].Properties["state"]["enum"].([]any)
	if len(state) != len(persysv1.ActualState_name) {
		t.Errorf("state enum has %d values, want %d", len(state), len(persysv1.ActualState_name))
	}
}
