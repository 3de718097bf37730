package main

import (
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// validSchedulerOptions passes validate; tests change one thing.
func validSchedulerOptions() schedulerOptions {
	o := schedulerOptions{}
	o.flags(&cobra.Command{}) // the defaults
	o.ca, o.cert, o.key = "ca.crt", "scheduler.crt", "scheduler.key"
	return o
}

func TestSchedulerEtcdFlags(t *testing.T) {
	creds := func(o *schedulerOptions) { o.etcdCA, o.etcdCert, o.etcdKey = "ca.crt", "s.crt", "s.key" }
	tests := []struct {
		name    string
		set     func(o *schedulerOptions)
		wantErr string // empty: valid
	}{
		{"embedded", func(o *schedulerOptions) {}, ""},
		{"https with client certificate", func(o *schedulerOptions) {
			o.etcdEndpoints = "https://10.0.0.1:2379, https://10.0.0.2:2379"
			creds(o)
		}, ""},
		{"http refused", func(o *schedulerOptions) {
			o.etcdEndpoints = "http://10.0.0.1:2379"
		}, "--etcd-insecure"},
		{"http refused with credentials too", func(o *schedulerOptions) {
			o.etcdEndpoints = "http://10.0.0.1:2379"
			creds(o)
		}, "--etcd-insecure"},
		{"http allowed with --etcd-insecure", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdInsecure = "http://10.0.0.1:2379", true
		}, ""},
		{"no scheme", func(o *schedulerOptions) {
			o.etcdEndpoints = "10.0.0.1:2379"
			creds(o)
		}, "--etcd-endpoints"},
		{"https without client certificate", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdCA = "https://10.0.0.1:2379", "ca.crt"
		}, "--etcd-cert is required"},
		{"https without ca", func(o *schedulerOptions) {
			o.etcdEndpoints = "https://10.0.0.1:2379"
			creds(o)
			o.etcdCA = ""
		}, "--etcd-ca is required"},
		{"https without client certificate, --etcd-insecure", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdCA, o.etcdInsecure = "https://10.0.0.1:2379", "ca.crt", true
		}, ""},
		{"cert without key", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdCert, o.etcdInsecure = "https://10.0.0.1:2379", "s.crt", true
		}, "--etcd-key"},
		{"mixed schemes", func(o *schedulerOptions) {
			o.etcdEndpoints, o.etcdInsecure = "https://10.0.0.1:2379,http://10.0.0.2:2379", true
		}, "mixes"},
		{"empty endpoint", func(o *schedulerOptions) {
			o.etcdEndpoints = "https://10.0.0.1:2379,,"
			creds(o)
		}, "empty endpoint"},
		{"etcd credentials without endpoints", func(o *schedulerOptions) { o.etcdCert = "s.crt" }, "--etcd-cert needs --etcd-endpoints"},
		{"insecure without endpoints", func(o *schedulerOptions) { o.etcdInsecure = true }, "--etcd-insecure needs --etcd-endpoints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validSchedulerOptions()
			tt.set(&o)
			err := o.validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
