"""Span profiles with the unmodified `pyroscope-otel` client and the OpenTelemetry SDK.

Two kinds of root spans run different functions: `checkout` spans burn CPU in
`checkout_work`, `search` spans in `search_work`. pyroscope-otel's span processor tags the
samples of each root span with `span_id`, `span_name` and `trace_id`, and sets the span
attribute `pyroscope.profile.id`; a span exporter writes every finished span's kind and
`pyroscope.profile.id` to OUT_FILE (one `kind id` line each), so a test can ask the server
for the profile of exactly those spans.

    python3 pyroscope_otel_spans.py SERVER_URL APP_NAME SPANS_PER_KIND OUT_FILE
"""

import sys
import time

import pyroscope
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from pyroscope.otel import PyroscopeSpanProcessor

SPAN_CPU_SECONDS = 0.03
# Idle time between spans. pyroscope-io's sampler applies thread tags when it processes a
# sample, a moment after taking it: a sample taken at the end of one span and processed
# after the next span began would carry the next span's ID. Idling between spans (no CPU,
# so no samples) lets the sampler catch up, as real requests separated by I/O do.
GAP_SECONDS = 0.05


def burn(seconds):
    end = time.process_time() + seconds
    x = 0
    while time.process_time() < end:
        x += 1
    return x


def checkout_work():
    return burn(SPAN_CPU_SECONDS)


def search_work():
    return burn(SPAN_CPU_SECONDS)


class ProfileIds(SpanExporter):
    """Writes `kind pyroscope.profile.id` per finished span."""

    def __init__(self, path):
        self.out = open(path, "w", encoding="utf-8")

    def export(self, spans):
        for span in spans:
            profile_id = span.attributes.get("pyroscope.profile.id")
            if profile_id:
                self.out.write(f"{span.name} {profile_id}\n")
        self.out.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self):
        self.out.close()


def main():
    server, app, per_kind, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    pyroscope.configure(
        application_name=app,
        server_address=server,
        sample_rate=100,
    )
    provider = TracerProvider()
    provider.add_span_processor(PyroscopeSpanProcessor())
    provider.add_span_processor(SimpleSpanProcessor(ProfileIds(out)))
    trace.set_tracer_provider(provider)
    tracer = trace.get_tracer("embers-spans-test")
    print("ready", flush=True)
    for _ in range(per_kind):
        with tracer.start_as_current_span("checkout"):
            checkout_work()
        time.sleep(GAP_SECONDS)
        with tracer.start_as_current_span("search"):
            search_work()
        time.sleep(GAP_SECONDS)
    provider.shutdown()
    pyroscope.shutdown()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
