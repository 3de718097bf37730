//go:build failpoints

package failpoint

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Enabled reports whether this build has failpoints.
const Enabled = true

type action int

const (
	actKill action = iota
	actPause
)

type armed struct {
	act  action
	at   int // the hit that acts
	hits int
}

var (
	once    sync.Once
	mu      sync.Mutex
	points  map[string]*armed // Env's
	armFile string
	// fileSpec and filePoints are the arm file's last content and the
	// points it arms; a new content replaces them, counts and all.
	fileSpec   []byte
	filePoints map[string]*armed
)

// Inject kills the process, or holds the calling goroutine, when name is
// armed and this is the hit it was armed for.
func Inject(name string) {
	once.Do(load)
	mu.Lock()
	p, spec := current(name)
	if p == nil {
		mu.Unlock()
		return
	}
	p.hits++
	hit := p.hits == p.at
	mu.Unlock()
	if !hit {
		return
	}
	if p.act == actPause {
		pause(name, p.at, spec)
		return
	}
	// Said on stderr first: the crash test checks the point was
	// reached rather than the process dying of something else.
	fmt.Fprintf(os.Stderr, "failpoint %s: killing the process (hit %d)\n", name, p.at)
	_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {} // SIGKILL is not delivered synchronously
}

// current is the armed point called name, nil when it is not armed now,
// and the arm file's content that armed it. The caller holds mu.
func current(name string) (*armed, []byte) {
	if armFile == "" {
		return points[name], nil
	}
	// Read on every hit: only failpoints builds pay for it.
	content, err := os.ReadFile(armFile)
	if err != nil {
		return nil, nil
	}
	spec := bytes.TrimSpace(content)
	if len(spec) == 0 {
		return points[name], content
	}
	if !bytes.Equal(spec, fileSpec) {
		fileSpec, filePoints = spec, parse(ArmEnv+" file "+armFile, string(spec))
	}
	return filePoints[name], content
}

// pause holds the caller until the arm file is gone or holds something
// other than armedBy.
func pause(name string, at int, armedBy []byte) {
	fmt.Fprintf(os.Stderr, "failpoint %s: paused (hit %d) until %s is removed\n", name, at, armFile)
	for {
		content, err := os.ReadFile(armFile)
		if err != nil || !bytes.Equal(content, armedBy) {
			fmt.Fprintf(os.Stderr, "failpoint %s: going on\n", name)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// load reads Env; a malformed value or an unknown name ends the process,
// so that a test that mistyped a point fails at once.
func load() {
	armFile = os.Getenv(ArmEnv)
	points = parse(Env, os.Getenv(Env))
}

// parse reads a spec, NAME=ACTION[@N] items separated by commas; from
// says where it came from in the message of a malformed one.
func parse(from, spec string) map[string]*armed {
	out := map[string]*armed{}
	if spec == "" {
		return out
	}
	for _, item := range strings.Split(spec, ",") {
		name, action, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || !slices.Contains(Names, name) {
			die("%s: %q is not NAME=kill[@N] or NAME=pause[@N] with a known NAME (known: %s)", from, item, strings.Join(Names, ", "))
		}
		verb, rest, counted := strings.Cut(action, "@")
		p := &armed{at: 1}
		switch verb {
		case "kill":
		case "pause":
			if armFile == "" {
				die("%s: %q: pause needs %s, whose removal lets the process go on", from, item, ArmEnv)
			}
			p.act = actPause
		default:
			die("%s: %q: the action is kill, kill@N, pause or pause@N", from, item)
		}
		if counted {
			n, err := strconv.Atoi(rest)
			if err != nil || n < 1 {
				die("%s: %q: the hit after @ must be a positive integer", from, item)
			}
			p.at = n
		}
		out[name] = p
	}
	return out
}

func die(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "failpoint: "+format+"\n", args...)
	os.Exit(2)
}
