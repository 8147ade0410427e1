#!/usr/bin/env bash
# Builds every cargo-fuzz target and runs each for a short while (FUZZ_SECONDS, default 20),
# starting from seeds made of our own test data. Finds regressions in the decoders of
# untrusted bytes; long fuzzing runs are `cargo fuzz run TARGET` by hand.
# cargo-fuzz needs nightly flags: RUSTC_BOOTSTRAP lets the stable toolchain accept them.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-20}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
export RUSTC_BOOTSTRAP=1

seed() { mkdir -p "fuzz/corpus/$1"; cp "${@:2}" "fuzz/corpus/$1/" 2>/dev/null || true; }
seed folded_parse examples/foobar/*.py
printf '<module> (app.py:40);foo (app.py:22);work (app.py:17) 75\n' > fuzz/corpus/folded_parse/foobar.folded
seed pprof_decode crates/embers-formats/tests/data/*.pb.gz
mkdir -p fuzz/corpus/ingest fuzz/corpus/selector_parse fuzz/corpus/block_decode
printf 'app.cpu{region="us-east-1", vehicle=~"car|bike"}' > fuzz/corpus/selector_parse/selector
# The ingest target's first byte picks the format (see fuzz_targets/ingest.rs): 0 folded,
# 1 lines, 2 trie, 3 tree, 4 pprof, 5 and 6 multipart, 7 Push protobuf, 8 and 9 Push JSON.
printf '\x00main;foo 3\nmain;bar 1\n' > fuzz/corpus/ingest/folded
printf '\x01main;foo\nmain;foo;baz\n' > fuzz/corpus/ingest/lines
printf '\x02\x00\x00\x01\x05main;\x00\x02\x03foo\x03\x00\x03bar\x01\x00' > fuzz/corpus/ingest/trie
printf '\x03\x00\x00\x01\x04main\x01\x01\x03foo\x03\x00' > fuzz/corpus/ingest/tree
for f in crates/embers-formats/tests/data/*.pb.gz; do
  { printf '\x04'; cat "$f"; } > "fuzz/corpus/ingest/pprof-$(basename "$f")"
done
printf -- '\x05--B0UNDARY\r\nContent-Disposition: form-data; name="profile"\r\n\r\nxyz\r\n--B0UNDARY--\r\n' > fuzz/corpus/ingest/multipart
# The jfr_decode target's first byte: 0 a bare recording, 1 a LabelsSnapshot first.
mkdir -p fuzz/corpus/jfr_decode
{ printf '\x00'; gzip -dc crates/embers-formats/tests/data/jdk17-labels.jfr.gz; } > fuzz/corpus/jfr_decode/jdk17-labels
# pyroscope-go's form: profile, an older client's prev_profile, sample_type_config.
part() { printf -- '--B0UNDARY\r\nContent-Disposition: form-data; name="%s"; filename="%s"\r\n\r\n' "$1" "$2"; }
for f in crates/embers-formats/tests/data/*.pb.gz; do
  { printf '\x05'; part profile profile.pprof; cat "$f"; printf '\r\n'
    part prev_profile profile.pprof; cat "$f"; printf '\r\n'
    part sample_type_config sample_type_config.json
    printf '{"samples":{"display-name":"block_count","cumulative":true}}\r\n--B0UNDARY--\r\n'
  } > "fuzz/corpus/ingest/form-$(basename "$f")"
done
printf '\x08{"series":[{"labels":[{"name":"service_name","value":"a"}],"samples":[{"rawProfile":"","ID":"x"}]}]}' > fuzz/corpus/ingest/push-json
# OTLP exports from the published opentelemetry-proto package (tests/otlp/export.py):
# first byte 0 protobuf, 1 JSON.
mkdir -p fuzz/corpus/otlp_decode
otlp=crates/embers-cli/tests/otlp/export.py
{ printf '\x00'; python3 "$otlp" dump-protobuf - a,b --reject-one; } > fuzz/corpus/otlp_decode/export.pb || true
{ printf '\x01'; python3 "$otlp" dump-json - a; } > fuzz/corpus/otlp_decode/export.json || true
# The adhoc_decode target reads whole files by content: every format's seeds.
mkdir -p fuzz/corpus/adhoc_decode
cp crates/embers-formats/tests/data/*.gz crates/embers-formats/tests/data/*.folded fuzz/corpus/adhoc_decode/
printf '{"shared":{"frames":[{"name":"a"},{"name":"b"}]},"profiles":[{"type":"sampled","unit":"none","samples":[[0,1]],"weights":[3]},{"type":"evented","unit":"seconds","events":[{"type":"O","at":0,"frame":0},{"type":"C","at":1,"frame":0}]}]}' > fuzz/corpus/adhoc_decode/speedscope.json
# The querier_request target's first byte: the message in the low bits (4 is
# SelectMergeStacktraces), 0x80 for JSON.
mkdir -p fuzz/corpus/querier_request
printf '\x84{"profile_typeID":"process_cpu:cpu:nanoseconds:cpu:nanoseconds","labelSelector":"{}","start":"1","maxNodes":8,"format":"PROFILE_FORMAT_TREE","stackTraceSelector":{"call_site":[{"name":"main"}]}}' > fuzz/corpus/querier_request/merge-json
printf '\x87{"profileTypeID":"a:b:c:d:e","step":15.5,"aggregation":"TIME_SERIES_AGGREGATION_TYPE_AVERAGE","groupBy":["x"],"limit":"3"}' > fuzz/corpus/querier_request/series-json
mkdir -p fuzz/corpus/auth_header
printf 'Bearer embers_0123456789abcdef' > fuzz/corpus/auth_header/bearer
printf 'Basic Z3JhZmFuYTplbWJlcnNfMDEyMzQ1Njc4OWFiY2RlZg==' > fuzz/corpus/auth_header/basic
# The origin_check target's first byte: bit 0 trusts proxy headers, bit 1 sets
# allowed_hosts, the top two bits pick the method (1 POST); then Host, Origin,
# Sec-Fetch-Site, X-Forwarded-Host, X-Forwarded-Proto, Access-Control-Request-Method,
# one per line.
mkdir -p fuzz/corpus/origin_check
printf '\x40127.0.0.1:4040\nhttp://127.0.0.1:4040\nsame-origin\n' > fuzz/corpus/origin_check/own
printf '\x43profiles.example\nhttps://evil.example\n\nprofiles.example\nhttps\n' > fuzz/corpus/origin_check/proxy
cd fuzz
cargo fuzz build --release -s address
for target in folded_parse pprof_decode tree_decode ingest selector_parse block_decode jfr_decode span_decode otlp_decode adhoc_decode querier_request auth_header origin_check; do
  echo "fuzzing $target for ${seconds}s"
  mkdir -p "corpus/$target"
  log="target/fuzz-$target.log"
  mkdir -p target
  status=0
  # A JDK recording's metadata alone is ~100 KB: JFR inputs may be longer.
  max_len=65536
  [ "$target" = jfr_decode ] || [ "$target" = adhoc_decode ] && max_len=262144
  cargo fuzz run --release -s address "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -max_len="$max_len" -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "stat::number_of_executed_units" "$log" || true
  if [ "$status" -ne 0 ]; then
    tail -40 "$log"
    echo "fuzz target $target failed (artifacts in fuzz/artifacts/$target)"
    exit 1
  fi
done
