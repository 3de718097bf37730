// Package opsmetrics exports the gauges that the operator's alert rules
// (monitoring/) need and that no component package owns: certificate
// expiry, scheduler leadership, and the etcd database size against its
// quota. Every value is read at scrape time from a function the caller
// passes, so nothing here runs between scrapes.
//
// Callers register once per component registry, right after creating it.
package opsmetrics

import (
	"context"
	"crypto/x509"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metric names, shared with the tests that check monitoring/ against them.
const (
	CertExpiry     = "persys_certificate_expiry_timestamp_seconds"
	SchedLeader    = "persys_scheduler_leader"
	EtcdDBSize     = "persys_scheduler_etcd_db_size_bytes"
	EtcdDBSizeUsed = "persys_scheduler_etcd_db_size_in_use_bytes"
	EtcdQuota      = "persys_scheduler_etcd_quota_bytes"
)

// CertSource returns the certificates a component presents and trusts now
// (pki.Holder's Leaf and Roots); both may change after a rotation.
type CertSource interface {
	Leaf() *x509.Certificate
	Roots() []*x509.Certificate
}

// RegisterCerts exports the NotAfter of the component's own certificate
// (cert="identity") and of each trusted CA (cert="ca") as Unix seconds.
func RegisterCerts(reg prometheus.Registerer, component string, src CertSource) error {
	return reg.Register(&certCollector{component: component, src: src, desc: prometheus.NewDesc(CertExpiry,
		"Time (Unix seconds) after which a certificate this component presents or trusts is no longer valid.",
		[]string{"component", "cert", "subject", "serial"}, nil)})
}

type certCollector struct {
	component string
	src       CertSource
	desc      *prometheus.Desc
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	emit := func(kind string, cert *x509.Certificate) {
		if cert == nil {
			return
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(cert.NotAfter.Unix()),
			c.component, kind, cert.Subject.CommonName, cert.SerialNumber.Text(16))
	}
	emit("identity", c.src.Leaf())
	seen := map[string]bool{}
	for _, r := range c.src.Roots() {
		// During a CA rotation the bundle may hold the same root twice.
		if k := r.SerialNumber.Text(16); !seen[k] {
			seen[k] = true
			emit("ca", r)
		}
	}
}

// RegisterLeader exports 1 while this scheduler replica leads, 0 otherwise.
func RegisterLeader(reg prometheus.Registerer, leading func() bool) error {
	return reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: SchedLeader,
		Help: "1 while this scheduler replica is the leader, 0 while it stands by."},
		func() float64 {
			if leading() {
				return 1
			}
			return 0
		}))
}

// DBStatus is what RegisterEtcd needs from the store.
type DBStatus func(ctx context.Context) (size, inUse int64, err error)

// RegisterEtcd exports etcd's database size as one member reports it and
// the backend quota the cluster runs with. When etcd does not answer
// within a second the size series are left out of that scrape (absent, not
// zero: a zero would read as "far from quota").
func RegisterEtcd(reg prometheus.Registerer, quota int64, status DBStatus) error {
	return reg.Register(&etcdCollector{quota: quota, status: status,
		size: prometheus.NewDesc(EtcdDBSize, "Size of etcd's backend database file, as one member reports it.", nil, nil),
		used: prometheus.NewDesc(EtcdDBSizeUsed, "Part of etcd's backend database in use (the rest is reclaimed by defragmentation).", nil, nil),
		quotaDesc: prometheus.NewDesc(EtcdQuota,
			"etcd's backend quota: past it etcd refuses writes (alarm NOSPACE) until compacted and defragmented.", nil, nil)})
}

type etcdCollector struct {
	quota                 int64
	status                DBStatus
	size, used, quotaDesc *prometheus.Desc
}

func (c *etcdCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.used
	ch <- c.quotaDesc
}

func (c *etcdCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.quotaDesc, prometheus.GaugeValue, float64(c.quota))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	size, inUse, err := c.status(ctx)
	if err != nil {
		return
	}
	ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(size))
	ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(inUse))
}
