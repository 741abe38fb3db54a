#!/usr/bin/python3
"""A small SQS and SNS server speaking AWS's Query protocol, for herald's tests.

It implements SendMessage, SendMessageBatch, Publish and PublishBatch with
AWS's documented rules, and VERIFIES the SigV4 signature of every request
with botocore (Debian python3-botocore: the signer of the AWS CLI and SDKs,
which nobody here wrote): the signature is recomputed over the received
request (method, path, the headers named in SignedHeaders, the body's
SHA-256, the x-amz-date and credential scope) and compared; a bad one is
refused as AWS refuses it (403, SignatureDoesNotMatch, AWS's error XML).

Rules implemented (from the SQS and SNS API references):
  - at most 10 entries per batch (TooManyEntriesInBatchRequest), at least 1
    (EmptyBatchRequest), entry ids distinct (BatchEntryIdsNotDistinct) and
    of [A-Za-z0-9_-]{1,80} (InvalidBatchEntryId);
  - size limit (default 256 KiB) per message and per batch, body plus
    message attributes (name, data type, value); at most 10 attributes, no
    empty value;
  - FIFO queues and topics (names ending in .fifo) require MessageGroupId
    and (no content-based deduplication here) MessageDeduplicationId; a
    message whose deduplication id was accepted in the last 5 minutes is
    answered as sent but not stored again; standard ones refuse both ids;
  - queues and topics exist once named (created on first use).
Cues (POST /_control/cue, JSON) make it fail on purpose:
  {"fail": {"id": EVENT_ID, "code": "...", "sender_fault": true|false,
            "times": N (-1 = until cleared), "mode": "entry"|"hang"|
            "cut-before-status"|"cut-in-status"|"cut-in-headers"|
            "cut-after-headers"|"cut-in-body"|"cut-in-chunked"}}
      an entry whose message carries EVENT_ID (its ce-id attribute or its
      body) fails: per entry in a batch (SenderFault as given), as the
      whole answer of a single SendMessage/Publish, or the answer hangs or
      is cut (then the connection is closed): before the status line, in
      it ("HTTP/1.1 20"), in the headers, after them (a Content-Length and
      no body), in the body (half of it), or in a chunked body (no last
      chunk);
  {"throttle": N}   the next N requests are answered 400 Throttling;
  {"slow_ms": N}    every answer waits N ms;
  {"clear": true}   drops every cue.
Control: GET /_control/messages?target=QUEUE_URL_OR_ARN -> JSON list of the
stored messages in order; GET /_control/stats -> counters (requests,
refused signatures, the most requests in progress at once); POST
/_control/reset drops messages, dedupe windows and cues.

Usage: aws_conformance.py --port 0 --ready FILE [--region R]
       [--access-key K --secret-key S [--session-token T]] [--max-size N]
The port chosen is written to FILE once it listens (127.0.0.1 only).
"""
import argparse
import hashlib
import hmac
import http.server
import json
import os
import re
import socketserver
import sys
import threading
import time
import uuid
from urllib.parse import parse_qsl, urlsplit, parse_qs

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

SQS_NS = "http://queue.amazonaws.com/doc/2012-11-05/"
SNS_NS = "http://sns.amazonaws.com/doc/2010-03-31/"
DEDUPE_WINDOW_S = 300
ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# XML 1.0 characters, as SQS allows in a body.
BAD_CHARS = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_escape(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&quot;"))


class AwsError(Exception):
    def __init__(self, status, code, message, sender=True):
        super().__init__(message)
        self.status, self.code, self.message, self.sender = status, code, message, sender


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.keys = {}  # access key -> (secret, token or None)
        if args.access_key:
            self.keys[args.access_key] = (args.secret_key, args.session_token)
        self.reset()
        self.requests = 0
        self.signature_failures = 0
        self.active = 0
        self.max_active = 0

    def reset(self):
        self.messages = {}  # target -> [dict]
        self.dedupe = {}  # (target, dedupe id) -> (time, message id)
        self.fail = {}  # event id -> cue
        self.throttle = 0
        self.slow_ms = 0
        self.sequence = 0


STATE = None


def verify_signature(handler, body, service):
    """Recomputes the request's SigV4 signature with botocore."""
    h = handler.headers
    auth = h.get("Authorization", "")
    m = re.match(r"^AWS4-HMAC-SHA256 Credential=([^,]+), ?SignedHeaders=([^,]+), ?"
                 r"Signature=([0-9a-f]{64})$", auth)
    if not m:
        raise AwsError(403, "IncompleteSignature" if auth else "MissingAuthenticationToken",
                       "Request must contain a signature that conforms to AWS standards"
                       if auth else "Request is missing Authentication Token")
    credential, signed, signature = m.groups()
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request":
        raise AwsError(403, "IncompleteSignature", "Credential is malformed: " + credential)
    key, day, region, svc, _ = parts
    if key not in STATE.keys:
        raise AwsError(403, "InvalidClientTokenId",
                       "The security token included in the request is invalid.")
    secret, token = STATE.keys[key]
    if region != STATE.args.region:
        raise AwsError(403, "SignatureDoesNotMatch",
                       "Credential should be scoped to a valid region, not '%s'." % region)
    if svc != service:
        raise AwsError(403, "SignatureDoesNotMatch",
                       "Credential should be scoped to correct service: '%s'." % service)
    amz_date = h.get("X-Amz-Date", "")
    try:
        when = time.mktime(time.strptime(amz_date, "%Y%m%dT%H%M%SZ")) - time.timezone
    except ValueError:
        raise AwsError(403, "IncompleteSignature", "X-Amz-Date is missing or malformed")
    if abs(time.time() - when) > 15 * 60:
        raise AwsError(403, "SignatureDoesNotMatch", "Signature expired: " + amz_date)
    if day != amz_date[:8]:
        raise AwsError(403, "SignatureDoesNotMatch", "Credential date does not match X-Amz-Date")
    names = signed.split(";")
    if "host" not in names or "x-amz-date" not in names:
        raise AwsError(403, "SignatureDoesNotMatch", "host and x-amz-date must be signed")
    sent_token = h.get("X-Amz-Security-Token")
    if token is not None:
        if sent_token != token:
            raise AwsError(403, "InvalidClientTokenId",
                           "The security token included in the request is invalid.")
        if "x-amz-security-token" not in names:
            raise AwsError(403, "SignatureDoesNotMatch",
                           "X-Amz-Security-Token must be signed")
    elif sent_token is not None:
        raise AwsError(403, "InvalidClientTokenId",
                       "The security token included in the request is invalid.")
    headers = {}
    for name in names:
        values = h.get_all(name)
        if values is None:
            raise AwsError(403, "SignatureDoesNotMatch",
                           "Signed header %s is missing" % name)
        headers[name] = ",".join(values)
    url = "http://" + h.get("Host", "") + handler.path
    request = AWSRequest(method=handler.command, url=url, data=body, headers=headers)
    request.context["timestamp"] = amz_date
    signer = SigV4Auth(Credentials(key, secret, token), service, region)
    canonical = signer.canonical_request(request)
    expected = signer.signature(signer.string_to_sign(request, canonical), request)
    if not hmac.compare_digest(expected, signature):
        raise AwsError(403, "SignatureDoesNotMatch",
                       "The request signature we calculated does not match the signature "
                       "you provided. Check your AWS Secret Access Key and signing method. "
                       "The Canonical String for this request should have been\n'%s'"
                       % canonical)


def attributes_of(params, prefix, sqs):
    """The String message attributes of one message: [(name, value)]."""
    out = []
    n = 1
    while True:
        p = "%s%s%d." % (prefix, "MessageAttribute." if sqs else "MessageAttributes.entry.", n)
        if p + "Name" not in params:
            return out
        name = params[p + "Name"]
        dtype = params.get(p + "Value.DataType", "")
        value = params.get(p + "Value.StringValue")
        if not dtype:
            raise AwsError(400, "InvalidParameterValue",
                           "The message attribute '%s' must contain non-empty message "
                           "attribute type." % name)
        if value is None or value == "":
            raise AwsError(400, "InvalidParameterValue",
                           "The message attribute '%s' must contain non-empty message "
                           "attribute value." % name)
        out.append((name, dtype, value))
        n += 1


def message_of(params, prefix, sqs, fifo):
    body = params.get(prefix + ("MessageBody" if sqs else "Message"))
    if body is None or body == "":
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter %s." %
                       ("MessageBody" if sqs else "Message"))
    if BAD_CHARS.search(body):
        raise AwsError(400, "InvalidMessageContents" if sqs else "InvalidParameter",
                       "Invalid binary character in the message body")
    attrs = attributes_of(params, prefix, sqs)
    if len(attrs) > 10:
        raise AwsError(400, "InvalidParameterValue",
                       "Number of message attributes [%d] exceeds the allowed maximum [10]."
                       % len(attrs))
    group = params.get(prefix + "MessageGroupId")
    dedupe = params.get(prefix + "MessageDeduplicationId")
    if fifo:
        if not group:
            raise AwsError(400, "MissingParameter",
                           "The request must contain the parameter MessageGroupId.")
        if not dedupe:
            raise AwsError(400, "InvalidParameterValue",
                           "The queue should either have ContentBasedDeduplication enabled "
                           "or MessageDeduplicationId provided explicitly")
        for what, v in (("MessageGroupId", group), ("MessageDeduplicationId", dedupe)):
            if len(v) > 128 or re.search(r"[^\x21-\x7e]", v):
                raise AwsError(400, "InvalidParameterValue",
                               "Value %s for parameter %s is invalid." % (v, what))
    elif group or dedupe:
        raise AwsError(400, "InvalidParameterValue",
                       "The request include parameter that is not valid for this queue type")
    size = len(body.encode()) + sum(len(n.encode()) + len(t.encode()) + len(v.encode())
                                   for n, t, v in attrs)
    if size > STATE.args.max_size:
        raise AwsError(400, "InvalidParameterValue",
                       "One or more parameters are invalid. Reason: Message must be "
                       "shorter than %d bytes." % STATE.args.max_size)
    event_id = next((v for n, _, v in attrs if n == "ce-id"), None)
    return {"body": body, "attributes": {n: v for n, _, v in attrs},
            "group": group, "dedupe": dedupe, "event_id": event_id, "size": size}


def cue_for(msg):
    """The fail cue matching a message (by its ce-id or body), used up once."""
    for event_id, cue in list(STATE.fail.items()):
        if msg["event_id"] == event_id or event_id in msg["body"]:
            if cue.get("times", -1) == 0:
                continue
            if cue.get("times", -1) > 0:
                cue["times"] -= 1
            return cue
    return None


def store(target, msg):
    """Stores one accepted message (FIFO: unless deduplicated); its id."""
    now = time.time()
    if msg["dedupe"]:
        key = (target, msg["dedupe"])
        seen = STATE.dedupe.get(key)
        if seen and now - seen[0] < DEDUPE_WINDOW_S:
            return seen[1], seen[2]
    message_id = str(uuid.uuid4())
    STATE.sequence += 1
    seq = "%020d" % STATE.sequence
    record = dict(msg, message_id=message_id, sequence=seq)
    record.pop("size", None)
    STATE.messages.setdefault(target, []).append(record)
    if msg["dedupe"]:
        STATE.dedupe[(target, msg["dedupe"])] = (now, message_id, seq)
    return message_id, seq


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An answer is written as headers, then body: with Nagle's algorithm on,
    # the body waits for the client's delayed ACK of the headers (40 ms), and
    # one connection answered about 22 requests/s whatever the load.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):  # quiet
        pass

    def send(self, status, body, content_type="text/xml"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        self.end_headers()
        self.wfile.write(data)

    def error(self, ns, e):
        kind = "Sender" if e.sender else "Receiver"
        self.send(e.status,
                  '<?xml version="1.0"?><ErrorResponse xmlns="%s"><Error><Type>%s</Type>'
                  "<Code>%s</Code><Message>%s</Message><Detail/></Error>"
                  "<RequestId>%s</RequestId></ErrorResponse>"
                  % (ns, kind, xml_escape(e.code), xml_escape(e.message), uuid.uuid4()))

    def do_GET(self):
        url = urlsplit(self.path)
        q = parse_qs(url.query)
        with STATE.lock:
            if url.path == "/_control/messages":
                target = q.get("target", [""])[0]
                return self.send(200, json.dumps(STATE.messages.get(target, [])),
                                 "application/json")
            if url.path == "/_control/stats":
                return self.send(200, json.dumps({
                    "requests": STATE.requests,
                    "signature_failures": STATE.signature_failures,
                    "max_in_flight": STATE.max_active}), "application/json")
        self.send(404, "not found", "text/plain")

    def control(self, body):
        with STATE.lock:
            if self.path == "/_control/reset":
                STATE.reset()
                STATE.max_active = 0
                return self.send(200, "{}", "application/json")
            if self.path == "/_control/cue":
                cue = json.loads(body or b"{}")
                if cue.get("clear"):
                    STATE.fail.clear()
                    STATE.throttle = 0
                    STATE.slow_ms = 0
                if "fail" in cue:
                    f = cue["fail"]
                    if f.get("mode") == "ok":
                        STATE.fail.pop(f["id"], None)
                    else:
                        STATE.fail[f["id"]] = f
                if "throttle" in cue:
                    STATE.throttle = int(cue["throttle"])
                if "slow_ms" in cue:
                    STATE.slow_ms = int(cue["slow_ms"])
                if "reset_stats" in cue:
                    STATE.max_active = 0
                return self.send(200, "{}", "application/json")
        self.send(404, "not found", "text/plain")

    def do_POST(self):
        length = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(length)
        if self.path.startswith("/_control/"):
            return self.control(body)
        with STATE.lock:
            STATE.requests += 1
            STATE.active += 1
            STATE.max_active = max(STATE.max_active, STATE.active)
        try:
            self.query(body)
        finally:
            with STATE.lock:
                STATE.active -= 1

    def query(self, body):
        params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action", "")
        sqs = action in ("SendMessage", "SendMessageBatch")
        sns = action in ("Publish", "PublishBatch")
        ns = SQS_NS if sqs else SNS_NS
        if not (sqs or sns):
            return self.error(ns, AwsError(400, "InvalidAction",
                                           "The action %s is not valid for this endpoint."
                                           % action))
        try:
            verify_signature(self, body, "sqs" if sqs else "sns")
        except AwsError as e:
            with STATE.lock:
                STATE.signature_failures += 1
            return self.error(ns, e)
        slow = STATE.slow_ms
        if slow:
            time.sleep(slow / 1000.0)
        try:
            with STATE.lock:
                if STATE.throttle > 0:
                    STATE.throttle -= 1
                    raise AwsError(400, "Throttling" if sns else "RequestThrottled",
                                   "Rate exceeded")
            answer = self.act(action, params, sqs)
        except AwsError as e:
            return self.error(ns, e)
        if isinstance(answer, tuple):  # a hang or a cut
            return self.misbehave(*answer)
        self.send(200, answer)

    def misbehave(self, mode, text):
        if mode == "hang":
            time.sleep(30)
            self.close_connection = True
            return
        self.close_connection = True
        if mode == "cut-before-status":
            return
        data = text.encode()
        if mode == "cut-in-status":
            self.wfile.write(b"HTTP/1.1 20")
            return
        if mode == "cut-in-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n")
            return
        if mode == "cut-after-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                             b"Content-Length: %d\r\n\r\n" % len(data))
            return
        if mode == "cut-in-chunked":  # a chunk, and never the last one
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n"
                             % (len(data), data))
            return
        # cut-in-body: promise more than is sent.
        self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\n"
                         b"Content-Length: %d\r\n\r\n" % (len(data) + 100))
        self.wfile.write(data[: len(data) // 2])

    def act(self, action, params, sqs):
        target = params.get("QueueUrl" if sqs else "TopicArn", "")
        if not target:
            raise AwsError(400, "MissingParameter", "The request must contain the parameter %s."
                           % ("QueueUrl" if sqs else "TopicArn"))
        name = target.rstrip("/").rsplit("/" if sqs else ":", 1)[-1]
        fifo = name.endswith(".fifo")
        result = action + "Result"
        ns = SQS_NS if sqs else SNS_NS
        if action in ("SendMessage", "Publish"):
            msg = message_of(params, "", sqs, fifo)
            with STATE.lock:
                cue = cue_for(msg)
                if cue is not None:
                    mode = cue.get("mode", "entry")
                    if mode != "entry":
                        return (mode, "<x/>")
                    raise AwsError(400 if cue.get("sender_fault", False) else 500,
                                   cue.get("code", "InternalError"),
                                   cue.get("message", "injected failure"),
                                   cue.get("sender_fault", False))
                message_id, seq = store(target, msg)
            extra = "<SequenceNumber>%s</SequenceNumber>" % seq if fifo else ""
            md5 = ("<MD5OfMessageBody>%s</MD5OfMessageBody>" %
                   hashlib.md5(msg["body"].encode()).hexdigest()) if sqs else ""
            return ('<%sResponse xmlns="%s"><%s>%s<MessageId>%s</MessageId>%s</%s>'
                    "<ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>"
                    "</%sResponse>" % (action, ns, result, md5, message_id, extra, result,
                                       uuid.uuid4(), action))
        # Batches.
        prefix = "SendMessageBatchRequestEntry." if sqs else "PublishBatchRequestEntries.member."
        entries = []
        n = 1
        while prefix + "%d.Id" % n in params:
            entries.append((params[prefix + "%d.Id" % n], prefix + "%d." % n))
            n += 1
        if not entries:
            raise AwsError(400, "EmptyBatchRequest" if sqs else "EmptyBatchRequest",
                           "There should be at least one entry in the request.")
        if len(entries) > 10:
            raise AwsError(400, "TooManyEntriesInBatchRequest",
                           "Maximum number of entries per request are 10. You have sent %d."
                           % len(entries))
        ids = [i for i, _ in entries]
        if len(set(ids)) != len(ids):
            raise AwsError(400, "BatchEntryIdsNotDistinct", "Two or more batch entries in the "
                           "request have the same Id.")
        for i in ids:
            if not ENTRY_ID.match(i):
                raise AwsError(400, "InvalidBatchEntryId",
                               "A batch entry id can only contain alphanumeric characters, "
                               "hyphens and underscores. It can be at most 80 letters long.")
        ok, failed = [], []
        parsed = []
        total = 0
        for entry_id, p in entries:
            try:
                msg = message_of(params, p, sqs, fifo)
                total += msg["size"]
                parsed.append((entry_id, msg, None))
            except AwsError as e:
                parsed.append((entry_id, None, e))
        if total > STATE.args.max_size:
            raise AwsError(400, "BatchRequestTooLong" if sqs else "BatchRequestTooLong",
                           "Batch requests cannot be longer than %d bytes. You have sent %d "
                           "bytes." % (STATE.args.max_size, total))
        with STATE.lock:
            for entry_id, msg, err in parsed:
                if err is None:
                    cue = cue_for(msg)
                    if cue is not None:
                        mode = cue.get("mode", "entry")
                        if mode != "entry":
                            return (mode, "<x/>")
                        err = AwsError(400, cue.get("code", "InternalError"),
                                       cue.get("message", "injected failure"),
                                       cue.get("sender_fault", False))
                if err is not None:
                    failed.append((entry_id, err))
                    continue
                message_id, seq = store(target, msg)
                ok.append((entry_id, message_id, seq, msg))
        out = ['<%sResponse xmlns="%s"><%s>' % (action, ns, result)]
        if sqs:
            for entry_id, message_id, seq, msg in ok:
                out.append("<SendMessageBatchResultEntry><Id>%s</Id><MessageId>%s</MessageId>"
                           "<MD5OfMessageBody>%s</MD5OfMessageBody>%s"
                           "</SendMessageBatchResultEntry>"
                           % (xml_escape(entry_id), message_id,
                              hashlib.md5(msg["body"].encode()).hexdigest(),
                              "<SequenceNumber>%s</SequenceNumber>" % seq if fifo else ""))
            for entry_id, e in failed:
                out.append("<BatchResultErrorEntry><Id>%s</Id><SenderFault>%s</SenderFault>"
                           "<Code>%s</Code><Message>%s</Message></BatchResultErrorEntry>"
                           % (xml_escape(entry_id), "true" if e.sender else "false",
                              xml_escape(e.code), xml_escape(e.message)))
        else:
            out.append("<Successful>")
            for entry_id, message_id, seq, msg in ok:
                out.append("<member><Id>%s</Id><MessageId>%s</MessageId>%s</member>"
                           % (xml_escape(entry_id), message_id,
                              "<SequenceNumber>%s</SequenceNumber>" % seq if fifo else ""))
            out.append("</Successful><Failed>")
            for entry_id, e in failed:
                out.append("<member><Id>%s</Id><Code>%s</Code><Message>%s</Message>"
                           "<SenderFault>%s</SenderFault></member>"
                           % (xml_escape(entry_id), xml_escape(e.code), xml_escape(e.message),
                              "true" if e.sender else "false"))
            out.append("</Failed>")
        out.append("</%s><ResponseMetadata><RequestId>%s</RequestId></ResponseMetadata>"
                   "</%sResponse>" % (result, uuid.uuid4(), action))
        return "".join(out)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main():
    global STATE
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready", required=True)
    ap.add_argument("--region", default="us-east-1")
    ap.add_argument("--access-key", default="AKIDHERALDTEST")
    ap.add_argument("--secret-key", default="herald/test/secret+key")
    ap.add_argument("--session-token", default=None)
    ap.add_argument("--max-size", type=int, default=262144)
    args = ap.parse_args()
    STATE = State(args)
    server = Server(("127.0.0.1", args.port), Handler)
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(tmp, args.ready)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    sys.exit(main())
