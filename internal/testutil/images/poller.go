package images

import (
	"context"
	"testing"

	"github.com/moby/moby/client"
)

// PollerTag is the tag PollerImage builds.
const PollerTag = "persys-poller:test"

// pollerSource is a static client for compose tests: every 200ms it GETs
// $TARGET and prints one line "poll ok: <first line of the body>" or
// "poll error: ..."; it prints "greeting: $GREETING" on start, and, when
// $SHOW_FILE names a file, "file: <size> bytes" (never the content). It
// exits at once on SIGTERM.
const pollerSource = `package main

import (
	"bufio"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("greeting:", os.Getenv("GREETING"))
	if f := os.Getenv("SHOW_FILE"); f != "" {
		if st, err := os.Stat(f); err == nil {
			fmt.Printf("file: %d bytes\n", st.Size())
		} else {
			fmt.Println("file error:", err)
		}
	}
	target := os.Getenv("TARGET")
	c := &http.Client{Timeout: 2 * time.Second}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-sig:
			return
		case <-t.C:
		}
		if target == "" {
			continue
		}
		resp, err := c.Get(target)
		if err != nil {
			fmt.Println("poll error:", err)
			continue
		}
		line, _ := bufio.NewReader(resp.Body).ReadString('\n')
		resp.Body.Close()
		fmt.Printf("poll ok: %s", line)
	}
}
`

const pollerDockerfile = `FROM scratch
COPY poller /poller
ENTRYPOINT ["/poller"]
`

// BuildPoller compiles the poller client (a static binary, standard
// library only) and builds a FROM scratch image tagged tag, unless one
// built from the same source exists. It returns the image id.
func BuildPoller(ctx context.Context, cli *client.Client, tag string) (string, error) {
	return buildProgramImage(ctx, cli, program{name: "poller", source: pollerSource, dockerfile: pollerDockerfile}, tag)
}

var poller builtOnce

// PollerImage returns a connected client and the tag of the poller image,
// building it once per test process.
func PollerImage(t testing.TB) (cli *client.Client, tag string) {
	t.Helper()
	return poller.get(t, PollerTag, BuildPoller)
}
