package main

import "testing"

func TestDebVersion(t *testing.T) {
	for _, tt := range []struct{ in, want string }{
		{"v1.2.3", "1.2.3"},
		{"1.2.3-rc1", "1.2.3~rc1"},
		{"v0.0.0-release-test", "0.0.0~release~test"},
		{"db44e52-dirty", "0.0.0~db44e52~dirty"},
		{"dev", "0.0.0~dev"},
	} {
		if got := debVersion(tt.in); got != tt.want {
			t.Errorf("debVersion(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
