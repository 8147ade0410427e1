// A Go program that profiles itself with runtime/pprof and uploads each profile to
// a Pyroscope server's /ingest exactly as github.com/grafana/pyroscope-go does
// (upstream/remote/remote.go, session.go, collector.go, sample_types.go,
// internal/semconv): a multipart form with the pprof in a `profile` file part and, per
// type, a `sample_type_config` file part; the app name carries pyroscope-go's tags.
// Standard library only, so the test builds it offline.
//
// Usage: goclient SERVER_URL APP OUT_DIR
// Writes every uploaded profile to OUT_DIR/<kind>.pprof (for `go tool pprof`) and
// exits non-zero if any upload is not 2xx.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// sampleType is pyroscope-go's upstream.SampleType, with its JSON names.
type sampleType struct {
	Units       string `json:"units,omitempty"`
	Aggregation string `json:"aggregation,omitempty"`
	DisplayName string `json:"display-name,omitempty"`
	Sampled     bool   `json:"sampled,omitempty"`
	Cumulative  bool   `json:"cumulative,omitempty"`
}

// job is pyroscope-go's upstream.UploadJob.
type job struct {
	kind             string
	name             string
	start, end       time.Time
	spyName          string
	sampleRate       uint32
	units            string
	aggregationType  string
	profile          []byte
	prevProfile      []byte
	sampleTypeConfig map[string]*sampleType
}

// The configurations pyroscope-go sends (sample_types.go, session.go).
var (
	heapConfig = map[string]*sampleType{
		"alloc_objects": {Units: "objects"},
		"alloc_space":   {Units: "bytes"},
		"inuse_space":   {Units: "bytes", Aggregation: "average"},
		"inuse_objects": {Units: "objects", Aggregation: "average"},
	}
	mutexConfig = map[string]*sampleType{
		"contentions": {DisplayName: "mutex_count", Units: "lock_samples"},
		"delay":       {DisplayName: "mutex_duration", Units: "lock_nanoseconds"},
	}
	blockConfig = map[string]*sampleType{
		"contentions": {DisplayName: "block_count", Units: "lock_samples"},
		"delay":       {DisplayName: "block_duration", Units: "lock_nanoseconds"},
	}
	goroutineConfig = map[string]*sampleType{
		"goroutine": {DisplayName: "goroutines", Units: "goroutines", Aggregation: "average"},
	}
)

// appName builds `app{k=v,...}` with sorted keys, as pyroscope-go's labelset
// Normalized() does, with the tags semconv.MergeTagsWithAppName adds.
func appName(app, scope, sessionID string) string {
	tags := map[string]string{
		"__session_id__":          sessionID,
		"process.runtime.name":    "go",
		"process.runtime.version": runtime.Version(),
		"otel.scope.name":         scope,
		"region":                  "eu-north-1",
	}
	keys := make([]string, 0, len(tags))
	for k := range tags {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(app)
	b.WriteString("{")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(k + "=" + tags[k])
	}
	b.WriteString("}")
	return b.String()
}

// upload is pyroscope-go's remote.uploadProfile.
func upload(server string, j *job) error {
	u, err := url.Parse(server)
	if err != nil {
		return err
	}
	body := &bytes.Buffer{}
	w := multipart.NewWriter(body)
	fw, err := w.CreateFormFile("profile", "profile.pprof")
	if err != nil {
		return err
	}
	_, _ = fw.Write(j.profile)
	// Deprecated in pyroscope-go, sent by its versions before godeltaprof.
	if j.prevProfile != nil {
		fw, err = w.CreateFormFile("prev_profile", "profile.pprof")
		if err != nil {
			return err
		}
		_, _ = fw.Write(j.prevProfile)
	}
	if j.sampleTypeConfig != nil {
		fw, err = w.CreateFormFile("sample_type_config", "sample_type_config.json")
		if err != nil {
			return err
		}
		b, err := json.Marshal(j.sampleTypeConfig)
		if err != nil {
			return err
		}
		_, _ = fw.Write(b)
	}
	if err = w.Close(); err != nil {
		return err
	}
	q := u.Query()
	q.Set("name", j.name)
	q.Set("from", strconv.FormatInt(j.start.UnixNano(), 10))
	q.Set("until", strconv.FormatInt(j.end.UnixNano(), 10))
	q.Set("spyName", j.spyName)
	q.Set("sampleRate", strconv.Itoa(int(j.sampleRate)))
	q.Set("units", j.units)
	q.Set("aggregationType", j.aggregationType)
	u.Path = path.Join(u.Path, "ingest")
	u.RawQuery = q.Encode()
	req, err := http.NewRequest(http.MethodPost, u.String(), body)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", w.FormDataContentType())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	reply, _ := io.ReadAll(resp.Body)
	fmt.Printf("%s: %d %s\n", j.kind, resp.StatusCode, strings.TrimSpace(string(reply)))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: failed to upload: (%d) '%s'", j.kind, resp.StatusCode, reply)
	}
	return nil
}

// Work for the profiles to see: CPU in two functions, allocations, contention.

var sink [][]byte

//go:noinline
func spin(n int) uint64 {
	var x uint64 = 1
	for i := 0; i < n; i++ {
		x = x*6364136223846793005 + 1442695040888963407
	}
	return x
}

//go:noinline
func allocSmall(n int) {
	for i := 0; i < n; i++ {
		sink = append(sink, make([]byte, 64))
	}
}

//go:noinline
func allocLarge(n int) {
	for i := 0; i < n; i++ {
		sink = append(sink, make([]byte, 4096))
	}
}

//go:noinline
func contend(mu *sync.Mutex, wg *sync.WaitGroup, rounds int) {
	defer wg.Done()
	for i := 0; i < rounds; i++ {
		mu.Lock()
		spin(20000)
		mu.Unlock()
	}
}

//go:noinline
func waitOnChannel(ch chan int, wg *sync.WaitGroup) {
	defer wg.Done()
	<-ch
}

// waitUntilParked polls the goroutine dump until n goroutines wait for one of
// `reasons`.
func waitUntilParked(reasons []string, n int) {
	buf := make([]byte, 1<<20)
	for {
		dump := string(buf[:runtime.Stack(buf, true)])
		parked := 0
		for _, r := range reasons {
			parked += strings.Count(dump, r)
		}
		if parked >= n {
			return
		}
		runtime.Gosched()
	}
}

// cpuTime is the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		panic(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func write(dir, kind string, p *pprof.Profile) []byte {
	var buf bytes.Buffer
	if err := p.WriteTo(&buf, 0); err != nil {
		panic(err)
	}
	save(dir, kind, buf.Bytes())
	return buf.Bytes()
}

func save(dir, kind string, b []byte) {
	if err := os.WriteFile(filepath.Join(dir, kind+".pprof"), b, 0o644); err != nil {
		panic(err)
	}
}

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: goclient SERVER_URL APP OUT_DIR")
		os.Exit(2)
	}
	server, app, dir := os.Args[1], os.Args[2], os.Args[3]
	// Every allocation, block and contention recorded: the totals are counts, not
	// estimates, whatever the machine's speed.
	runtime.MemProfileRate = 1
	runtime.SetBlockProfileRate(1)
	runtime.SetMutexProfileFraction(1)
	const session = "2a7c0f1e9b3d4c58"
	sdk := appName(app, "com.grafana.pyroscope/go", session)
	delta := appName(app, "com.grafana.pyroscope/godeltaprof", session)
	start := time.Now()

	// CPU: as pyroscope-go's cpuProfileCollector (SampleRate 100, units samples, sum).
	var cpu bytes.Buffer
	if err := pprof.StartCPUProfile(&cpu); err != nil {
		panic(err)
	}
	// Until 300 ms of CPU are spent, however busy the machine: about 30 samples.
	for used := cpuTime(); cpuTime()-used < 300*time.Millisecond; {
		spin(3_000_000)
	}
	pprof.StopCPUProfile()
	save(dir, "cpu", cpu.Bytes())

	// Heap, twice: the second snapshot also goes up with the first as prev_profile.
	allocSmall(1000)
	runtime.GC()
	heap1 := write(dir, "heap1", pprof.Lookup("heap"))
	allocLarge(300)
	allocSmall(500)
	runtime.GC()
	heap2 := write(dir, "heap2", pprof.Lookup("heap"))

	// Contention: goroutines queue on a mutex main holds, and wait on a channel. Main
	// lets go only once they are all parked, so every run records contention.
	var mu sync.Mutex
	var wg sync.WaitGroup
	mu.Lock()
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go contend(&mu, &wg, 20)
	}
	ch := make(chan int)
	var waiters sync.WaitGroup
	for i := 0; i < 3; i++ {
		waiters.Add(1)
		go waitOnChannel(ch, &waiters)
	}
	// Go 1.19 says "semacquire", later versions "sync.Mutex.Lock".
	waitUntilParked([]string{"[semacquire", "[sync.Mutex.Lock"}, 4)
	waitUntilParked([]string{"[chan receive"}, 3)
	// Goroutines: taken while seven of them are parked.
	goroutines := write(dir, "goroutine", pprof.Lookup("goroutine"))
	mu.Unlock()
	wg.Wait()
	close(ch)
	waiters.Wait()
	mutex := write(dir, "mutex", pprof.Lookup("mutex"))
	block := write(dir, "block", pprof.Lookup("block"))
	end := time.Now()

	jobs := []*job{
		{kind: "cpu", name: sdk, spyName: "gospy", sampleRate: 100, units: "samples",
			aggregationType: "sum", profile: cpu.Bytes()},
		{kind: "heap", name: delta, spyName: "gospy", sampleRate: 100, profile: heap2,
			sampleTypeConfig: heapConfig},
		{kind: "mutex", name: delta, spyName: "gospy", profile: mutex,
			sampleTypeConfig: mutexConfig},
		{kind: "block", name: delta, spyName: "gospy", profile: block,
			sampleTypeConfig: blockConfig},
		{kind: "goroutine", name: sdk, spyName: "gospy", units: "goroutines",
			aggregationType: "average", profile: goroutines, sampleTypeConfig: goroutineConfig},
		// An older pyroscope-go: the heap with the previous one, no sample_type_config.
		{kind: "heap-delta", name: appName(app+"-delta", "com.grafana.pyroscope/go", session),
			spyName: "gospy", sampleRate: 100, profile: heap2, prevProfile: heap1},
	}
	failed := false
	for _, j := range jobs {
		j.start, j.end = start, end
		if err := upload(server, j); err != nil {
			fmt.Fprintln(os.Stderr, err)
			failed = true
		}
	}
	if failed {
		os.Exit(1)
	}
}
