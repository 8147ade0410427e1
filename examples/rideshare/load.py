"""Mock load for the rideshare servers: each server gets its /bike, /scooter and /car
orders in turn, one every --interval seconds (0: back to back), until stopped. Paced
load leaves CPU to spare, so a region that works harder shows on the timeline.

    python3 load.py [--interval 0.1] [--exit-with-parent] http://127.0.0.1:PORT1 ...
"""

import sys
import threading
import time
import urllib.error
import urllib.request


def drive(base, interval):
    next_order = time.monotonic()
    while True:
        for vehicle in ("bike", "scooter", "car"):
            try:
                with urllib.request.urlopen(f"{base}/{vehicle}", timeout=30) as r:
                    r.read()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)  # the server is starting or going away
            next_order = max(next_order + interval, time.monotonic() - 1.0)
            time.sleep(max(0.0, next_order - time.monotonic()))


def main():
    bases = sys.argv[1:]
    interval = 0.1
    if bases[:1] == ["--interval"]:
        interval = float(bases[1])
        bases = bases[2:]
    if bases[:1] == ["--exit-with-parent"]:
        bases = bases[1:]
        from server import exit_with_parent  # the service beside this script

        exit_with_parent()
    if not bases:
        sys.exit("usage: load.py SERVER_URL...")
    for base in bases:
        threading.Thread(target=drive, args=(base, interval), daemon=True).start()
    print(f"load on {len(bases)} servers", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
