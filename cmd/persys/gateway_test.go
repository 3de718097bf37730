package main

import (
	"slices"
	"strings"
	"testing"
)

func TestSchedulerAddrs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string
	}{
		{"one", "127.0.0.1:9443", []string{"127.0.0.1:9443"}, ""},
		{"several with spaces", "a:1, b:2 ,c:3", []string{"a:1", "b:2", "c:3"}, ""},
		{"empty entry", "a:1,,b:2", nil, "empty address"},
		{"trailing comma", "a:1,", nil, "empty address"},
		{"no port", "a:1,b", nil, `--scheduler "b"`},
		{"twice", "a:1,a:1", nil, "listed twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := schedulerAddrs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want it to contain %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
