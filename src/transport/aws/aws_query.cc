// The AWS Query protocol: messages, requests, answers (aws_query.h).
#include "transport/aws/aws_query.h"

#include <algorithm>
#include <array>

#include "herald/cloudevents.h"
#include "herald/redact.h"

namespace herald::detail {
namespace {

constexpr size_t kMaxFifoId = 128;
constexpr size_t kMaxXmlDepth = 32;
constexpr size_t kMaxErrorText = 300;

// AWS: MessageGroupId and MessageDeduplicationId take alphanumerics and
// punctuation (!"#$%&'()*+,-./:;<=>?@[\]^_`{|}~), 1-128 characters.
Status CheckFifoId(std::string_view what, const std::string& id,
                   const Event& e) {
  if (id.empty() || id.size() > kMaxFifoId) {
    return Status::Permanent(std::string(what) + " of event " + e.id +
                             " would be " + std::to_string(id.size()) +
                             " characters; AWS takes 1-128");
  }
  for (unsigned char c : id) {
    if (c < 0x21 || c > 0x7e) {
      return Status::Permanent(
          std::string(what) + " '" + id + "' of event " + e.id +
          " has a character AWS refuses (only ASCII letters, digits and "
          "punctuation)");
    }
  }
  return Status::OK();
}

// Trims an answer for a message: one line, bounded, secrets redacted.
std::string Excerpt(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, kMaxErrorText)) {
    out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  }
  if (text.size() > kMaxErrorText) out += "...";
  return RedactSecrets(out);
}

// ---- a small XML reader ----------------------------------------------

class XmlReader {
 public:
  explicit XmlReader(std::string_view text) : s_(text) {}

  Result<XmlElement> Document() {
    SkipMisc();
    XmlElement root;
    HERALD_RETURN_IF_ERROR(Element(&root, 0));
    SkipMisc();
    if (i_ != s_.size()) return Bad("content after the root element");
    return root;
  }

 private:
  Status Bad(std::string_view why) const {
    return Status::Corruption("malformed XML at offset " + std::to_string(i_) +
                              ": " + std::string(why));
  }
  bool StartsWith(std::string_view p) const {
    return s_.substr(i_, p.size()) == p;
  }
  void SkipSpace() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' ||
                              s_[i_] == '\n' || s_[i_] == '\r')) {
      ++i_;
    }
  }
  // Whitespace, <?...?> and <!--...-->, <!DOCTYPE ...>.
  void SkipMisc() {
    for (;;) {
      SkipSpace();
      if (StartsWith("<?")) {
        size_t end = s_.find("?>", i_);
        i_ = end == std::string_view::npos ? s_.size() : end + 2;
      } else if (StartsWith("<!--")) {
        size_t end = s_.find("-->", i_);
        i_ = end == std::string_view::npos ? s_.size() : end + 3;
      } else if (StartsWith("<!")) {
        size_t end = s_.find('>', i_);
        i_ = end == std::string_view::npos ? s_.size() : end + 1;
      } else {
        return;
      }
    }
  }
  static bool NameChar(char c) {
    return c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '>' &&
           c != '/' && c != '=' && c != '<';
  }
  Status Decode(std::string_view raw, std::string* out) const {
    for (size_t k = 0; k < raw.size(); ++k) {
      if (raw[k] != '&') {
        out->push_back(raw[k]);
        continue;
      }
      size_t semi = raw.find(';', k);
      if (semi == std::string_view::npos || semi - k > 10) {
        return Bad("an unterminated entity");
      }
      std::string_view ent = raw.substr(k + 1, semi - k - 1);
      if (ent == "lt") {
        out->push_back('<');
      } else if (ent == "gt") {
        out->push_back('>');
      } else if (ent == "amp") {
        out->push_back('&');
      } else if (ent == "quot") {
        out->push_back('"');
      } else if (ent == "apos") {
        out->push_back('\'');
      } else if (ent.size() > 1 && ent[0] == '#') {
        unsigned long cp = 0;
        bool hex = ent[1] == 'x' || ent[1] == 'X';
        std::string_view digits = ent.substr(hex ? 2 : 1);
        if (digits.empty()) return Bad("an empty character reference");
        for (char c : digits) {
          int d;
          if (c >= '0' && c <= '9') {
            d = c - '0';
          } else if (hex && c >= 'a' && c <= 'f') {
            d = c - 'a' + 10;
          } else if (hex && c >= 'A' && c <= 'F') {
            d = c - 'A' + 10;
          } else {
            return Bad("a malformed character reference");
          }
          cp = cp * (hex ? 16 : 10) + static_cast<unsigned long>(d);
          if (cp > 0x10FFFF) return Bad("a character reference out of range");
        }
        AppendUtf8(cp, out);
      } else {
        return Bad("an unknown entity");
      }
      k = semi;
    }
    return Status::OK();
  }
  static void AppendUtf8(unsigned long cp, std::string* out) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  static std::string_view LocalName(std::string_view qname) {
    size_t colon = qname.rfind(':');
    return colon == std::string_view::npos ? qname : qname.substr(colon + 1);
  }

  Status Element(XmlElement* out, size_t depth) {
    if (depth > kMaxXmlDepth) return Bad("nested too deeply");
    if (i_ >= s_.size() || s_[i_] != '<') return Bad("expected '<'");
    ++i_;
    size_t start = i_;
    while (i_ < s_.size() && NameChar(s_[i_])) ++i_;
    std::string_view qname = s_.substr(start, i_ - start);
    if (qname.empty()) return Bad("an element without a name");
    out->name = std::string(LocalName(qname));
    // Attributes: skipped, quotes respected.
    for (;;) {
      if (i_ >= s_.size()) return Bad("an unterminated start tag");
      char c = s_[i_];
      if (c == '"' || c == '\'') {
        size_t end = s_.find(c, i_ + 1);
        if (end == std::string_view::npos) return Bad("an unterminated value");
        i_ = end + 1;
      } else if (c == '/') {
        if (i_ + 1 < s_.size() && s_[i_ + 1] == '>') {
          i_ += 2;
          return Status::OK();  // <empty/>
        }
        return Bad("a stray '/' in a start tag");
      } else if (c == '>') {
        ++i_;
        break;
      } else {
        ++i_;
      }
    }
    // Content.
    for (;;) {
      if (i_ >= s_.size()) return Bad("element <" + out->name + "> not closed");
      if (StartsWith("</")) {
        i_ += 2;
        size_t name_start = i_;
        while (i_ < s_.size() && NameChar(s_[i_])) ++i_;
        std::string_view closing = s_.substr(name_start, i_ - name_start);
        if (closing != qname) {
          return Bad("</" + std::string(closing) + "> closes <" +
                     std::string(qname) + ">");
        }
        SkipSpace();
        if (i_ >= s_.size() || s_[i_] != '>') return Bad("a malformed end tag");
        ++i_;
        return Status::OK();
      }
      if (StartsWith("<!--")) {
        size_t end = s_.find("-->", i_);
        if (end == std::string_view::npos) return Bad("an unclosed comment");
        i_ = end + 3;
      } else if (StartsWith("<![CDATA[")) {
        size_t end = s_.find("]]>", i_);
        if (end == std::string_view::npos) return Bad("an unclosed CDATA");
        out->text.append(s_.substr(i_ + 9, end - i_ - 9));
        i_ = end + 3;
      } else if (s_[i_] == '<') {
        out->children.emplace_back();
        HERALD_RETURN_IF_ERROR(Element(&out->children.back(), depth + 1));
      } else {
        size_t end = s_.find('<', i_);
        if (end == std::string_view::npos) end = s_.size();
        HERALD_RETURN_IF_ERROR(Decode(s_.substr(i_, end - i_), &out->text));
        i_ = end;
      }
    }
  }

  std::string_view s_;
  size_t i_ = 0;
};

void Param(std::string_view name, std::string_view value, std::string* out) {
  out->push_back('&');
  out->append(name);
  out->push_back('=');
  AppendFormEncoded(value, out);
}

// The Query names of one message's fields, plain and in a batch entry.
void AppendMessage(AwsService service, const std::string& prefix,
                   const AwsMessage& m, std::string* out) {
  bool sqs = service == AwsService::kSqs;
  Param(prefix + (sqs ? "MessageBody" : "Message"), m.body, out);
  if (!m.group_id.empty()) Param(prefix + "MessageGroupId", m.group_id, out);
  if (!m.dedupe_id.empty()) {
    Param(prefix + "MessageDeduplicationId", m.dedupe_id, out);
  }
  for (size_t a = 0; a < m.attributes.size(); ++a) {
    std::string p = prefix +
                    (sqs ? "MessageAttribute." : "MessageAttributes.entry.") +
                    std::to_string(a + 1) + ".";
    Param(p + "Name", m.attributes[a].first, out);
    Param(p + "Value.DataType", "String", out);
    Param(p + "Value.StringValue", m.attributes[a].second, out);
  }
}

bool IsOneOf(std::string_view code, std::initializer_list<std::string_view> l) {
  return std::find(l.begin(), l.end(), code) != l.end();
}

}  // namespace

size_t AwsMessage::size() const {
  size_t n = body.size();
  for (const auto& [name, value] : attributes) {
    n += name.size() + 6 /* "String" */ + value.size();
  }
  return n;
}

Status MakeAwsMessage(const Event& e, const AwsOptions& o, AwsMessage* out) {
  out->body.clear();
  out->attributes.clear();
  out->group_id.clear();
  out->dedupe_id.clear();
  if (o.raw) {
    out->body = e.payload;
  } else {
    AppendCloudEventJson(e, o.source, &out->body);
  }
  // Context attributes first, then extensions; position and streamversion
  // (herald's own, in the body too) give way to metadata.
  std::vector<std::pair<std::string, std::string>> later;
  for (auto& [name, value] : CloudEventAttributes(e, o.source)) {
    if (value.empty()) continue;
    if (name == "position" || name == "streamversion") {
      later.emplace_back("ce-" + name, std::move(value));
    } else if (name == "datacontenttype") {
      out->attributes.emplace_back("content-type", std::move(value));
    } else {
      out->attributes.emplace_back("ce-" + name, std::move(value));
    }
  }
  for (auto& a : later) out->attributes.push_back(std::move(a));
  if (out->attributes.size() > kMaxMessageAttributes) {
    out->attributes.resize(kMaxMessageAttributes);
  }
  if (o.fifo) {
    o.message_group_id.ExpandTo(e, &out->group_id);
    HERALD_RETURN_IF_ERROR(CheckFifoId("MessageGroupId", out->group_id, e));
    o.deduplication_id.ExpandTo(e, &out->dedupe_id);
    HERALD_RETURN_IF_ERROR(
        CheckFifoId("MessageDeduplicationId", out->dedupe_id, e));
  }
  return Status::OK();
}

void AppendFormEncoded(std::string_view s, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
        c == '~') {
      out->push_back(static_cast<char>(c));
    } else {
      out->push_back('%');
      out->push_back(kHex[c >> 4]);
      out->push_back(kHex[c & 15]);
    }
  }
}

std::string AwsRequestBody(const AwsOptions& o,
                           const std::vector<const AwsMessage*>& messages,
                           bool batch) {
  bool sqs = o.service == AwsService::kSqs;
  std::string out;
  size_t reserve = 256;
  for (const AwsMessage* m : messages) reserve += m->body.size() * 5 / 4 + 600;
  out.reserve(reserve);
  out += "Action=";
  out += sqs ? (batch ? "SendMessageBatch" : "SendMessage")
             : (batch ? "PublishBatch" : "Publish");
  out += sqs ? "&Version=2012-11-05" : "&Version=2010-03-31";
  Param(sqs ? "QueueUrl" : "TopicArn", o.target, &out);
  if (!batch) {
    AppendMessage(o.service, "", *messages.front(), &out);
    return out;
  }
  for (size_t i = 0; i < messages.size(); ++i) {
    std::string prefix = (sqs ? "SendMessageBatchRequestEntry."
                              : "PublishBatchRequestEntries.member.") +
                         std::to_string(i + 1) + ".";
    Param(prefix + "Id", "m" + std::to_string(i + 1), &out);
    AppendMessage(o.service, prefix, *messages[i], &out);
  }
  return out;
}

const XmlElement* XmlElement::Child(std::string_view n) const {
  for (const auto& c : children) {
    if (c.name == n) return &c;
  }
  return nullptr;
}

std::string XmlElement::ChildText(std::string_view n) const {
  const XmlElement* c = Child(n);
  return c ? c->text : std::string();
}

Result<XmlElement> ParseXml(std::string_view text) {
  return XmlReader(text).Document();
}

Status ParseAwsAnswer(std::string_view body, AwsService service, bool batch,
                      size_t count, std::vector<EntryOutcome>* out) {
  out->assign(count, EntryOutcome{});
  auto doc = ParseXml(body);
  if (!doc.ok()) return doc.status();
  bool sqs = service == AwsService::kSqs;
  std::string action = sqs ? (batch ? "SendMessageBatch" : "SendMessage")
                           : (batch ? "PublishBatch" : "Publish");
  if (doc->name != action + "Response") {
    return Status::Corruption("expected <" + action + "Response>, got <" +
                              doc->name + ">");
  }
  const XmlElement* result = doc->Child(action + "Result");
  if (!result) {
    return Status::Corruption("<" + action + "Result> missing in the answer");
  }
  if (!batch) {
    if (count > 0 && !result->ChildText("MessageId").empty()) {
      (*out)[0].answered = true;
      (*out)[0].ok = true;
    }
    return Status::OK();
  }
  auto entry_index = [&](const std::string& id) -> size_t {
    if (id.size() < 2 || id.size() > 3 || id[0] != 'm') return SIZE_MAX;
    size_t n = 0;
    for (char c : std::string_view(id).substr(1)) {
      if (c < '0' || c > '9') return SIZE_MAX;
      n = n * 10 + static_cast<size_t>(c - '0');
    }
    return n >= 1 && n <= count ? n - 1 : SIZE_MAX;
  };
  auto take = [&](const XmlElement& e, bool ok) {
    size_t i = entry_index(e.ChildText("Id"));
    if (i == SIZE_MAX || (*out)[i].answered) return;  // not ours, or twice
    EntryOutcome& o = (*out)[i];
    o.answered = true;
    o.ok = ok && !e.ChildText("MessageId").empty();
    if (!ok) {
      o.code = e.ChildText("Code");
      o.message = e.ChildText("Message");
      o.sender_fault = e.ChildText("SenderFault") == "true";
    } else if (!o.ok) {
      o.answered = false;  // "successful" without a MessageId: not an ack
    }
  };
  if (sqs) {
    // <SendMessageBatchResultEntry>... and <BatchResultErrorEntry>...
    for (const auto& c : result->children) {
      if (c.name == "SendMessageBatchResultEntry") take(c, true);
      if (c.name == "BatchResultErrorEntry") take(c, false);
    }
  } else {
    // <Successful><member>... and <Failed><member>...
    for (const auto& c : result->children) {
      if (c.name != "Successful" && c.name != "Failed") continue;
      for (const auto& m : c.children) {
        if (m.name == "member") take(m, c.name == "Successful");
      }
    }
  }
  return Status::OK();
}

Status AwsErrorStatus(long http_status, std::string_view body,
                      std::string_view where) {
  std::string code, message;
  if (auto doc = ParseXml(body); doc.ok()) {
    // <ErrorResponse><Error><Type/><Code/><Message/></Error>... (and a bare
    // <Error> from some compatible servers).
    const XmlElement* err = doc->name == "Error" ? &*doc : doc->Child("Error");
    if (err) {
      code = err->ChildText("Code");
      // The first line only: a SignatureDoesNotMatch message goes on with
      // the canonical request, headers (a session token) included.
      message = err->ChildText("Message");
      message = message.substr(0, message.find('\n'));
    }
  }
  std::string text =
      std::string(where) + ": HTTP " + std::to_string(http_status);
  if (!code.empty()) {
    text += " " + Excerpt(code);  // the server's text: one bounded line
    if (!message.empty()) text += ": " + Excerpt(message);
  } else if (!body.empty()) {
    text += ": " + Excerpt(body);
  }
  if (IsOneOf(code, {"SignatureDoesNotMatch", "InvalidClientTokenId",
                     "UnrecognizedClientException", "IncompleteSignature",
                     "MissingAuthenticationToken", "ExpiredToken",
                     "InvalidSignatureException", "AccessDenied",
                     "AccessDeniedException", "AuthorizationError",
                     "InvalidAccessKeyId", "RequestExpired",
                     "RequestTimeTooSkewed"})) {
    return Status::Unavailable(
        text +
        " (AWS refused the request's credentials or signature: check the "
        "access key, secret key and session token herald found, the "
        "region, and the IAM permissions; nothing was sent)");
  }
  if (http_status == 429 || http_status >= 500 ||
      IsOneOf(code,
              {"Throttling", "ThrottlingException", "Throttled",
               "RequestThrottled", "TooManyRequestsException",
               "RequestLimitExceeded", "ServiceUnavailable", "InternalError",
               "InternalFailure", "KMSThrottling", "KMSThrottlingException",
               "ServiceUnavailableException", "SlowDown"})) {
    return Status::Unavailable(text);
  }
  return Status::Permanent(text);
}

Status AwsEntryStatus(const EntryOutcome& o, std::string_view where) {
  std::string text = std::string(where) + ": entry refused";
  if (!o.code.empty()) text += ": " + Excerpt(o.code);
  if (!o.message.empty()) text += ": " + Excerpt(o.message);
  if (o.sender_fault) {
    return Status::Permanent(text + " (SenderFault: the message itself)");
  }
  return Status::Unavailable(text + " (not a sender fault: retried)");
}

}  // namespace herald::detail
