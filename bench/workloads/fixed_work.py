"""A fixed amount of the seed-000 foo()/bar() work, timed by the program itself.

Prints "ready <pid>", idles for --settle seconds so a profiler can attach, then runs
--cycles foo/bar cycles and prints "elapsed <seconds>" for that work alone. With
--threads N the cycles are split over N threads (a many-threaded service: the profiler
reads N stacks per sample; the GIL keeps the total work the same).
"""

import argparse
import os
import threading
import time


def work(n):
    i = 0
    while i < n:
        i += 1


def foo():
    work(75000)


def bar():
    work(25000)


def cycles(n, go):
    go.wait()
    for _ in range(n):
        foo()
        bar()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=1500)
    parser.add_argument("--settle", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    per_thread = [args.cycles // args.threads] * args.threads
    per_thread[0] += args.cycles - sum(per_thread)
    go = threading.Event()
    threads = [threading.Thread(target=cycles, args=(n, go)) for n in per_thread[1:]]
    for t in threads:
        t.start()  # the threads exist (and are sampled) from the start, idle until `go`
    print(f"ready {os.getpid()}", flush=True)
    time.sleep(args.settle)
    start = time.perf_counter()
    go.set()
    cycles(per_thread[0], go)
    for t in threads:
        t.join()
    print(f"elapsed {time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
