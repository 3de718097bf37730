package main

import (
	"strings"
	"testing"

	"github.com/spf13/pflag"

	"github.com/persys-dev/compute/internal/hostaccess"
)

// TestDynamicPortsFlag: the agent's --dynamic-ports defaults to
// 20000-32000, takes off, and a bad value is refused naming the flag.
func TestDynamicPortsFlag(t *testing.T) {
	var o runtimeOptions
	f := pflag.NewFlagSet("agent", pflag.ContinueOnError)
	o.flags(f)
	o.vm = "off"
	if err := f.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil || o.portRange() != hostaccess.DefaultDynamicPorts {
		t.Fatalf("default: %v, range %v", err, o.portRange())
	}
	if err := f.Parse([]string{"--dynamic-ports", "off"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err != nil || o.portRange() != (hostaccess.PortRange{}) {
		t.Fatalf("off: %v, range %v", err, o.portRange())
	}
	if err := f.Parse([]string{"--dynamic-ports", "32000-20000"}); err != nil {
		t.Fatal(err)
	}
	if err := o.validate(); err == nil || !strings.HasPrefix(err.Error(), "--dynamic-ports:") {
		t.Fatalf("reversed range: error %v, want one naming --dynamic-ports", err)
	}
	var dev devOptions
	df := pflag.NewFlagSet("dev", pflag.ContinueOnError)
	dynamicPortsFlag(df, &dev.dynamicPorts)
	if err := df.Parse([]string{"--dynamic-ports", "40000-40010"}); err != nil || dev.dynamicPorts != "40000-40010" {
		t.Fatalf("dev flag: %v, %q", err, dev.dynamicPorts)
	}
}
