"""A rideshare-style service instrumented with the unmodified `pyroscope-io` client.

Seed 003's example: a static `region` tag, and a dynamic `vehicle` tag set around each
order with `tag_wrapper`; the CPU an order burns is proportional to its search radius.

    python3 pyroscope_rideshare.py SERVER_URL REGION SECONDS
"""

import sys
import time

import pyroscope

SEARCH_RADIUS = {"bike": 1, "scooter": 2, "car": 4}


def find_nearest_vehicle(search_radius):
    end = time.process_time() + search_radius * 0.01
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def order_vehicle(vehicle):
    with pyroscope.tag_wrapper({"vehicle": vehicle}):
        find_nearest_vehicle(SEARCH_RADIUS[vehicle])


def main():
    server, region, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    pyroscope.configure(
        application_name="ride-sharing-app",
        server_address=server,
        sample_rate=100,
        tags={"region": region},
    )
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for vehicle in ("bike", "scooter", "car"):
            order_vehicle(vehicle)
    pyroscope.shutdown()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
