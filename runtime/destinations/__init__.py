"""On-failure destinations of stream and Kafka mappings: Lambda's records, and their delivery.

A batch that a mapping gives up on (retries exhausted, records too old, payload too large) is
not silently dropped: Lambda sends a JSON record describing it to the mapping's
``DestinationConfig.OnFailure`` (an SQS queue, SNS topic or S3 bucket). Users replay from those
records, so their shape must be Lambda's exactly; the sources (Kafka, Kinesis, DynamoDB) share
this package so that there is one envelope and one delivery path to keep right.

* :mod:`runtime.destinations.record` builds the record (envelope + the source's batch info).
* :mod:`runtime.destinations.targets` parses and vets the destination ARN (at config time).
* :mod:`runtime.destinations.sender` delivers a record; callers retry on failure and keep the
  metrics (``OnFailureDestinationDeliveredEventCount``, ``DestinationDeliveryFailures``).
"""
