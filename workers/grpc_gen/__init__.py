"""Code generated from proto/sovd/vehicle/v1/vehicle.proto by ``python scripts/gen_grpc.py``.

Do not edit the modules here; change the proto and regenerate
(tests/unit/test_grpc_contract.py fails when they differ from a fresh generation).
"""
