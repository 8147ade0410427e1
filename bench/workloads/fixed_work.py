"""A fixed amount of the seed-000 foo()/bar() work, timed by the program itself.

Prints "ready <pid>", idles for --settle seconds so a profiler can attach, then runs
--cycles foo/bar cycles and prints "elapsed <seconds>" for that work alone.
"""

import argparse
import os
import time


def work(n):
    i = 0
    while i < n:
        i += 1


def foo():
    work(75000)


def bar():
    work(25000)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cycles", type=int, default=1500)
    parser.add_argument("--settle", type=float, default=1.0)
    args = parser.parse_args()
    print(f"ready {os.getpid()}", flush=True)
    time.sleep(args.settle)
    start = time.perf_counter()
    for _ in range(args.cycles):
        foo()
        bar()
    print(f"elapsed {time.perf_counter() - start:.6f}", flush=True)


if __name__ == "__main__":
    main()
