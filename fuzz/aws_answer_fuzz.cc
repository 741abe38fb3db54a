// Fuzzes how the SQS and SNS senders read what a server answered
// (transport/aws/aws_query.h): the XML reader, the reading of
// SendMessage(Batch) / Publish(Batch) answers entry by entry, and the
// classification of error answers and failed entries. The input is the
// answer's body. None of it may crash or read past the input, and:
//   - an answer that does not parse acknowledges nothing, and no entry is
//     acknowledged that the answer does not name;
//   - a failed entry is Permanent exactly when SenderFault is true, else
//     Unavailable;
//   - an error answer is never OK, is Unavailable for 429 and 5xx, and its
//     message (which reaches logs and status pages) is one bounded line
//     (a SignatureDoesNotMatch message goes on, past its first line, with
//     the canonical request).
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "transport/aws/aws_query.h"

namespace {

using herald::Status;
using namespace herald::detail;

// Where + ": HTTP 503 " + code + ": " + message excerpt (300 bytes + "...")
// + the credentials hint: well under this.
constexpr size_t kMaxMessage = 1500;

void CheckOneLine(const Status& s, std::string_view where) {
  const std::string& m = s.message();
  if (m.find('\n') != std::string::npos || m.find('\r') != std::string::npos) {
    std::abort();
  }
  if (m.size() > where.size() + kMaxMessage) std::abort();
  if (m.compare(0, where.size(), where) != 0) std::abort();
}

void CheckXml(const XmlElement& e, size_t depth) {
  if (e.name.empty() || depth > 64) std::abort();
  for (const auto& c : e.children) CheckXml(c, depth + 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view body(reinterpret_cast<const char*>(data), size);
  auto doc = ParseXml(body);
  if (doc.ok()) CheckXml(*doc, 0);

  for (AwsService service : {AwsService::kSqs, AwsService::kSns}) {
    for (bool batch : {false, true}) {
      for (size_t count : {size_t{1}, size_t{3}, size_t{10}}) {
        std::vector<EntryOutcome> out;
        Status s = ParseAwsAnswer(body, service, batch, count, &out);
        if (out.size() != count) std::abort();
        size_t answered = 0;
        for (const EntryOutcome& o : out) {
          if (o.ok && !o.answered) std::abort();
          if (!o.answered) continue;
          ++answered;
          if (!s.ok()) std::abort();  // unreadable: nothing acknowledged
          if (o.ok) continue;
          const std::string where = "PublishBatch to topic t";
          Status e = AwsEntryStatus(o, where);
          if (e.ok()) std::abort();
          if (e.code() != (o.sender_fault ? Status::Code::kPermanent
                                          : Status::Code::kUnavailable)) {
            std::abort();
          }
          CheckOneLine(e, where);
        }
        if (!batch && answered > 1) std::abort();
      }
    }
  }

  const std::string where = "SendMessage to queue q";
  for (long http : {400L, 403L, 404L, 413L, 429L, 500L, 503L}) {
    Status s = AwsErrorStatus(http, body, where);
    if (s.ok()) std::abort();
    if (s.code() != Status::Code::kPermanent &&
        s.code() != Status::Code::kUnavailable) {
      std::abort();
    }
    if ((http == 429 || http >= 500) && !s.retryable()) std::abort();
    CheckOneLine(s, where);
  }
  return 0;
}
