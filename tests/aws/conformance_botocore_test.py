#!/usr/bin/python3
"""The conformance server (tests/support/aws_conformance.py) agrees with
botocore's own SQS and SNS clients: what herald's tests take as AWS's
answers, the AWS SDK reads as AWS's answers.

botocore (Debian python3-botocore 1.29, the library of /usr/bin/aws) sends
each action with the Query protocol to the server, signed by botocore's
signer, and parses the answer with AWS's service models: every answer must
parse into the fields the models name (MessageId, SequenceNumber,
MD5OfMessageBody, Successful/Failed entries with Code and SenderFault), and
every error must come back as the error code AWS documents, with
botocore's own retry rules applying (throttling is retried). A request
signed with a wrong secret is refused with SignatureDoesNotMatch. The
consuming side of a queue (class SqsConsuming) is read the same way:
CreateQueue, GetQueueAttributes, ReceiveMessage (long poll, visibility,
attributes, MD5OfMessageAttributes), DeleteMessage[Batch],
ChangeMessageVisibility[Batch], redelivery after the visibility timeout
with a new receipt handle (an older one deleting nothing), FIFO groups
locked while a message is in flight, content-based deduplication.

Run by ctest (tests/aws/CMakeLists.txt) with /usr/bin/python3; it starts the
server on 127.0.0.1 on a free port in a temporary directory and stops it.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import botocore
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

HERE = os.path.dirname(os.path.abspath(__file__))
SERVER = os.path.join(HERE, "..", "support", "aws_conformance.py")
KEY, SECRET = "AKIDHERALDTEST", "herald/test/secret+key"
ACCOUNT = "123456789012"


class ConformanceServer:
    """One aws_conformance.py process on a free port of 127.0.0.1."""

    def __init__(self, *extra):
        self.dir = tempfile.mkdtemp(prefix="herald-aws-conf-")
        ready = os.path.join(self.dir, "ready")
        self.err = open(os.path.join(self.dir, "server.err"), "w+")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", SERVER, "--port", "0", "--ready", ready,
             "--access-key", KEY, "--secret-key", SECRET] + list(extra),
            stdout=subprocess.DEVNULL, stderr=self.err)
        deadline = time.monotonic() + 30
        while not os.path.exists(ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.err.seek(0)
                raise RuntimeError("conformance server did not start: " + self.err.read())
            time.sleep(0.02)
        with open(ready) as f:
            self.port = int(f.read())
        self.endpoint = "http://127.0.0.1:%d/" % self.port

    def stop(self):
        self.proc.kill()
        self.proc.wait()
        self.err.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def queue(self, name):
        return "http://127.0.0.1:%d/%s/%s" % (self.port, ACCOUNT, name)

    @staticmethod
    def topic(name):
        return "arn:aws:sns:us-east-1:%s:%s" % (ACCOUNT, name)

    def cue(self, **cue):
        req = urllib.request.Request(self.endpoint + "_control/cue",
                                     data=json.dumps(cue).encode(), method="POST")
        with urllib.request.urlopen(req) as r:
            assert r.status == 200

    def fail(self, event_id, code, sender_fault, times=-1):
        self.cue(fail={"id": event_id, "code": code, "sender_fault": sender_fault,
                       "times": times, "mode": "entry"})

    def messages(self, target):
        q = urllib.parse.urlencode({"target": target})
        with urllib.request.urlopen(self.endpoint + "_control/messages?" + q) as r:
            return json.loads(r.read())


CLIENTS = []  # closed after each test


def client(server, service, secret=SECRET, token=None, retries=0, mode="legacy",
           region="us-east-1", key=KEY):
    config = Config(retries={"total_max_attempts": retries + 1, "mode": mode})
    c = botocore.session.get_session().create_client(
        service, region_name=region, endpoint_url=server.endpoint,
        aws_access_key_id=key, aws_secret_access_key=secret,
        aws_session_token=token, config=config)
    CLIENTS.append(c)
    return c


def md5(s):
    return hashlib.md5(s.encode()).hexdigest()


class QueryProtocol(unittest.TestCase):
    """The premise: this botocore speaks the Query protocol to SQS and SNS
    (newer botocore sends SQS the JSON protocol, which the server lacks)."""

    def test_sqs_and_sns_clients_use_the_query_protocol(self):
        s = botocore.session.get_session()
        for service in ("sqs", "sns"):
            model = s.get_service_model(service)
            self.assertEqual(model.protocol, "query",
                             "botocore %s speaks %s to %s; run this with Debian's "
                             "/usr/bin/python3 (python3-botocore 1.29)"
                             % (botocore.__version__, model.protocol, service))


class Base(unittest.TestCase):
    server_args = ()

    @classmethod
    def setUpClass(cls):
        cls.server = ConformanceServer(*cls.server_args)

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()

    def setUp(self):
        self.server.cue(clear=True)

    def tearDown(self):
        while CLIENTS:
            CLIENTS.pop().close()

    def assertClientError(self, ctx, code, status, sender=True):
        err = ctx.exception.response
        self.assertEqual(err["Error"]["Code"], code, err)
        self.assertEqual(err["ResponseMetadata"]["HTTPStatusCode"], status, err)
        self.assertEqual(err["Error"]["Type"], "Sender" if sender else "Receiver", err)
        self.assertTrue(err["Error"]["Message"], err)
        self.assertTrue(err["ResponseMetadata"]["RequestId"], err)


class Sqs(Base):
    def setUp(self):
        super().setUp()
        self.sqs = client(self.server, "sqs")

    def test_send_message_standard(self):
        q = self.server.queue("std")
        r = self.sqs.send_message(
            QueueUrl=q, MessageBody="hello",
            MessageAttributes={"ce-id": {"DataType": "String", "StringValue": "e-std-1"}})
        self.assertEqual(r["ResponseMetadata"]["HTTPStatusCode"], 200)
        self.assertTrue(r["MessageId"])
        self.assertEqual(r["MD5OfMessageBody"], md5("hello"))
        self.assertNotIn("SequenceNumber", r)
        stored = self.server.messages(q)
        self.assertEqual([m["message_id"] for m in stored], [r["MessageId"]])
        self.assertEqual(stored[0]["attributes"], {"ce-id": "e-std-1"})

    def test_send_message_fifo_sequence_and_deduplication(self):
        q = self.server.queue("orders.fifo")
        first = self.sqs.send_message(QueueUrl=q, MessageBody="a", MessageGroupId="s1",
                                      MessageDeduplicationId="d-1")
        self.assertTrue(first["MessageId"])
        self.assertTrue(first["SequenceNumber"].isdigit())
        again = self.sqs.send_message(QueueUrl=q, MessageBody="a", MessageGroupId="s1",
                                      MessageDeduplicationId="d-1")
        self.assertEqual(again["MessageId"], first["MessageId"])
        self.assertEqual(len(self.server.messages(q)), 1)

    def test_fifo_without_group_id_is_refused(self):
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message(QueueUrl=self.server.queue("nogroup.fifo"),
                                  MessageBody="x", MessageDeduplicationId="d")
        self.assertClientError(ctx, "MissingParameter", 400)

    def test_standard_queue_refuses_fifo_ids(self):
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message(QueueUrl=self.server.queue("plain"), MessageBody="x",
                                  MessageGroupId="g")
        self.assertClientError(ctx, "InvalidParameterValue", 400)

    def test_send_message_batch_entries_succeed_and_fail(self):
        q = self.server.queue("batch.fifo")
        self.server.fail("ev-perm", "InvalidParameterValue", True)
        self.server.fail("ev-temp", "InternalError", False)
        entries = [
            {"Id": "m1", "MessageBody": "ev-ok-1", "MessageGroupId": "g1",
             "MessageDeduplicationId": "d1"},
            {"Id": "m2", "MessageBody": "ev-perm", "MessageGroupId": "g2",
             "MessageDeduplicationId": "d2"},
            {"Id": "m3", "MessageBody": "ev-temp", "MessageGroupId": "g3",
             "MessageDeduplicationId": "d3"},
            {"Id": "m4", "MessageBody": "ev-ok-4", "MessageGroupId": "g4",
             "MessageDeduplicationId": "d4"},
        ]
        r = self.sqs.send_message_batch(QueueUrl=q, Entries=entries)
        ok = {e["Id"]: e for e in r["Successful"]}
        self.assertEqual(sorted(ok), ["m1", "m4"])
        for i, body in (("m1", "ev-ok-1"), ("m4", "ev-ok-4")):
            self.assertTrue(ok[i]["MessageId"])
            self.assertEqual(ok[i]["MD5OfMessageBody"], md5(body))
            self.assertTrue(ok[i]["SequenceNumber"].isdigit())
        failed = {e["Id"]: e for e in r["Failed"]}
        self.assertEqual(sorted(failed), ["m2", "m3"])
        self.assertIs(failed["m2"]["SenderFault"], True)
        self.assertEqual(failed["m2"]["Code"], "InvalidParameterValue")
        self.assertIs(failed["m3"]["SenderFault"], False)
        self.assertEqual(failed["m3"]["Code"], "InternalError")
        self.assertTrue(failed["m3"]["Message"])
        self.assertEqual([m["body"] for m in self.server.messages(q)],
                         ["ev-ok-1", "ev-ok-4"])

    def test_batch_rules(self):
        q = self.server.queue("rules")
        eleven = [{"Id": "m%d" % i, "MessageBody": "b"} for i in range(11)]
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message_batch(QueueUrl=q, Entries=eleven)
        self.assertClientError(ctx, "TooManyEntriesInBatchRequest", 400)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message_batch(QueueUrl=q, Entries=[
                {"Id": "same", "MessageBody": "a"}, {"Id": "same", "MessageBody": "b"}])
        self.assertClientError(ctx, "BatchEntryIdsNotDistinct", 400)
        big = "x" * 200000
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message_batch(QueueUrl=q, Entries=[
                {"Id": "a", "MessageBody": big}, {"Id": "b", "MessageBody": big}])
        self.assertClientError(ctx, "BatchRequestTooLong", 400)

    def test_oversized_message_is_refused(self):
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message(QueueUrl=self.server.queue("big"),
                                  MessageBody="x" * (262144 + 1))
        self.assertClientError(ctx, "InvalidParameterValue", 400)

    def test_injected_receiver_error_is_a_receiver_fault(self):
        self.server.fail("ev-500", "InternalError", False)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message(QueueUrl=self.server.queue("e500"), MessageBody="ev-500")
        self.assertClientError(ctx, "InternalError", 500, sender=False)

    def test_throttling_is_retried_by_botocore(self):
        # SQS's RequestThrottled (HTTP 400, as the SQS API reference lists
        # it) is a throttling error to botocore's "standard" retry mode, the
        # AWS CLI v2's; its older "legacy" mode only knows it with HTTP 403.
        self.server.cue(throttle=2)
        sqs = client(self.server, "sqs", retries=4, mode="standard")
        r = sqs.send_message(QueueUrl=self.server.queue("throttled"), MessageBody="t")
        self.assertTrue(r["MessageId"])
        self.assertEqual(r["ResponseMetadata"]["RetryAttempts"], 2)

    def test_wrong_secret_is_refused_with_signature_does_not_match(self):
        bad = client(self.server, "sqs", secret="not/the/secret")
        with self.assertRaises(ClientError) as ctx:
            bad.send_message(QueueUrl=self.server.queue("auth"), MessageBody="x")
        self.assertClientError(ctx, "SignatureDoesNotMatch", 403)
        with self.assertRaises(ClientError) as ctx:
            bad.send_message_batch(QueueUrl=self.server.queue("auth"),
                                   Entries=[{"Id": "a", "MessageBody": "x"}])
        self.assertClientError(ctx, "SignatureDoesNotMatch", 403)
        self.assertEqual(self.server.messages(self.server.queue("auth")), [])

    def test_unknown_access_key_is_refused(self):
        other = client(self.server, "sqs", key="AKIDSOMEONEELSE")
        with self.assertRaises(ClientError) as ctx:
            other.send_message(QueueUrl=self.server.queue("auth"), MessageBody="x")
        self.assertClientError(ctx, "InvalidClientTokenId", 403)

    def test_wrong_region_is_refused(self):
        other = client(self.server, "sqs", region="eu-west-1")
        with self.assertRaises(ClientError) as ctx:
            other.send_message(QueueUrl=self.server.queue("auth"), MessageBody="x")
        self.assertClientError(ctx, "SignatureDoesNotMatch", 403)


class SqsConsuming(Base):
    """The consuming side of a queue: receive, delete, change visibility,
    redelivery, FIFO group locking, as botocore's client reads them."""

    def setUp(self):
        super().setUp()
        self.sqs = client(self.server, "sqs")

    def create(self, name, **attributes):
        attrs = {k: str(v) for k, v in attributes.items()}
        if name.endswith(".fifo"):
            attrs.setdefault("FifoQueue", "true")
        return self.sqs.create_queue(QueueName=name, Attributes=attrs)["QueueUrl"]

    def receive(self, q, n=10, wait=0, visibility=None):
        args = dict(QueueUrl=q, MaxNumberOfMessages=n, WaitTimeSeconds=wait,
                    AttributeNames=["All"], MessageAttributeNames=["All"])
        if visibility is not None:
            args["VisibilityTimeout"] = visibility
        return self.sqs.receive_message(**args).get("Messages", [])

    def test_create_queue_and_attributes(self):
        q = self.create("consume-attrs", VisibilityTimeout=7)
        self.assertEqual(q, self.server.queue("consume-attrs"))
        self.assertEqual(self.sqs.get_queue_url(QueueName="consume-attrs")["QueueUrl"], q)
        self.sqs.send_message(QueueUrl=q, MessageBody="a")
        a = self.sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["All"])["Attributes"]
        self.assertEqual(a["VisibilityTimeout"], "7")
        self.assertEqual(a["ApproximateNumberOfMessages"], "1")
        self.assertEqual(a["ApproximateNumberOfMessagesNotVisible"], "0")
        self.assertNotIn("FifoQueue", a)
        self.receive(q)
        a = self.sqs.get_queue_attributes(
            QueueUrl=q, AttributeNames=["ApproximateNumberOfMessages",
                                        "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
        self.assertEqual(a, {"ApproximateNumberOfMessages": "0",
                             "ApproximateNumberOfMessagesNotVisible": "1"})
        with self.assertRaises(ClientError) as ctx:
            self.sqs.create_queue(QueueName="plain.fifo")
        self.assertClientError(ctx, "InvalidParameterValue", 400)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.create_queue(QueueName="consume-attrs",
                                  Attributes={"VisibilityTimeout": "9"})
        self.assertClientError(ctx, "QueueAlreadyExists", 400)

    def test_a_queue_that_does_not_exist(self):
        with self.assertRaises(ClientError) as ctx:
            self.sqs.receive_message(QueueUrl=self.server.queue("never-made"))
        self.assertClientError(ctx, "AWS.SimpleQueueService.NonExistentQueue", 400)
        with self.assertRaises(self.sqs.exceptions.QueueDoesNotExist):
            self.sqs.get_queue_attributes(QueueUrl=self.server.queue("never-made"))

    def test_receive_returns_body_attributes_and_checksums(self):
        q = self.create("consume-recv")
        body = 'a <b> & "c"\r\nd'
        self.sqs.send_message(QueueUrl=q, MessageBody=body, MessageAttributes={
            "ce-id": {"DataType": "String", "StringValue": "e-1"},
            "ce-type": {"DataType": "String", "StringValue": "order.placed"},
            "other": {"DataType": "String", "StringValue": "x"}})
        r = self.sqs.receive_message(QueueUrl=q, AttributeNames=["All"],
                                     MessageAttributeNames=["ce-id", "ce-type"])
        [m] = r["Messages"]
        self.assertEqual(m["Body"], body)
        self.assertEqual(m["MD5OfBody"], md5(body))
        self.assertEqual(sorted(m["MessageAttributes"]), ["ce-id", "ce-type"])
        self.assertEqual(m["MessageAttributes"]["ce-id"],
                         {"StringValue": "e-1", "DataType": "String"})
        # AWS's MD5OfMessageAttributes (names sorted, length-prefixed).
        import struct
        data = b""
        for name, value in (("ce-id", "e-1"), ("ce-type", "order.placed")):
            for part in (name, "String"):
                data += struct.pack(">I", len(part)) + part.encode()
            data += b"\x01" + struct.pack(">I", len(value)) + value.encode()
        self.assertEqual(m["MD5OfMessageAttributes"], hashlib.md5(data).hexdigest())
        self.assertEqual(m["Attributes"]["ApproximateReceiveCount"], "1")
        self.assertTrue(m["Attributes"]["SentTimestamp"].isdigit())
        self.assertNotIn("MessageGroupId", m["Attributes"])
        self.assertTrue(m["ReceiptHandle"])
        # In flight: nothing more to receive.
        self.assertEqual(self.receive(q), [])

    def test_receive_bounds(self):
        q = self.create("consume-bounds")
        for args in ({"MaxNumberOfMessages": 11}, {"MaxNumberOfMessages": 0},
                     {"WaitTimeSeconds": 21}, {"VisibilityTimeout": 43201}):
            with self.assertRaises(ClientError) as ctx:
                self.sqs.receive_message(QueueUrl=q, **args)
            self.assertClientError(ctx, "InvalidParameterValue", 400)

    def test_max_number_and_order_of_a_standard_queue_here(self):
        q = self.create("consume-max")
        for i in range(15):
            self.sqs.send_message(QueueUrl=q, MessageBody="m%d" % i)
        first = self.receive(q, n=10)
        self.assertEqual(len(first), 10)
        self.assertEqual(len(self.receive(q, n=10)), 5)
        self.assertEqual(self.receive(q, n=10), [])

    def test_long_poll_returns_as_soon_as_a_message_is_visible(self):
        q = self.create("consume-long")
        import threading
        sender = client(self.server, "sqs")
        timer = threading.Timer(0.5, lambda: sender.send_message(QueueUrl=q,
                                                                 MessageBody="late"))
        started = time.monotonic()
        timer.start()
        got = self.receive(q, wait=10)
        took = time.monotonic() - started
        timer.join()
        self.assertEqual([m["Body"] for m in got], ["late"])
        self.assertLess(took, 5)
        # Nothing comes: the long poll ends after WaitTimeSeconds.
        started = time.monotonic()
        self.assertEqual(self.receive(q, wait=1), [])
        self.assertGreaterEqual(time.monotonic() - started, 0.9)

    def test_delete_and_delete_batch(self):
        q = self.create("consume-delete")
        for i in range(4):
            self.sqs.send_message(QueueUrl=q, MessageBody="d%d" % i)
        got = self.receive(q, visibility=0)  # visible again at once
        self.assertEqual(len(got), 4)
        got = self.receive(q)
        self.sqs.delete_message(QueueUrl=q, ReceiptHandle=got[0]["ReceiptHandle"])
        r = self.sqs.delete_message_batch(QueueUrl=q, Entries=[
            {"Id": "a", "ReceiptHandle": got[1]["ReceiptHandle"]},
            {"Id": "b", "ReceiptHandle": got[2]["ReceiptHandle"]},
            {"Id": "c", "ReceiptHandle": "not-a-handle"}])
        self.assertEqual(sorted(e["Id"] for e in r["Successful"]), ["a", "b"])
        [failed] = r["Failed"]
        self.assertEqual(failed["Id"], "c")
        self.assertEqual(failed["Code"], "ReceiptHandleIsInvalid")
        self.assertIs(failed["SenderFault"], True)
        self.assertEqual([m["body"] for m in self.server.messages(q)], ["d3"])
        with self.assertRaises(ClientError) as ctx:
            self.sqs.delete_message(QueueUrl=q, ReceiptHandle="bogus")
        self.assertClientError(ctx, "ReceiptHandleIsInvalid", 400)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.delete_message_batch(QueueUrl=q, Entries=[])
        self.assertClientError(ctx, "EmptyBatchRequest", 400)
        # Deleting twice is fine.
        self.sqs.delete_message(QueueUrl=q, ReceiptHandle=got[0]["ReceiptHandle"])

    def test_visibility_timeout_redelivers_and_a_stale_handle_deletes_nothing(self):
        q = self.create("consume-redeliver")
        self.sqs.send_message(QueueUrl=q, MessageBody="r")
        [first] = self.receive(q, visibility=1)
        self.assertEqual(self.receive(q), [])
        # Comes back once the visibility timeout ended (a long poll waits
        # for it), received a second time, with a new handle.
        [again] = self.receive(q, wait=5)
        self.assertEqual(again["MessageId"], first["MessageId"])
        self.assertEqual(again["Attributes"]["ApproximateReceiveCount"], "2")
        self.assertNotEqual(again["ReceiptHandle"], first["ReceiptHandle"])
        # The first consumer's late delete succeeds and deletes nothing.
        self.sqs.delete_message(QueueUrl=q, ReceiptHandle=first["ReceiptHandle"])
        self.assertEqual(len(self.server.messages(q)), 1)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.change_message_visibility(QueueUrl=q,
                                               ReceiptHandle=first["ReceiptHandle"],
                                               VisibilityTimeout=10)
        self.assertClientError(ctx, "InvalidParameterValue", 400)
        self.sqs.delete_message(QueueUrl=q, ReceiptHandle=again["ReceiptHandle"])
        self.assertEqual(self.server.messages(q), [])

    def test_change_visibility_zero_extends_and_batch(self):
        q = self.create("consume-visibility")
        for i in range(3):
            self.sqs.send_message(QueueUrl=q, MessageBody="v%d" % i)
        got = self.receive(q, visibility=30)
        self.assertEqual(len(got), 3)
        # 0: visible at once.
        self.sqs.change_message_visibility(QueueUrl=q, ReceiptHandle=got[0]["ReceiptHandle"],
                                           VisibilityTimeout=0)
        [back] = self.receive(q, visibility=1)
        self.assertEqual(back["Body"], "v0")
        self.assertEqual(back["Attributes"]["ApproximateReceiveCount"], "2")
        r = self.sqs.change_message_visibility_batch(QueueUrl=q, Entries=[
            {"Id": "x", "ReceiptHandle": got[1]["ReceiptHandle"], "VisibilityTimeout": 0},
            {"Id": "y", "ReceiptHandle": got[2]["ReceiptHandle"], "VisibilityTimeout": 60},
            {"Id": "z", "ReceiptHandle": got[0]["ReceiptHandle"], "VisibilityTimeout": 0}])
        self.assertEqual(sorted(e["Id"] for e in r["Successful"]), ["x", "y"])
        self.assertEqual([(e["Id"], e["Code"]) for e in r["Failed"]],
                         [("z", "InvalidParameterValue")])
        self.assertEqual([m["Body"] for m in self.receive(q)], ["v1"])
        # v0's visibility (1 s) ends: the message is not in flight any more.
        time.sleep(1.1)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.change_message_visibility(QueueUrl=q,
                                               ReceiptHandle=back["ReceiptHandle"],
                                               VisibilityTimeout=5)
        self.assertClientError(ctx, "MessageNotInflight", 400)
        with self.assertRaises(ClientError) as ctx:
            self.sqs.change_message_visibility(QueueUrl=q, ReceiptHandle=got[2]["ReceiptHandle"],
                                               VisibilityTimeout=43201)
        self.assertClientError(ctx, "InvalidParameterValue", 400)

    def test_fifo_group_is_locked_while_a_message_is_in_flight(self):
        q = self.create("consume-groups.fifo")
        for i in range(3):
            for g in ("a", "b"):
                self.sqs.send_message(QueueUrl=q, MessageBody="%s%d" % (g, i),
                                      MessageGroupId=g,
                                      MessageDeduplicationId="%s-%d" % (g, i))
        # As many of one group as there are, oldest group first.
        first = self.receive(q, n=2)
        self.assertEqual([m["Body"] for m in first], ["a0", "a1"])
        for m in first:
            self.assertEqual(m["Attributes"]["MessageGroupId"], "a")
            self.assertTrue(m["Attributes"]["SequenceNumber"].isdigit())
            self.assertEqual(m["Attributes"]["MessageDeduplicationId"],
                             "a-%s" % m["Body"][1])
        [b0] = self.receive(q, n=1)
        self.assertEqual(b0["Body"], "b0")
        # Both groups have messages in flight: nothing else is handed out,
        # not even after one of a's is deleted.
        self.assertEqual(self.receive(q), [])
        self.sqs.delete_message(QueueUrl=q, ReceiptHandle=first[0]["ReceiptHandle"])
        self.assertEqual(self.receive(q), [])
        self.sqs.delete_message(QueueUrl=q, ReceiptHandle=first[1]["ReceiptHandle"])
        # Group a is free: its next message; b stays locked.
        self.assertEqual([m["Body"] for m in self.receive(q)], ["a2"])
        # b0 given back: b0 again first, then b1, b2, in order.
        self.sqs.change_message_visibility(QueueUrl=q, ReceiptHandle=b0["ReceiptHandle"],
                                           VisibilityTimeout=0)
        again = self.receive(q)
        self.assertEqual([m["Body"] for m in again], ["b0", "b1", "b2"])
        self.assertEqual(again[0]["Attributes"]["ApproximateReceiveCount"], "2")

    def test_fifo_redelivery_keeps_the_group_order(self):
        q = self.create("consume-fifo-redeliver.fifo")
        for i in range(3):
            self.sqs.send_message(QueueUrl=q, MessageBody="m%d" % i, MessageGroupId="g",
                                  MessageDeduplicationId="d%d" % i)
        got = self.receive(q, n=2, visibility=1)
        self.assertEqual([m["Body"] for m in got], ["m0", "m1"])
        self.assertEqual(self.receive(q), [])  # m2 waits behind its group
        again = self.receive(q, wait=5)
        self.assertEqual([m["Body"] for m in again], ["m0", "m1", "m2"])

    def test_fifo_content_based_deduplication(self):
        q = self.create("consume-cbd.fifo", ContentBasedDeduplication="true")
        a = self.sqs.send_message(QueueUrl=q, MessageBody="same", MessageGroupId="g")
        b = self.sqs.send_message(QueueUrl=q, MessageBody="same", MessageGroupId="g")
        self.assertEqual(a["MessageId"], b["MessageId"])
        self.sqs.send_message(QueueUrl=q, MessageBody="other", MessageGroupId="g")
        self.assertEqual([m["Body"] for m in self.receive(q)], ["same", "other"])
        without = self.create("consume-nocbd.fifo")
        with self.assertRaises(ClientError) as ctx:
            self.sqs.send_message(QueueUrl=without, MessageBody="x", MessageGroupId="g")
        self.assertClientError(ctx, "InvalidParameterValue", 400)


class Sns(Base):
    def setUp(self):
        super().setUp()
        self.sns = client(self.server, "sns")

    def test_publish_standard_and_fifo(self):
        t = self.server.topic("events")
        r = self.sns.publish(TopicArn=t, Message="hello", MessageAttributes={
            "ce-id": {"DataType": "String", "StringValue": "e-1"}})
        self.assertTrue(r["MessageId"])
        self.assertNotIn("SequenceNumber", r)
        self.assertEqual(self.server.messages(t)[0]["attributes"], {"ce-id": "e-1"})
        f = self.server.topic("events.fifo")
        r = self.sns.publish(TopicArn=f, Message="m", MessageGroupId="g",
                             MessageDeduplicationId="d")
        self.assertTrue(r["MessageId"])
        self.assertTrue(r["SequenceNumber"].isdigit())
        again = self.sns.publish(TopicArn=f, Message="m", MessageGroupId="g",
                                 MessageDeduplicationId="d")
        self.assertEqual(again["MessageId"], r["MessageId"])
        self.assertEqual(len(self.server.messages(f)), 1)

    def test_publish_batch_entries_succeed_and_fail(self):
        t = self.server.topic("batch.fifo")
        self.server.fail("ev-perm", "InvalidParameter", True)
        self.server.fail("ev-temp", "KMSThrottling", False)
        entries = [
            {"Id": "m1", "Message": "ev-ok-1", "MessageGroupId": "g1",
             "MessageDeduplicationId": "d1"},
            {"Id": "m2", "Message": "ev-perm", "MessageGroupId": "g2",
             "MessageDeduplicationId": "d2"},
            {"Id": "m3", "Message": "ev-temp", "MessageGroupId": "g3",
             "MessageDeduplicationId": "d3"},
        ]
        r = self.sns.publish_batch(TopicArn=t, PublishBatchRequestEntries=entries)
        self.assertEqual([e["Id"] for e in r["Successful"]], ["m1"])
        self.assertTrue(r["Successful"][0]["MessageId"])
        self.assertTrue(r["Successful"][0]["SequenceNumber"].isdigit())
        failed = {e["Id"]: e for e in r["Failed"]}
        self.assertEqual(sorted(failed), ["m2", "m3"])
        self.assertIs(failed["m2"]["SenderFault"], True)
        self.assertEqual(failed["m2"]["Code"], "InvalidParameter")
        self.assertIs(failed["m3"]["SenderFault"], False)
        self.assertEqual(failed["m3"]["Code"], "KMSThrottling")
        self.assertEqual([m["body"] for m in self.server.messages(t)], ["ev-ok-1"])

    def test_publish_batch_standard_and_rules(self):
        t = self.server.topic("plain")
        r = self.sns.publish_batch(TopicArn=t, PublishBatchRequestEntries=[
            {"Id": "a", "Message": "1"}, {"Id": "b", "Message": "2"}])
        self.assertEqual(sorted(e["Id"] for e in r["Successful"]), ["a", "b"])
        self.assertEqual(r["Failed"], [])
        with self.assertRaises(ClientError) as ctx:
            self.sns.publish_batch(TopicArn=t, PublishBatchRequestEntries=[
                {"Id": "m%d" % i, "Message": "x"} for i in range(11)])
        self.assertClientError(ctx, "TooManyEntriesInBatchRequest", 400)
        with self.assertRaises(ClientError) as ctx:
            self.sns.publish(TopicArn=self.server.topic("t.fifo"), Message="x",
                             MessageDeduplicationId="d")
        self.assertClientError(ctx, "MissingParameter", 400)

    def test_throttling_is_retried_by_botocore(self):
        self.server.cue(throttle=1)
        sns = client(self.server, "sns", retries=4)
        r = sns.publish(TopicArn=self.server.topic("throttled"), Message="t")
        self.assertTrue(r["MessageId"])
        self.assertEqual(r["ResponseMetadata"]["RetryAttempts"], 1)

    def test_wrong_secret_is_refused_with_signature_does_not_match(self):
        bad = client(self.server, "sns", secret="not/the/secret")
        t = self.server.topic("auth")
        with self.assertRaises(ClientError) as ctx:
            bad.publish(TopicArn=t, Message="x")
        self.assertClientError(ctx, "SignatureDoesNotMatch", 403)
        with self.assertRaises(ClientError) as ctx:
            bad.publish_batch(TopicArn=t, PublishBatchRequestEntries=[
                {"Id": "a", "Message": "x"}])
        self.assertClientError(ctx, "SignatureDoesNotMatch", 403)
        self.assertEqual(self.server.messages(t), [])


class SessionToken(Base):
    """Temporary credentials: the token must be sent (and signed)."""
    server_args = ("--session-token", "herald-session-token")

    def test_token_accepted_and_missing_token_refused(self):
        sqs = client(self.server, "sqs", token="herald-session-token")
        r = sqs.send_message(QueueUrl=self.server.queue("tok"), MessageBody="x")
        self.assertTrue(r["MessageId"])
        sns = client(self.server, "sns", token="herald-session-token")
        self.assertTrue(sns.publish(TopicArn=self.server.topic("tok"),
                                    Message="x")["MessageId"])
        for token in (None, "another-token"):
            with self.assertRaises(ClientError) as ctx:
                client(self.server, "sqs", token=token).send_message(
                    QueueUrl=self.server.queue("tok"), MessageBody="x")
            self.assertClientError(ctx, "InvalidClientTokenId", 403)


if __name__ == "__main__":
    unittest.main(verbosity=2)
