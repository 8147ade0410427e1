"""Burns CPU under the unmodified `pyroscope-io` client, pushing as one tenant.

    python3 pyroscope_tenant.py SERVER_URL TENANT APP SECONDS

The client logs through Python's `logging` (enable_logging): every upload it could not
deliver shows up on stderr, which tests/limits.rs reads.
"""

import logging
import sys
import time

import pyroscope


def burn(seconds):
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def main():
    server, tenant, app, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    pyroscope.configure(
        application_name=app,
        server_address=server,
        tenant_id=tenant,
        sample_rate=100,
        upload_interval=1,
        enable_logging=True,
    )
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        burn(0.05)
    pyroscope.shutdown()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
