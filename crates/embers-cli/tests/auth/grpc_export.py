"""Sends an empty OTLP profiles Export over gRPC with grpcio, with an `authorization`
metadata entry when a token is given, and prints the outcome as JSON:
`{"code": "OK" | status code name, "details": "..."}`.

    python3 grpc_export.py HOST:PORT [TOKEN]
"""

import json
import sys

import grpc
from opentelemetry.proto.collector.profiles.v1development import (
    profiles_service_pb2 as service_pb2,
    profiles_service_pb2_grpc as service_grpc,
)


def main():
    target = sys.argv[1]
    metadata = [("authorization", "Bearer " + sys.argv[2])] if len(sys.argv) > 2 else []
    with grpc.insecure_channel(target) as channel:
        stub = service_grpc.ProfilesServiceStub(channel)
        try:
            stub.Export(service_pb2.ExportProfilesServiceRequest(), metadata=metadata, timeout=60)
            print(json.dumps({"code": "OK", "details": ""}))
        except grpc.RpcError as e:
            print(json.dumps({"code": e.code().name, "details": e.details() or ""}))


if __name__ == "__main__":
    main()
