#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine, and nothing twice:
#   ruby             real Ruby processes for the rbspy sampler tests
#   valgrind         callgrind_annotate reads our callgrind output
#   chromium         the real browser for SVG and UI tests (driven by playwright-core)
#   protobuf-compiler protoc, for `cargo run -p xtask -- protogen --check`
#   golang-go        builds the Go programs whose real profiles the render tests query,
#                    and the one that uploads as pyroscope-go (tests/go.rs); `go tool pprof`
#                    reads the profiles and Embers' pprof export
#   graphviz         `dot` lays out the call graphs /render?format=dot writes
#   e2e/node_modules playwright-core, the speedscope schema validator and typescript
#                    (type-checks the web UI), Pyroscope's flamebearer schema and
#                    flame graph component with React and esbuild, from npm
#   py-spy (PyPI)    the baseline the record benchmark compares against
#   pyroscope-io     (PyPI) the real Python client, pushing to `embers server` in tests
#   pyroscope-otel, opentelemetry-sdk (PyPI) span profiles from the real OpenTelemetry
#                    integration (crates/embers-cli/tests/spans.rs)
#   default-jdk-headless java, javac and jfr: the JFR ingest tests record a real Java program
#   opentelemetry-proto, grpcio (PyPI) build and send the OTLP profiles exports of
#                    crates/embers-cli/tests/otlp.rs (HTTP and gRPC)
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v ruby >/dev/null || need_apt+=(ruby)
command -v callgrind_annotate >/dev/null || need_apt+=(valgrind)
[ -x /usr/bin/chromium ] || need_apt+=(chromium)
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
command -v python3 >/dev/null || need_apt+=(python3)
command -v node >/dev/null || need_apt+=(nodejs npm)
{ command -v javac >/dev/null && command -v jfr >/dev/null; } || need_apt+=(default-jdk-headless)
command -v go >/dev/null || need_apt+=(golang-go)
command -v dot >/dev/null || need_apt+=(graphviz)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing apt packages: ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ -f e2e/package-lock.json ]; then
  if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules ]; then
    echo "installing e2e npm packages"
    npm ci --prefix e2e --no-audit --no-fund --loglevel=error
  fi
fi

# The published Python client the ingest tests run unmodified.
if ! python3 -c "import pyroscope" 2>/dev/null; then
  echo "installing pyroscope-io from PyPI"
  python3 -m pip install -q pyroscope-io==1.4.0 \
    || python3 -m pip install -q --break-system-packages pyroscope-io==1.4.0
fi

# The OpenTelemetry integration of the Python client, for span profiles.
if ! python3 -c "import pyroscope.otel, opentelemetry.sdk" 2>/dev/null; then
  echo "installing pyroscope-otel and opentelemetry-sdk from PyPI"
  otel=(pyroscope-otel==1.1.0 opentelemetry-api==1.45.2 opentelemetry-sdk==1.45.2 pyroscope-io==1.4.0)
  python3 -m pip install -q "${otel[@]}" \
    || python3 -m pip install -q --break-system-packages "${otel[@]}"
fi

# The published OTLP schema (opentelemetry-proto v1.10.0) and gRPC client for the OTLP tests.
if ! python3 -c "import opentelemetry.proto.profiles.v1development, grpc" 2>/dev/null; then
  echo "installing opentelemetry-proto and grpcio from PyPI"
  python3 -m pip install -q opentelemetry-proto==1.45.2 grpcio==1.85.3 \
    || python3 -m pip install -q --break-system-packages opentelemetry-proto==1.45.2 grpcio==1.85.3
fi
