"""Shard leases: which worker of which pod reads a Kinesis or DynamoDB shard, with its
checkpoint, fenced by conditional writes (KCL's protocol, see :mod:`runtime.leases.store`)."""
