package store

import (
	"errors"
	"testing"
)

func TestMemberOptions(t *testing.T) {
	base := EmbeddedOptions{TLS: &EmbeddedTLS{CAFile: "ca"}, QuotaBackendBytes: 4 << 30}
	got, err := MemberOptions(base, []string{"d0", "d1", "d2"},
		[]string{"https://127.0.0.1:1", "https://127.0.0.1:2", "https://127.0.0.1:3"},
		[]string{"https://127.0.0.1:4", "https://127.0.0.1:5", "https://127.0.0.1:6"})
	if err != nil {
		t.Fatal(err)
	}
	const initial = "m0=https://127.0.0.1:1,m1=https://127.0.0.1:2,m2=https://127.0.0.1:3"
	for i, o := range got {
		want := EmbeddedOptions{Dir: []string{"d0", "d1", "d2"}[i], Name: []string{"m0", "m1", "m2"}[i],
			ClientURL:      []string{"https://127.0.0.1:4", "https://127.0.0.1:5", "https://127.0.0.1:6"}[i],
			PeerURL:        []string{"https://127.0.0.1:1", "https://127.0.0.1:2", "https://127.0.0.1:3"}[i],
			InitialCluster: initial, TLS: base.TLS, QuotaBackendBytes: base.QuotaBackendBytes}
		if o != want {
			t.Errorf("member %d: %+v, want %+v", i, o, want)
		}
	}

	for _, tc := range []struct {
		name                string
		dirs, peers, client []string
	}{
		{"no members", nil, nil, nil},
		{"a peer URL missing", []string{"a", "b"}, []string{"https://127.0.0.1:1"}, []string{"https://127.0.0.1:2", "https://127.0.0.1:3"}},
		{"a client URL missing", []string{"a"}, []string{"https://127.0.0.1:1"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := MemberOptions(base, tc.dirs, tc.peers, tc.client); !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v, want ErrInvalid", err)
			}
		})
	}
}
