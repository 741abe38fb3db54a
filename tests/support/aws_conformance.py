#!/usr/bin/python3
"""A small SQS and SNS server speaking AWS's Query protocol, for herald's tests.

It implements SendMessage, SendMessageBatch, Publish and PublishBatch, and
an SQS queue's consuming side (CreateQueue, GetQueueAttributes,
ReceiveMessage, DeleteMessage[Batch], ChangeMessageVisibility[Batch]) with
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
  - queues and topics exist once named (created on first use by a send;
    CreateQueue or POST /_control/queue create one with attributes); the
    consuming actions on a queue that does not exist answer
    AWS.SimpleQueueService.NonExistentQueue;
  - queue attributes VisibilityTimeout (default 30 s),
    ReceiveMessageWaitTimeSeconds (0), FifoQueue, ContentBasedDeduplication
    (a FIFO message without MessageDeduplicationId is deduplicated by the
    SHA-256 of its body);
  - ReceiveMessage: MaxNumberOfMessages 1-10, WaitTimeSeconds 0-20 (a long
    poll answers as soon as a message is visible), VisibilityTimeout
    0-43200; AttributeName.N / MessageSystemAttributeName.N (All,
    SenderId, SentTimestamp, ApproximateReceiveCount,
    ApproximateFirstReceiveTimestamp; FIFO: MessageGroupId,
    MessageDeduplicationId, SequenceNumber); MessageAttributeName.N (All,
    .*, PREFIX.*, names) with MD5OfMessageAttributes. Each receive makes a
    new ReceiptHandle; a message not deleted within its visibility timeout
    is received again (ApproximateReceiveCount + 1). FIFO queues hand out
    messages in send order per MessageGroupId, as many of one group as
    there are first (oldest group first), and never a group that has a
    message in flight;
  - DeleteMessage with the most recent receipt handle deletes; with an
    older one (the message was received again since) it succeeds and
    deletes nothing, as AWS documents; a handle this server never issued is
    ReceiptHandleIsInvalid;
  - ChangeMessageVisibility (0-43200 s from now, at most 12 h after the
    first receive; 0 = visible at once): MessageNotInflight when the
    message's visibility already ended, InvalidParameterValue ("Message
    does not exist or is not available for visibility timeout change") for
    an older handle or a deleted message;
  - batches of Delete/ChangeMessageVisibility: 1-10 entries, distinct ids,
    per-entry BatchResultErrorEntry.
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
stored (not deleted) messages in order, with their receive counts; GET
/_control/stats -> counters (requests, refused signatures, the most
requests in progress at once, requests per action); POST /_control/queue
{"url": QUEUE_URL, "attributes": {...}} creates a queue; POST
/_control/reset drops queues, messages, dedupe windows and cues.

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
import base64
import struct
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
ACCOUNT = "123456789012"
MAX_VISIBILITY_S = 43200
NON_EXISTENT_QUEUE = "AWS.SimpleQueueService.NonExistentQueue"
ENTRY_ID = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
# XML 1.0 characters, as SQS allows in a body.
BAD_CHARS = re.compile("[^\x09\x0a\x0d\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_escape(s):
    return (str(s).replace("&", "&amp;").replace("<", "&lt;")
            .replace(">", "&gt;").replace('"', "&quot;").replace("\r", "&#xD;"))


class AwsError(Exception):
    def __init__(self, status, code, message, sender=True):
        super().__init__(message)
        self.status, self.code, self.message, self.sender = status, code, message, sender


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        # Long polls wait on it; every change that can make a message
        # visible notifies it.
        self.changed = threading.Condition(self.lock)
        self.args = args
        self.keys = {}  # access key -> (secret, token or None)
        if args.access_key:
            self.keys[args.access_key] = (args.secret_key, args.session_token)
        self.reset()
        self.actions = {}
        self.requests = 0
        self.signature_failures = 0
        self.active = 0
        self.max_active = 0

    def reset(self):
        self.messages = {}  # target -> [dict], in send order, not deleted
        self.queues = {}  # queue URL -> attributes (created queues)
        self.in_flight = {}  # queue URL -> {message id: message}
        self.groups = {}  # FIFO queue URL -> {group: [message] in order}
        self.receipts = {}  # receipt handle -> (queue URL, message id)
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


def message_of(params, prefix, sqs, fifo, content_dedupe=False):
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
        if not dedupe and content_dedupe:
            dedupe = hashlib.sha256(body.encode()).hexdigest()
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
            "types": {n: t for n, t, _ in attrs},
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
    record = dict(msg, message_id=message_id, sequence=seq, sent=now,
                  visible_at=0.0, receive_count=0, first_receive=0.0,
                  receipt=None)
    record.pop("size", None)
    STATE.messages.setdefault(target, []).append(record)
    if msg["group"] and target.startswith("http"):
        STATE.groups.setdefault(target, {}).setdefault(msg["group"], []).append(record)
    if target.startswith("http"):
        queue_attributes(target)  # a send creates the queue
    if msg["dedupe"]:
        STATE.dedupe[(target, msg["dedupe"])] = (now, message_id, seq)
    STATE.changed.notify_all()
    return message_id, seq


def queue_name(url):
    return url.rstrip("/").rsplit("/", 1)[-1]


def queue_attributes(url, create=True):
    """The attributes of queue `url` (created with the defaults when
    `create`), or an AwsError when it does not exist. REQUIRES: the lock."""
    q = STATE.queues.get(url)
    if q is None:
        if not create:
            raise AwsError(400, NON_EXISTENT_QUEUE,
                           "The specified queue does not exist for this wsdl version.")
        fifo = queue_name(url).endswith(".fifo")
        q = {"VisibilityTimeout": "30", "ReceiveMessageWaitTimeSeconds": "0",
             "CreatedTimestamp": str(int(time.time()))}
        if fifo:
            q["FifoQueue"] = "true"
            q["ContentBasedDeduplication"] = "false"
        STATE.queues[url] = q
    return q


def create_queue(url, attributes):
    """Creates queue `url` with `attributes` (AWS's checks), or answers the
    existing one when they agree. REQUIRES: the lock."""
    name = queue_name(url)
    if not re.match(r"^[A-Za-z0-9_-]{1,80}(\.fifo)?$", name) or len(name) > 80:
        raise AwsError(400, "InvalidParameterValue",
                       "Can only include alphanumeric characters, hyphens, or "
                       "underscores. 1 to 80 in length")
    fifo = name.endswith(".fifo")
    if attributes.get("FifoQueue", "false").lower() == "true" and not fifo:
        raise AwsError(400, "InvalidParameterValue",
                       "The name of a FIFO queue can only include alphanumeric "
                       "characters, hyphens, or underscores, must end with .fifo "
                       "suffix and be 1 to 80 in length.")
    if fifo and attributes.get("FifoQueue", "").lower() != "true":
        raise AwsError(400, "InvalidParameterValue",
                       "FifoQueue attribute must be true for a queue name ending in .fifo")
    for k, v in attributes.items():
        if k == "VisibilityTimeout":
            if not v.isdigit() or int(v) > MAX_VISIBILITY_S:
                raise AwsError(400, "InvalidAttributeValue",
                               "Invalid value for the parameter VisibilityTimeout.")
        elif k == "ReceiveMessageWaitTimeSeconds":
            if not v.isdigit() or int(v) > 20:
                raise AwsError(400, "InvalidAttributeValue",
                               "Invalid value for the parameter "
                               "ReceiveMessageWaitTimeSeconds.")
        elif k in ("FifoQueue", "ContentBasedDeduplication"):
            if v.lower() not in ("true", "false") or (
                    k == "ContentBasedDeduplication" and not fifo):
                raise AwsError(400, "InvalidAttributeName",
                               "Unknown Attribute %s." % k if not fifo else
                               "Invalid value for the parameter %s." % k)
        else:
            raise AwsError(400, "InvalidAttributeName", "Unknown Attribute %s." % k)
    existing = STATE.queues.get(url)
    q = queue_attributes(url)
    want = {k: v.lower() if k in ("FifoQueue", "ContentBasedDeduplication") else v
            for k, v in attributes.items()}
    if existing is not None:
        for k, v in want.items():
            if q.get(k) != v:
                raise AwsError(400, "QueueAlreadyExists",
                               "A queue already exists with the same name and a "
                               "different value for attribute %s" % k)
    q.update(want)
    return q


def new_receipt(url, m):
    handle = base64.b64encode(os.urandom(12) + m["message_id"].encode()).decode()
    STATE.receipts[handle] = (url, m["message_id"])
    m["receipt"] = handle
    return handle


def message_of_receipt(url, handle):
    """(message or None, current): the message a receipt handle was issued
    for (None when deleted since) and whether it is the most recent one.
    ReceiptHandleIsInvalid for a handle never issued here (or another
    queue's). REQUIRES: the lock."""
    issued = STATE.receipts.get(handle)
    if issued is None or issued[0] != url:
        raise AwsError(400, "ReceiptHandleIsInvalid",
                       'The input receipt handle "%s" is not a valid receipt handle.'
                       % handle)
    m = find_message(url, issued[1])
    return m, m is not None and m["receipt"] == handle


def find_message(url, message_id):
    m = STATE.in_flight.get(url, {}).get(message_id)
    if m is not None:
        return m
    for m in STATE.messages.get(url, []):
        if m["message_id"] == message_id:
            return m
    return None


def delete_message(url, handle):
    """DeleteMessage's rule. REQUIRES: the lock."""
    m, current = message_of_receipt(url, handle)
    if m is None or not current:
        return  # deleted already, or received again since: nothing deleted
    stored = STATE.messages[url]
    for i, x in enumerate(stored):  # by identity (near the front)
        if x is m:
            del stored[i]
            break
    STATE.in_flight.get(url, {}).pop(m["message_id"], None)
    groups = STATE.groups.get(url, {})
    if m["group"] in groups:
        in_group = groups[m["group"]]
        for i, x in enumerate(in_group):
            if x is m:
                del in_group[i]
                break
        if not in_group:
            del groups[m["group"]]
    STATE.changed.notify_all()  # a FIFO group may be free now


def change_visibility(url, handle, value):
    """ChangeMessageVisibility's rule. REQUIRES: the lock."""
    seconds = visibility_value(value)
    m, current = message_of_receipt(url, handle)
    now = time.time()
    if m is None or not current:
        raise AwsError(400, "InvalidParameterValue",
                       "Value %s for parameter ReceiptHandle is invalid. Reason: Message "
                       "does not exist or is not available for visibility timeout change."
                       % handle)
    if m["visible_at"] <= now:
        raise AwsError(400, "MessageNotInflight",
                       "The message referred to is not in flight.")
    if now + seconds > m["first_receive"] + MAX_VISIBILITY_S:
        raise AwsError(400, "InvalidParameterValue",
                       "Value %d for parameter VisibilityTimeout is invalid. Reason: "
                       "Total VisibilityTimeout for the message is beyond the limit "
                       "[43200 seconds]" % seconds)
    m["visible_at"] = now + seconds
    if seconds == 0:
        STATE.in_flight.get(url, {}).pop(m["message_id"], None)
        STATE.changed.notify_all()


def visibility_value(value):
    if value is None or value == "":
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter VisibilityTimeout.")
    try:
        seconds = int(value)
    except ValueError:
        seconds = -1
    if seconds < 0 or seconds > MAX_VISIBILITY_S:
        raise AwsError(400, "InvalidParameterValue",
                       "Value %s for parameter VisibilityTimeout is invalid. Reason: "
                       "Must be >= 0 and <= 43200, if provided." % value)
    return seconds


def md5_of_attributes(names, msg):
    """MD5OfMessageAttributes as AWS computes it (names sorted; each name,
    data type and value length-prefixed, a transport byte 1 for String)."""
    data = b""
    for n in sorted(names):
        t, v = msg["types"].get(n, "String"), msg["attributes"][n]
        for part in (n, t):
            b = part.encode()
            data += struct.pack(">I", len(b)) + b
        data += b"\x01"
        b = v.encode()
        data += struct.pack(">I", len(b)) + b
    return hashlib.md5(data).hexdigest()


def numbered(params, prefix):
    """The values of PREFIX.1, PREFIX.2, ... in order."""
    out = []
    n = 1
    while "%s.%d" % (prefix, n) in params:
        out.append(params["%s.%d" % (prefix, n)])
        n += 1
    return out


def take_visible(url, fifo, limit, visibility, now):
    """The receive step: up to `limit` visible messages, each made in
    flight for `visibility` s with a new receipt handle. FIFO: no group
    with a message in flight; the oldest group first, and as many messages
    of one group as there are (AWS's rule), each group in send order.
    REQUIRES: the lock."""
    flying = STATE.in_flight.setdefault(url, {})
    for mid in [mid for mid, m in flying.items() if m["visible_at"] <= now]:
        del flying[mid]
    if fifo:
        blocked = {m["group"] for m in flying.values()}
        groups = STATE.groups.get(url, {})
        heads = sorted((ms[0]["sequence"], g) for g, ms in groups.items()
                       if ms and g not in blocked)
        candidates = (m for _, g in heads for m in groups[g])
    else:
        candidates = iter(STATE.messages.get(url, []))
    out = []
    for m in candidates:
        if len(out) >= limit:
            break
        if m["visible_at"] > now:
            continue  # FIFO: cannot happen in a group with none in flight
        take(url, m, visibility, now, flying, out)
    return out


def take(url, m, visibility, now, flying, out):
    """Receives `m`: in flight for `visibility` s, a new receipt handle."""
    m["receive_count"] += 1
    if not m["first_receive"]:
        m["first_receive"] = now
    m["visible_at"] = now + visibility
    if visibility > 0:
        flying[m["message_id"]] = m
    out.append((m, new_receipt(url, m)))


def next_visible_time(url):
    """When the earliest message in flight on `url` becomes visible."""
    times = [m["visible_at"] for m in STATE.in_flight.get(url, {}).values()]
    return min(times) if times else None


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
                    "actions": STATE.actions,
                    "signature_failures": STATE.signature_failures,
                    "max_in_flight": STATE.max_active}), "application/json")
        self.send(404, "not found", "text/plain")

    def control(self, body):
        with STATE.lock:
            if self.path == "/_control/queue":
                q = json.loads(body or b"{}")
                try:
                    create_queue(q["url"], q.get("attributes", {}))
                except AwsError as e:
                    return self.send(400, json.dumps({"error": e.code,
                                                      "message": e.message}),
                                     "application/json")
                return self.send(200, "{}", "application/json")
            if self.path == "/_control/reset":
                STATE.reset()
                STATE.actions = {}
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
        sqs = action in SQS_ACTIONS
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
        with STATE.lock:
            STATE.actions[action] = STATE.actions.get(action, 0) + 1
        slow = STATE.slow_ms
        if slow:
            time.sleep(slow / 1000.0)
        try:
            with STATE.lock:
                if STATE.throttle > 0:
                    STATE.throttle -= 1
                    raise AwsError(400, "Throttling" if sns else "RequestThrottled",
                                   "Rate exceeded")
            if action in SQS_CONSUMING:
                answer = self.consume(action, params)
            else:
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
        cbd = sqs and STATE.queues.get(target, {}).get("ContentBasedDeduplication") == "true"
        if action in ("SendMessage", "Publish"):
            msg = message_of(params, "", sqs, fifo, cbd)
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
                msg = message_of(params, p, sqs, fifo, cbd)
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


    # ---- the consuming side of a queue ----------------------------------

    def consume(self, action, params):
        if action == "CreateQueue":
            name = params.get("QueueName", "")
            if not name:
                raise AwsError(400, "MissingParameter",
                               "The request must contain the parameter QueueName.")
            url = "http://%s/%s/%s" % (self.headers.get("Host", "127.0.0.1"), ACCOUNT, name)
            attrs = {}
            n = 1
            while "Attribute.%d.Name" % n in params:
                attrs[params["Attribute.%d.Name" % n]] = params.get(
                    "Attribute.%d.Value" % n, "")
                n += 1
            with STATE.lock:
                create_queue(url, attrs)
            return self.sqs_answer(action, "<QueueUrl>%s</QueueUrl>" % xml_escape(url))
        if action == "GetQueueUrl":
            name = params.get("QueueName", "")
            url = "http://%s/%s/%s" % (self.headers.get("Host", "127.0.0.1"), ACCOUNT, name)
            with STATE.lock:
                queue_attributes(url, create=False)
            return self.sqs_answer(action, "<QueueUrl>%s</QueueUrl>" % xml_escape(url))
        url = params.get("QueueUrl", "")
        if not url:
            raise AwsError(400, "MissingParameter",
                           "The request must contain the parameter QueueUrl.")
        fifo = queue_name(url).endswith(".fifo")
        if action == "GetQueueAttributes":
            return self.get_queue_attributes(url, params)
        if action == "ReceiveMessage":
            return self.receive(url, fifo, params)
        if action == "DeleteMessage":
            handle = params.get("ReceiptHandle", "")
            if not handle:
                raise AwsError(400, "MissingParameter",
                               "The request must contain the parameter ReceiptHandle.")
            with STATE.lock:
                queue_attributes(url, create=False)
                delete_message(url, handle)
            return self.sqs_answer(action, None)
        if action == "ChangeMessageVisibility":
            handle = params.get("ReceiptHandle", "")
            if not handle:
                raise AwsError(400, "MissingParameter",
                               "The request must contain the parameter ReceiptHandle.")
            with STATE.lock:
                queue_attributes(url, create=False)
                change_visibility(url, handle, params.get("VisibilityTimeout"))
            return self.sqs_answer(action, None)
        # DeleteMessageBatch, ChangeMessageVisibilityBatch.
        prefix = action + "RequestEntry"
        entries = []
        n = 1
        while "%s.%d.Id" % (prefix, n) in params:
            p = "%s.%d." % (prefix, n)
            entries.append((params[p + "Id"], p))
            n += 1
        check_batch_ids([i for i, _ in entries])
        ok, failed = [], []
        with STATE.lock:
            queue_attributes(url, create=False)
            for entry_id, p in entries:
                try:
                    handle = params.get(p + "ReceiptHandle", "")
                    if not handle:
                        raise AwsError(400, "MissingParameter",
                                       "The request must contain the parameter "
                                       "ReceiptHandle.")
                    if action == "DeleteMessageBatch":
                        delete_message(url, handle)
                    else:
                        change_visibility(url, handle, params.get(p + "VisibilityTimeout"))
                    ok.append(entry_id)
                except AwsError as e:
                    failed.append((entry_id, e))
        out = []
        for entry_id in ok:
            out.append("<%sResultEntry><Id>%s</Id></%sResultEntry>"
                       % (action, xml_escape(entry_id), action))
        for entry_id, e in failed:
            out.append("<BatchResultErrorEntry><Id>%s</Id><SenderFault>true</SenderFault>"
                       "<Code>%s</Code><Message>%s</Message></BatchResultErrorEntry>"
                       % (xml_escape(entry_id), xml_escape(e.code), xml_escape(e.message)))
        return self.sqs_answer(action, "".join(out))

    @staticmethod
    def sqs_answer(action, result):
        body = "" if result is None else "<%sResult>%s</%sResult>" % (action, result, action)
        return ('<%sResponse xmlns="%s">%s<ResponseMetadata><RequestId>%s</RequestId>'
                "</ResponseMetadata></%sResponse>" % (action, SQS_NS, body, uuid.uuid4(),
                                                      action))

    def get_queue_attributes(self, url, params):
        names = numbered(params, "AttributeName") or ["All"]
        with STATE.lock:
            q = queue_attributes(url, create=False)
            now = time.time()
            stored = STATE.messages.get(url, [])
            visible = sum(1 for m in stored if m["visible_at"] <= now)
            values = dict(q)
            values.update({
                "ApproximateNumberOfMessages": str(visible),
                "ApproximateNumberOfMessagesNotVisible": str(len(stored) - visible),
                "ApproximateNumberOfMessagesDelayed": "0",
                "QueueArn": "arn:aws:sqs:%s:%s:%s" % (STATE.args.region, ACCOUNT,
                                                      queue_name(url)),
            })
        out = []
        for name in sorted(values):
            if "All" in names or name in names:
                out.append("<Attribute><Name>%s</Name><Value>%s</Value></Attribute>"
                           % (name, xml_escape(values[name])))
        return self.sqs_answer("GetQueueAttributes", "".join(out))

    def receive(self, url, fifo, params):
        def number(name, low, high, default):
            v = params.get(name)
            if v is None:
                return default
            try:
                n = int(v)
            except ValueError:
                n = low - 1
            if n < low or n > high:
                raise AwsError(400, "InvalidParameterValue",
                               "Value %s for parameter %s is invalid. Reason: Must be "
                               "between %d and %d, if provided." % (v, name, low, high))
            return n
        limit = number("MaxNumberOfMessages", 1, 10, 1)
        with STATE.lock:
            q = queue_attributes(url, create=False)
        wait = number("WaitTimeSeconds", 0, 20, int(q["ReceiveMessageWaitTimeSeconds"]))
        visibility = number("VisibilityTimeout", 0, MAX_VISIBILITY_S,
                            int(q["VisibilityTimeout"]))
        system = set(numbered(params, "AttributeName") +
                     numbered(params, "MessageSystemAttributeName"))
        wanted = numbered(params, "MessageAttributeName")
        deadline = time.monotonic() + wait
        with STATE.lock:
            while True:
                taken = take_visible(url, fifo, limit, visibility, time.time())
                left = deadline - time.monotonic()
                if taken or left <= 0:
                    break
                at = next_visible_time(url)
                if at is not None:
                    left = min(left, max(0.0, at - time.time()) + 0.001)
                STATE.changed.wait(left)
        out = []
        for m, handle in taken:
            out.append("<Message><MessageId>%s</MessageId><ReceiptHandle>%s</ReceiptHandle>"
                       "<MD5OfBody>%s</MD5OfBody><Body>%s</Body>"
                       % (m["message_id"], xml_escape(handle),
                          hashlib.md5(m["body"].encode()).hexdigest(),
                          xml_escape(m["body"])))
            attrs = {
                "SenderId": STATE.args.access_key or "AIDAHERALD",
                "SentTimestamp": str(int(m["sent"] * 1000)),
                "ApproximateReceiveCount": str(m["receive_count"]),
                "ApproximateFirstReceiveTimestamp": str(int(m["first_receive"] * 1000)),
            }
            if fifo:
                attrs.update({"MessageGroupId": m["group"],
                              "MessageDeduplicationId": m["dedupe"],
                              "SequenceNumber": m["sequence"]})
            for name in sorted(attrs):
                if "All" in system or name in system:
                    out.append("<Attribute><Name>%s</Name><Value>%s</Value></Attribute>"
                               % (name, xml_escape(attrs[name])))
            # "bar.*": the names starting with "bar.".
            names = [n for n in m["attributes"] if any(
                w in ("All", ".*") or n == w or
                (w.endswith(".*") and n.startswith(w[:-1])) for w in wanted)]
            if names:
                out.append("<MD5OfMessageAttributes>%s</MD5OfMessageAttributes>"
                           % md5_of_attributes(names, m))
                for n in names:
                    out.append("<MessageAttribute><Name>%s</Name><Value><StringValue>%s"
                               "</StringValue><DataType>%s</DataType></Value>"
                               "</MessageAttribute>"
                               % (xml_escape(n), xml_escape(m["attributes"][n]),
                                  xml_escape(m["types"].get(n, "String"))))
            out.append("</Message>")
        return self.sqs_answer("ReceiveMessage", "".join(out))


def check_batch_ids(ids):
    if not ids:
        raise AwsError(400, "EmptyBatchRequest",
                       "There should be at least one entry in the request.")
    if len(ids) > 10:
        raise AwsError(400, "TooManyEntriesInBatchRequest",
                       "Maximum number of entries per request are 10. You have sent %d."
                       % len(ids))
    if len(set(ids)) != len(ids):
        raise AwsError(400, "BatchEntryIdsNotDistinct", "Two or more batch entries in the "
                       "request have the same Id.")
    for i in ids:
        if not ENTRY_ID.match(i):
            raise AwsError(400, "InvalidBatchEntryId",
                           "A batch entry id can only contain alphanumeric characters, "
                           "hyphens and underscores. It can be at most 80 letters long.")


SQS_CONSUMING = ("CreateQueue", "GetQueueUrl", "GetQueueAttributes", "ReceiveMessage",
                 "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility",
                 "ChangeMessageVisibilityBatch")
SQS_ACTIONS = ("SendMessage", "SendMessageBatch") + SQS_CONSUMING


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
