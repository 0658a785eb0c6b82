"""AWS-recorded shapes the runtime must reproduce (see sqs_records.json for the sources)."""

# Key order of an SQS record in a Lambda event, and of its "attributes", as AWS sends them.
SQS_RECORD_KEYS = [
    "messageId",
    "receiptHandle",
    "body",
    "attributes",
    "messageAttributes",
    "md5OfMessageAttributes",
    "md5OfBody",
    "eventSource",
    "eventSourceARN",
    "awsRegion",
]
SQS_STANDARD_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SenderId",
    "ApproximateFirstReceiveTimestamp",
]
SQS_FIFO_ATTRIBUTES = [
    "ApproximateReceiveCount",
    "SentTimestamp",
    "SequenceNumber",
    "MessageGroupId",
    "SenderId",
    "MessageDeduplicationId",
    "ApproximateFirstReceiveTimestamp",
]
