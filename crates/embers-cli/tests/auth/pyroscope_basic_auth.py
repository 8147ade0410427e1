"""Pushes CPU profiles with the unmodified `pyroscope-io` client, authenticating the
way Grafana Cloud documents it: `basic_auth_username` (free text) and
`basic_auth_password` (the token), with the client's own logging on so a refusal shows.

    python3 pyroscope_basic_auth.py SERVER_URL APP TOKEN SECONDS [TENANT]
"""

import logging
import sys
import time

import pyroscope


def work():
    end = time.process_time() + 0.01
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def main():
    server, app, token, seconds = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    tenant = sys.argv[5] if len(sys.argv) > 5 else ""
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    pyroscope.configure(
        application_name=app,
        server_address=server,
        basic_auth_username="grafana",
        basic_auth_password=token,
        tenant_id=tenant,
        enable_logging=True,
        sample_rate=100,
        upload_interval=1,
    )
    print("ready", flush=True)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        work()
    pyroscope.shutdown()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
