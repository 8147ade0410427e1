"""Mock load for the rideshare servers: each server gets its /bike, /scooter and /car
orders in turn, one request at a time, until stopped.

    python3 load.py [--exit-with-parent] http://127.0.0.1:PORT1 http://127.0.0.1:PORT2 ...
"""

import os
import sys
import threading
import time
import urllib.error
import urllib.request


def drive(base):
    while True:
        for vehicle in ("bike", "scooter", "car"):
            try:
                with urllib.request.urlopen(f"{base}/{vehicle}", timeout=30) as r:
                    r.read()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)  # the server is starting or going away


def main():
    bases = sys.argv[1:]
    if bases[:1] == ["--exit-with-parent"]:
        bases = bases[1:]
        parent = os.getppid()

        def watch():
            while os.getppid() == parent:
                time.sleep(0.5)
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
    if not bases:
        sys.exit("usage: load.py SERVER_URL...")
    for base in bases:
        threading.Thread(target=drive, args=(base,), daemon=True).start()
    print(f"load on {len(bases)} servers", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
