"""Seed 003's rideshare service: three endpoints, one slow region.

    python3 server.py --region us-east-1 [--port 0] [--pyroscope http://localhost:4040]

GET /bike, /scooter and /car call order_bike(), order_scooter() and order_car(), which
call find_nearest_vehicle(search_radius, vehicle): the CPU an order burns is proportional
to its search radius (bike 1, scooter 2, car 4). In us-west-1 a car order also waits on
mutex_lock(), which alternates between high and low CPU every --phase-seconds (30 s):
the slow-region story the UI's tag explorer, comparison and diff views are for.

Two flavours:
- instrumented (--pyroscope URL): the unmodified `pyroscope-io` client (PyPI) pushes
  profiles with a static `region` tag and a dynamic `vehicle` tag (tag_wrapper);
- uninstrumented (no flag): profile it from outside, e.g.
  `embers agent --app ride-sharing-app --tag region=us-east-1 --pid PID`.

Prints "listening PORT" once it accepts requests.
"""

import argparse
import contextlib
import http.server
import os
import threading
import time

SEARCH_RADIUS = {"bike": 1, "scooter": 2, "car": 4}
UNIT_SECONDS = 0.005  # CPU per unit of search radius
REGION = "unknown"
PHASE_SECONDS = 30.0
tag = None  # pyroscope.tag_wrapper when instrumented


def burn(seconds):
    """Spins for `seconds` of this thread's CPU time."""
    end = time.thread_time() + seconds
    i = 0
    while time.thread_time() < end:
        i += 1
    return i


def high_cpu_phase():
    return int(time.time() // PHASE_SECONDS) % 2 == 0


def mutex_lock(n):
    # A contended lock, spinning: 6x the order's own work in high phases, 1x in low ones.
    burn(n * UNIT_SECONDS * (6 if high_cpu_phase() else 1))


def check_driver_availability(n):
    burn(n * UNIT_SECONDS * 0.5)
    if REGION == "us-west-1":
        mutex_lock(n)


def find_nearest_vehicle(n, vehicle):
    with tag({"vehicle": vehicle}) if tag else contextlib.nullcontext():
        burn(n * UNIT_SECONDS)
        if vehicle == "car":
            check_driver_availability(n)


def order_bike(search_radius):
    find_nearest_vehicle(search_radius, "bike")


def order_scooter(search_radius):
    find_nearest_vehicle(search_radius, "scooter")


def order_car(search_radius):
    find_nearest_vehicle(search_radius, "car")


ORDERS = {"/bike": order_bike, "/scooter": order_scooter, "/car": order_car}


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (the http.server API)
        order = ORDERS.get(self.path)
        if order is None:
            self.send_error(404, "try /bike, /scooter or /car")
            return
        order(SEARCH_RADIUS[self.path[1:]])
        body = f"{self.path[1:]} ordered in {REGION}\n".encode()
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):  # quiet: one line per request is noise here
        pass


def exit_with_parent():
    """Exits when the process that started us is gone (`embers demo` may be killed
    without a chance to stop its children)."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main():
    global REGION, PHASE_SECONDS, tag
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--pyroscope", metavar="SERVER_URL")
    parser.add_argument("--phase-seconds", type=float, default=30.0)
    parser.add_argument("--exit-with-parent", action="store_true")
    args = parser.parse_args()
    if args.exit_with_parent:
        exit_with_parent()
    REGION, PHASE_SECONDS = args.region, args.phase_seconds
    if args.pyroscope:
        import pyroscope

        pyroscope.configure(
            application_name="ride-sharing-app",
            server_address=args.pyroscope,
            sample_rate=100,
            tags={"region": REGION},
        )
        tag = pyroscope.tag_wrapper
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        if args.pyroscope:
            import pyroscope

            pyroscope.shutdown()


if __name__ == "__main__":
    main()
