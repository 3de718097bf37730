// Command persysctl is the command line of Persys Compute; see internal/cli.
package main

import (
	"fmt"
	"os"

	"github.com/persys-dev/compute/internal/buildinfo"
	"github.com/persys-dev/compute/internal/cli"
)

func main() {
	// Answered here, before the CLI reads any configuration: a version
	// query works on a machine without a cluster.
	if len(os.Args) == 2 && os.Args[1] == "version" {
		fmt.Println("persysctl", buildinfo.Get())
		return
	}
	os.Exit(cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
