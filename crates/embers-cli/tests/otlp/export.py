"""Builds an OTLP profiles export with the published `opentelemetry-proto` package and
sends it to an Embers server, as an OpenTelemetry exporter would.

    export.py MODE BASE_URL SERVICE[,SERVICE...] [--reject-one] [--ca FILE]

MODE: protobuf | protobuf-gzip | json | grpc | grpc-gzip; dump-protobuf or dump-json
write the request to stdout instead (fuzz seeds; BASE_URL is ignored); or grpc-raw with a file in
place of the services: its bytes are sent as the Export message as they are (hostile
bodies built by the Rust test). Each service gets its own
ResourceProfiles (one shared dictionary) with a CPU profile (`samples`/`count`, period
10 ms of `cpu`/`nanoseconds`), an allocation profile and an off-CPU profile; with
--reject-one, a profile without sample_type is added (the reply's partial_success
counts it). Prints the reply as JSON on stdout. An https:// BASE_URL is verified
against the CA certificates in --ca FILE (gRPC: grpcio's ssl_channel_credentials).

Per service S the CPU profile holds, in samples of 10 ms:
    main;work_S 5 (3 by value, 2 by timestamps; thread.name=worker)
    main;idle   1 (linked to a span)
The allocation profile: main;work_S 4096 bytes. The off-CPU profile: main;idle 7 ns.
"""

import gzip
import json
import ssl
import sys
import time
import urllib.error
import urllib.request

from google.protobuf import json_format
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2 as service_pb2,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.profiles.v1development import profiles_pb2

PERIOD = 10_000_000


class Strings:
    def __init__(self, table):
        self.table = table
        self.table.append("")

    def __call__(self, s):
        if s not in self.table:
            self.table.append(s)
        return list(self.table).index(s)


def build(services, reject_one):
    request = service_pb2.ExportProfilesServiceRequest()
    d = request.dictionary
    s = Strings(d.string_table)
    d.mapping_table.add()  # index 0: no mapping
    d.mapping_table.add(filename_strindex=s("/usr/bin/python3.11"))
    d.link_table.add()  # index 0: no link
    d.link_table.add(trace_id=bytes(range(16)), span_id=bytes(range(8, 16)))
    d.attribute_table.add()  # index 0: unused
    d.stack_table.add()  # index 0: the empty stack

    def function(name):
        d.function_table.add(name_strindex=s(name), filename_strindex=s("app.py"))
        return len(d.function_table) - 1

    def location(name, line):
        loc = d.location_table.add(mapping_index=1, address=0x1000 + len(d.location_table))
        loc.lines.add(function_index=function(name), line=line)
        return len(d.location_table) - 1

    def stack(*locations):  # leaf first, as OTLP orders them
        d.stack_table.add(location_indices=list(locations))
        return len(d.stack_table) - 1

    def attribute(key, value):
        kv = d.attribute_table.add(key_strindex=s(key))
        kv.value.string_value = value
        return len(d.attribute_table) - 1

    main, idle = location("main", 1), location("idle", 7)
    worker = attribute("thread.name", "worker")
    now = time.time_ns()
    for service in services:
        work = location(f"work_{service}", 3)
        rp = request.resource_profiles.add()
        for key, value in [("service.name", service), ("host.name", "test-host")]:
            rp.resource.attributes.add(key=key).value.string_value = value
        rp.resource.attributes.add(key="process.pid").value.int_value = 4242
        sp = rp.scope_profiles.add()
        sp.scope.name = "embers-otlp-test"
        sp.scope.attributes.add(key="profiler.kind").value.string_value = "test"

        cpu = sp.profiles.add(time_unix_nano=now, duration_nano=10_000_000_000, period=PERIOD)
        cpu.sample_type.type_strindex, cpu.sample_type.unit_strindex = s("samples"), s("count")
        cpu.period_type.type_strindex, cpu.period_type.unit_strindex = s("cpu"), s("nanoseconds")
        cpu.samples.add(stack_index=stack(work, main), values=[3], attribute_indices=[worker])
        cpu.samples.add(
            stack_index=stack(work, main),
            timestamps_unix_nano=[now, now + PERIOD],
            attribute_indices=[worker],
        )
        cpu.samples.add(stack_index=stack(idle, main), values=[1], link_index=1)

        alloc = sp.profiles.add(time_unix_nano=now)
        alloc.sample_type.type_strindex = s("alloc_space")
        alloc.sample_type.unit_strindex = s("bytes")
        alloc.samples.add(stack_index=stack(work, main), values=[4096])

        off = sp.profiles.add(time_unix_nano=now)
        off.sample_type.type_strindex, off.sample_type.unit_strindex = s("events"), s("nanoseconds")
        off.samples.add(stack_index=stack(idle, main), values=[3, 4])
        if reject_one:
            sp.profiles.add(time_unix_nano=now).samples.add(stack_index=stack(main), values=[1])
    return request


def ca_file():
    return sys.argv[sys.argv.index("--ca") + 1] if "--ca" in sys.argv else None


def channel(url, **options):
    """A gRPC channel to BASE_URL: TLS trusting --ca for https://, else plain h2c."""
    import grpc

    if url.startswith("https://"):
        with open(ca_file(), "rb") as f:
            credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
        return grpc.secure_channel(url.removeprefix("https://"), credentials, **options)
    return grpc.insecure_channel(url.removeprefix("http://"), **options)


def send_http(url, body, content_type, encoding=None):
    headers = {"Content-Type": content_type}
    if encoding:
        headers["Content-Encoding"] = encoding
    req = urllib.request.Request(url + "/v1development/profiles", data=body, headers=headers)
    try:
        context = ssl.create_default_context(cafile=ca_file()) if ca_file() else None
        with urllib.request.urlopen(req, timeout=120, context=context) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def main():
    mode, url, services = sys.argv[1], sys.argv[2], sys.argv[3].split(",")
    out = {}
    if mode in ("grpc-raw", "grpc-raw-trailers"):
        import grpc

        if mode == "grpc-raw":
            with open(sys.argv[3], "rb") as f:
                raw = f.read()
        else:  # a valid export; the answer says its trailers too (binary ones as hex)
            raw = build(["budget"], False).SerializeToString()
        with channel(url) as grpc_channel:
            export = grpc_channel.unary_unary(
                "/opentelemetry.proto.collector.profiles.v1development.ProfilesService/Export"
            )
            try:
                export(raw, timeout=120)
                out = {"code": "OK"}
            except grpc.RpcError as e:
                out = {"code": e.code().name, "details": e.details()}
                if mode == "grpc-raw-trailers":
                    out["trailers"] = {
                        k: v.hex() if isinstance(v, bytes) else v
                        for k, v in (e.trailing_metadata() or ())
                    }
        print(json.dumps(out))
        return
    request = build(services, "--reject-one" in sys.argv)
    if mode == "dump-protobuf":
        sys.stdout.buffer.write(request.SerializeToString())
        return
    if mode == "dump-json":
        sys.stdout.write(json_format.MessageToJson(request))
        return
    if mode.startswith("grpc"):
        import grpc
        from opentelemetry.proto.collector.profiles.v1development import (
            profiles_service_pb2_grpc as grpc_pb2,
        )

        compression = grpc.Compression.Gzip if mode == "grpc-gzip" else grpc.Compression.NoCompression
        with channel(url, compression=compression) as grpc_channel:
            stub = grpc_pb2.ProfilesServiceStub(grpc_channel)
            try:
                reply = stub.Export(request, timeout=120)
                out = {"code": "OK", "reply": json_format.MessageToDict(reply)}
            except grpc.RpcError as e:
                out = {"code": e.code().name, "details": e.details()}
    elif mode == "json":
        body = json_format.MessageToJson(request).encode()
        status, ctype, reply = send_http(url, body, "application/json")
        out = {"status": status, "content_type": ctype, "reply": reply.decode()}
    else:
        body = request.SerializeToString()
        encoding = None
        if mode == "protobuf-gzip":
            body, encoding = gzip.compress(body), "gzip"
        status, ctype, reply = send_http(url, body, "application/x-protobuf", encoding)
        out = {"status": status, "content_type": ctype}
        if status == 200:
            parsed = service_pb2.ExportProfilesServiceResponse.FromString(reply)
            out["reply"] = json_format.MessageToDict(parsed)
        else:
            out["reply"] = reply.decode(errors="replace")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
