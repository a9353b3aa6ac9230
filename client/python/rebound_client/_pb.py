"""The generated stubs of proto/rebound/v1/rebound.proto, with a clear error when they are missing.

They are generated at build time (CMake target `rebound_python_stubs`) into
build/client/python/gen, which must be on PYTHONPATH beside client/python.
"""

try:
    from rebound.v1 import rebound_pb2 as pb2
    from rebound.v1 import rebound_pb2_grpc as pb2_grpc
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "rebound_client needs the generated stubs rebound.v1.rebound_pb2 and rebound_pb2_grpc: "
        "build them (cmake --build build --target rebound_python_stubs) and put "
        "build/client/python/gen on PYTHONPATH"
    ) from error

__all__ = ["pb2", "pb2_grpc"]
