// Command persysctl is the command line of Persys Compute; see internal/cli.
package main

import (
	"os"

	"github.com/persys-dev/compute/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], cli.Streams{In: os.Stdin, Out: os.Stdout, Err: os.Stderr}))
}
