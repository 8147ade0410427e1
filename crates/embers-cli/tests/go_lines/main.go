// A program whose CPU profile has one function, spin, at two of its lines: it calls work
// from line 26 and from line 27. Grouped by function the flame graph has one spin node;
// by line it has two. Used by crates/embers-cli/tests/render.rs:
//   go build -o lines main.go && ./lines cpu.pprof
package main

import (
	"os"
	"runtime/pprof"
)

var sink uint64

// work spends a fixed amount of CPU (not wall time), so both calls are sampled however
// busy the machine is.
//
//go:noinline
func work(n int) {
	for i := 0; i < n; i++ {
		sink += uint64(i) * 2654435761
	}
}

//go:noinline
func spin(n int) {
	work(n)
	work(n)
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	spin(100_000_000)
	pprof.StopCPUProfile()
	if err := f.Close(); err != nil {
		panic(err)
	}
}
