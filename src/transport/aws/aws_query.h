// The AWS Query protocol as SQS and SNS speak it: form-encoded requests,
// XML answers. What an SNS or SQS message of an event is (body, message
// attributes, size), how a request is written, and how an answer is read
// and judged (delivered, retryable, permanent).
//
// Pure functions over text; no I/O, safe from any thread. The XML reader
// takes any input (fuzzed by fuzz/aws_answer_fuzz.cc, with the answer and
// error readers below): it never reads past its input and refuses what it
// cannot read.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "herald/event.h"
#include "herald/status.h"
#include "transport/aws/aws_scheme.h"

namespace herald::detail {

// ---- messages ---------------------------------------------------------

// AWS's limit of message attributes per message.
inline constexpr size_t kMaxMessageAttributes = 10;

// One message of an event: body, String message attributes, and the FIFO
// ids (empty for standard queues and topics).
struct AwsMessage {
  std::string body;
  std::vector<std::pair<std::string, std::string>> attributes;
  std::string group_id;
  std::string dedupe_id;
  // What AWS counts against the size limit: the body plus each attribute's
  // name, data type ("String") and value.
  size_t size() const;
};

// The message of `e`. Body: the CloudEvents structured JSON (raw: the
// payload). Attributes, the first 10 of: ce-specversion, ce-id, ce-source,
// ce-type, ce-subject, ce-time, content-type (= datacontenttype), then one
// ce-NAME per metadata extension in document order, then ce-position,
// ce-streamversion; empty values are left out (AWS refuses them).
// Permanent when a FIFO id expands to something AWS refuses (empty, over
// 128 characters, a character outside ASCII punctuation and alphanumerics).
Status MakeAwsMessage(const Event& e, const AwsOptions& o, AwsMessage* out);

// ---- requests ---------------------------------------------------------

// Appends `s` percent-encoded as AWS canonicalizes form values: every byte
// but A-Z a-z 0-9 - _ . ~ as %XX.
void AppendFormEncoded(std::string_view s, std::string* out);

// The form body of one request. Entries are numbered 1..n; entry i of a
// batch gets the batch entry Id "m<i>" (what the answer's Id names).
// max_batch == 1 uses SendMessage / Publish (one message), otherwise
// SendMessageBatch / PublishBatch.
std::string AwsRequestBody(const AwsOptions& o,
                           const std::vector<const AwsMessage*>& messages,
                           bool batch);

// ---- answers ----------------------------------------------------------

// A parsed XML element: local name (without a namespace prefix), its own
// text (entities decoded), and its children in order.
struct XmlElement {
  std::string name;
  std::string text;
  std::vector<XmlElement> children;
  // The first child named `name`, or nullptr.
  const XmlElement* Child(std::string_view name) const;
  // The text of the first child named `name`, or "".
  std::string ChildText(std::string_view name) const;
};

// Parses one XML document (a prolog and comments are skipped). Corruption
// when it is not well-formed enough to read.
Result<XmlElement> ParseXml(std::string_view text);

// What an answer said about one entry of a request.
struct EntryOutcome {
  bool answered = false;  // the answer named this entry
  bool ok = false;
  std::string code, message;
  bool sender_fault = false;
};

// Reads a 200 answer to a request of `count` entries (batch: by entry Id
// "m<i>"; single: the one MessageId). Entries the answer does not name
// stay answered = false. Corruption when the answer is not the expected
// document.
Status ParseAwsAnswer(std::string_view body, AwsService service, bool batch,
                      size_t count, std::vector<EntryOutcome>* out);

// The status of an error answer (HTTP status >= 300, body the AWS
// ErrorResponse XML or anything else): Unavailable for throttling, server
// errors and refused credentials or signatures (route-wide, fixed without
// touching the events), Permanent for the rest (a missing queue or topic,
// a parameter AWS refuses). `where` starts the message.
Status AwsErrorStatus(long http_status, std::string_view body,
                      std::string_view where);

// The status of one failed batch entry: SenderFault=true is Permanent,
// otherwise Unavailable.
Status AwsEntryStatus(const EntryOutcome& outcome, std::string_view where);

}  // namespace herald::detail
