package images

import (
	"context"
	"testing"

	"github.com/moby/moby/client"
)

// TickerTag is the tag TickerImage builds.
const TickerTag = "persys-ticker:test"

// tickerSource prints "tick N" (N = 1, 2, ...) every $TICK (a Go
// duration, default 100ms), each line written at once, and exits at once
// on SIGTERM: a log whose every line says where it belongs in order.
const tickerSource = `package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	every := 100 * time.Millisecond
	if d, err := time.ParseDuration(os.Getenv("TICK")); err == nil && d > 0 {
		every = d
	}
	t := time.NewTicker(every)
	for n := 1; ; n++ {
		fmt.Printf("tick %d\n", n)
		select {
		case <-sig:
			return
		case <-t.C:
		}
	}
}
`

const tickerDockerfile = `FROM scratch
COPY ticker /ticker
ENTRYPOINT ["/ticker"]
`

// BuildTicker compiles the ticker (standard library only, static) and
// builds a FROM scratch image tagged tag, unless one built from the same
// source exists. It returns the image id.
func BuildTicker(ctx context.Context, cli *client.Client, tag string) (string, error) {
	return buildProgramImage(ctx, cli, program{name: "ticker", source: tickerSource, dockerfile: tickerDockerfile}, tag)
}

var ticker builtOnce

// TickerImage returns a connected client and the tag of the ticker image,
// building it once per test process.
func TickerImage(t testing.TB) (cli *client.Client, tag string) {
	t.Helper()
	return ticker.get(t, TickerTag, BuildTicker)
}
