#!/usr/bin/python3
"""Reads (and deletes) every message of an SQS queue with botocore, the
library /usr/bin/aws runs on; prints one JSON line per message body.
Usage: sqs_read_all.py ENDPOINT QUEUE_URL EXPECTED"""
import json, sys
import botocore.session

endpoint, queue, expected = sys.argv[1], sys.argv[2], int(sys.argv[3])
sqs = botocore.session.get_session().create_client(
    "sqs", region_name="us-east-1", endpoint_url=endpoint,
    aws_access_key_id="test", aws_secret_access_key="test")
got, empty = 0, 0
while got < expected and empty < 3:
    r = sqs.receive_message(QueueUrl=queue, MaxNumberOfMessages=10,
                            WaitTimeSeconds=0, MessageAttributeNames=["All"])
    msgs = r.get("Messages", [])
    empty = 0 if msgs else empty + 1
    for m in msgs:
        print(json.dumps({"body": m["Body"]}))
        sqs.delete_message(QueueUrl=queue, ReceiptHandle=m["ReceiptHandle"])
        got += 1
