//go:build failpoints

package failpoint

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Enabled reports whether this build has failpoints.
const Enabled = true

type armed struct {
	at   int // the hit that kills
	hits int
}

var (
	once    sync.Once
	mu      sync.Mutex
	points  map[string]*armed
	armFile string
)

// Inject kills the process when name is armed and this is the hit it was
// armed for.
func Inject(name string) {
	once.Do(load)
	mu.Lock()
	p := points[name]
	if p == nil {
		mu.Unlock()
		return
	}
	if armFile != "" {
		if _, err := os.Stat(armFile); err != nil {
			mu.Unlock()
			return
		}
	}
	p.hits++
	hit := p.hits == p.at
	mu.Unlock()
	if hit {
		// Said on stderr first: the crash test checks the point was
		// reached rather than the process dying of something else.
		fmt.Fprintf(os.Stderr, "failpoint %s: killing the process (hit %d)\n", name, p.at)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // SIGKILL is not delivered synchronously
	}
}

// load reads Env; a malformed value or an unknown name ends the process,
// so that a test that mistyped a point fails at once.
func load() {
	points = map[string]*armed{}
	armFile = os.Getenv(ArmEnv)
	spec := os.Getenv(Env)
	if spec == "" {
		return
	}
	for _, item := range strings.Split(spec, ",") {
		name, action, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || !slices.Contains(Names, name) {
			die("%s: %q is not NAME=kill[@N] with a known NAME (known: %s)", Env, item, strings.Join(Names, ", "))
		}
		at := 1
		if rest, ok := strings.CutPrefix(action, "kill@"); ok {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 {
				die("%s: %q: the hit after @ must be a positive integer", Env, item)
			}
			at = n
		} else if action != "kill" {
			die("%s: %q: the only action is kill or kill@N", Env, item)
		}
		points[name] = &armed{at: at}
	}
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "failpoint: "+format+"\n", args...)
	os.Exit(2)
}
