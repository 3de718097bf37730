package opsmetrics

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gather returns "name{labels} value" lines, sorted.
func gather(t *testing.T, reg *prometheus.Registry) []string {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var ls []string
			for _, l := range m.GetLabel() {
				ls = append(ls, l.GetName()+"="+l.GetValue())
			}
			out = append(out, mf.GetName()+"{"+strings.Join(ls, ",")+"} "+
				big.NewFloat(m.GetGauge().GetValue()).Text('g', 10))
		}
	}
	sort.Strings(out)
	return out
}

func check(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("%s:\n got %q\nwant %q", what, got, want)
	}
}

type certs struct{ leaf, ca *x509.Certificate }

func (c certs) Leaf() *x509.Certificate    { return c.leaf }
func (c certs) Roots() []*x509.Certificate { return []*x509.Certificate{c.ca, c.ca} }

func cert(cn string, serial int64, notAfter time.Time) *x509.Certificate {
	return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, SerialNumber: big.NewInt(serial), NotAfter: notAfter}
}

func TestCerts(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	src := certs{leaf: cert("node-1", 26, time.Unix(1700000000, 0)), ca: cert("persys CA", 1, time.Unix(2000000000, 0))}
	if err := RegisterCerts(reg, "agent", src); err != nil {
		t.Fatal(err)
	}
	// The CA appears once although the bundle holds it twice.
	check(t, "certificates", gather(t, reg),
		CertExpiry+"{cert=ca,component=agent,serial=1,subject=persys CA} 2000000000",
		CertExpiry+"{cert=identity,component=agent,serial=1a,subject=node-1} 1700000000")
}

func TestLeader(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	leading := false
	if err := RegisterLeader(reg, func() bool { return leading }); err != nil {
		t.Fatal(err)
	}
	check(t, "standing by", gather(t, reg), SchedLeader+"{} 0")
	leading = true
	check(t, "leading", gather(t, reg), SchedLeader+"{} 1")
}

func TestEtcd(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	fail := false
	if err := RegisterEtcd(reg, 2<<30, func(context.Context) (int64, int64, error) {
		if fail {
			return 0, 0, errors.New("etcd down")
		}
		return 4096, 1024, nil
	}); err != nil {
		t.Fatal(err)
	}
	check(t, "etcd answers", gather(t, reg),
		EtcdDBSize+"{} 4096", EtcdDBSizeUsed+"{} 1024", EtcdQuota+"{} 2147483648")
	// Without an answer the sizes are absent, not zero; the quota stays.
	fail = true
	check(t, "etcd down", gather(t, reg), EtcdQuota+"{} 2147483648")
}
