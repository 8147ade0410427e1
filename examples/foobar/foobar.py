"""The foo()/bar() program of the "Debug performance issues in Python" article.

foo() does three times the work of bar(), so a profile shows foo at 75 % and bar at 25 %.
Run `python3 foobar.py --foo 8000` for the "optimised" version, where foo falls to ~24 %.

Usage: python3 foobar.py [--seconds N] [--foo N] [--bar N]
Prints "ready <pid>" once running, so tests can wait for it instead of sleeping.
"""

import argparse
import os
import sys
import time


# where each iteration simulates CPU time
def work(n):
    i = 0
    while i < n:
        i += 1


def foo(n):
    work(n)


def bar(n):
    work(n)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=0, help="stop after N seconds (0: run forever)")
    parser.add_argument("--foo", type=int, default=75000)
    parser.add_argument("--bar", type=int, default=25000)
    args = parser.parse_args()
    print(f"ready {os.getpid()}", flush=True)
    deadline = time.monotonic() + args.seconds if args.seconds > 0 else None
    while deadline is None or time.monotonic() < deadline:
        foo(args.foo)
        bar(args.bar)
    return 0


if __name__ == "__main__":
    sys.exit(main())
