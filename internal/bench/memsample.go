package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	goruntime "runtime"
	"runtime/debug"
)

// MemSample is one process's memory right after a collection that handed
// the freed pages back to the system (so that resident memory shows what
// is live, not what a past peak left mapped), and its goroutines.
type MemSample struct {
	HeapAllocBytes  int64 `json:"heap_alloc_bytes"`
	StackInuseBytes int64 `json:"stack_inuse_bytes"`
	RSSBytes        int64 `json:"rss_bytes"`
	Goroutines      int   `json:"goroutines"`
}

// sampleMem collects this process's garbage and reads its MemSample.
func sampleMem() MemSample {
	debug.FreeOSMemory()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	rss, _ := rssOf("/proc/self/status")
	return MemSample{HeapAllocBytes: int64(ms.HeapAlloc), StackInuseBytes: int64(ms.StackInuse),
		RSSBytes: int64(rss * (1 << 20)), Goroutines: goruntime.NumGoroutine()}
}

// serveMemSample answers GET /memstats of a child process.
func serveMemSample(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(sampleMem())
}

// memSample asks the child for its MemSample.
func (p *childProc) memSample() (MemSample, error) {
	var s MemSample
	resp, err := p.http.Get("http://" + p.ready.MetricsAddr + "/memstats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("memstats: %s", resp.Status)
	}
	err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&s)
	return s, err
}
