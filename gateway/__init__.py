"""A test vehicle gateway: the gRPC ``VehicleService`` contract served over the simulator.

``python -m gateway`` (docs/grpc.md). It runs the same simulated fleet as the workers'
embedded connector (``workers.simulator``), reading the vehicles from the same Redis,
so a worker with ``SOVD_CONNECTOR=grpc`` gives the same answers through the network.
"""
