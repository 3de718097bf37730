package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"

	persysv1 "github.com/persys-dev/compute/api/persys/v1"
)

// HostCapacity reads what the host offers: every CPU (in millicores), the
// total memory from /proc/meminfo and the size of the file system that
// holds dataDir ("/" when empty).
func HostCapacity(dataDir string) (*persysv1.Resources, error) {
	info, err := readMeminfo("/proc/meminfo")
	if err != nil {
		return nil, err
	}
	total, ok := info["MemTotal"]
	if !ok {
		return nil, fmt.Errorf("/proc/meminfo has no MemTotal")
	}
	if dataDir == "" {
		dataDir = "/"
	}
	disk, err := diskSize(dataDir)
	if err != nil {
		return nil, fmt.Errorf("size of the file system of %s: %w", dataDir, err)
	}
	return &persysv1.Resources{
		CpuMillis:   int64(goruntime.NumCPU()) * 1000,
		MemoryBytes: total,
		DiskBytes:   disk,
	}, nil
}

// hostMemoryUsed is MemTotal - MemAvailable.
func hostMemoryUsed() (int64, error) {
	info, err := readMeminfo("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	total, ok1 := info["MemTotal"]
	avail, ok2 := info["MemAvailable"]
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("/proc/meminfo lacks MemTotal or MemAvailable")
	}
	return total - avail, nil
}

func readMeminfo(path string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read memory info: %w", err)
	}
	return parseMeminfo(b)
}

// parseMeminfo reads "Key:   123 kB" lines into bytes.
func parseMeminfo(b []byte) (map[string]int64, error) {
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			continue
		}
		v, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("meminfo %s: %w", key, err)
		}
		if len(fields) > 1 && strings.EqualFold(fields[1], "kB") {
			v *= 1024
		}
		out[strings.TrimSpace(key)] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("meminfo: %w", err)
	}
	return out, nil
}
