package server

import (
	"net"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := Options{DataDir: "d", Listen: "127.0.0.1:8543", MetricsListen: "127.0.0.1:9110", Interval: time.Second, Grace: 5 * time.Second}
	with := func(edit func(*Options)) Options { o := ok; edit(&o); return o }
	tests := []struct {
		name string
		o    Options
		want string // in the error; "" for none
	}{
		{"fine", ok, ""},
		{"no metrics", with(func(o *Options) { o.MetricsListen = "" }), ""},
		{"no data dir", with(func(o *Options) { o.DataDir = "" }), "--data-dir"},
		{"bad listen", with(func(o *Options) { o.Listen = "8543" }), "--listen"},
		{"bad metrics listen", with(func(o *Options) { o.MetricsListen = "x" }), "--metrics-listen"},
		{"etcd without credentials", with(func(o *Options) { o.EtcdEndpoints = []string{"https://e:2379"} }), "--etcd-ca"},
		{"negative interval", with(func(o *Options) { o.Interval = -time.Second }), "--probe-interval"},
		{"election ttl below a second", with(func(o *Options) { o.ElectionTTL = 500 * time.Millisecond }), "--election-ttl"},
		{"advertise not https", with(func(o *Options) { o.Advertise = "fed:8543" }), "--advertise"},
		{"advertise", with(func(o *Options) { o.Advertise = "https://fed:8543" }), ""},
		{"grace below interval", with(func(o *Options) { o.Grace = 500 * time.Millisecond }), "--grace"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.validate()
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate: %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestLocalAddr(t *testing.T) {
	for in, want := range map[string]string{"0.0.0.0:8543": "127.0.0.1:8543", "[::]:8543": "127.0.0.1:8543", "10.0.0.5:8543": "10.0.0.5:8543"} {
		addr, err := net.ResolveTCPAddr("tcp", in)
		if err != nil {
			t.Fatal(err)
		}
		if got := localAddr(addr); got != want {
			t.Fatalf("localAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
