package main

import (
	"reflect"
	"testing"
)

func TestParseLabelArgs(t *testing.T) {
	tests := []struct {
		args   []string
		set    map[string]string
		remove []string
		bad    bool
	}{
		{[]string{"region=eu", "tier=gold"}, map[string]string{"region": "eu", "tier": "gold"}, nil, false},
		{[]string{"region-", "tier="}, map[string]string{"tier": ""}, []string{"region"}, false},
		{[]string{"=eu"}, nil, nil, true},
		{[]string{"region"}, nil, nil, true},
		{[]string{"-"}, nil, nil, true},
	}
	for _, tc := range tests {
		set, remove, err := parseLabelArgs(tc.args)
		if (err != nil) != tc.bad {
			t.Fatalf("parseLabelArgs(%q) error %v, want error %v", tc.args, err, tc.bad)
		}
		if !tc.bad && (!reflect.DeepEqual(set, tc.set) || !reflect.DeepEqual(remove, tc.remove)) {
			t.Fatalf("parseLabelArgs(%q) = %v, %v; want %v, %v", tc.args, set, remove, tc.set, tc.remove)
		}
	}
}
