// The CloudEvents codec (herald/cloudevents.h), against the examples of the
// CloudEvents 1.0 specification, its JSON event format and its HTTP, Kafka,
// AMQP and NATS protocol bindings (cloudevents/spec: cloudevents/spec.md,
// formats/json-format.md, bindings/*-protocol-binding.md,
// extensions/distributed-tracing.md), and in round trips of herald events.
#include "herald/cloudevents.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include "herald/json.h"
#include "herald/sender.h"

namespace herald {
namespace {

using Binding = CloudEventBinding;

// ---- the specification's examples, decoded
// ------------------------------------

TEST(CloudEventsSpec, HttpBinaryModeExample) {
  // http-protocol-binding.md 3.1.4
  MessageHeaders h = {{"Host", "webhook.example.com"},
                      {"ce-specversion", "1.0"},
                      {"ce-type", "com.example.someevent"},
                      {"ce-time", "2018-04-05T03:56:24Z"},
                      {"ce-id", "1234-1234-1234"},
                      {"ce-source", "/mycontext/subcontext"},
                      {"Content-Type", "application/json; charset=utf-8"},
                      {"Content-Length", "13"}};
  auto d = DecodeCloudEventHeaders(h, R"({"app":"data"})", Binding::kHttp);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.id, "1234-1234-1234");
  EXPECT_EQ(d->event.type, "com.example.someevent");
  EXPECT_EQ(d->source, "/mycontext/subcontext");
  EXPECT_EQ(d->event.content_type, "application/json; charset=utf-8");
  EXPECT_EQ(d->event.payload, R"({"app":"data"})");
  EXPECT_EQ(d->event.occurred_at_us, *ParseRfc3339("2018-04-05T03:56:24Z"));
  EXPECT_EQ(d->event.metadata, "{}");
}

TEST(CloudEventsSpec, HttpHeaderNamesAreCaseInsensitive) {
  MessageHeaders h = {{"CE-SpecVersion", "1.0"},
                      {"Ce-Type", "t"},
                      {"CE-ID", "1"},
                      {"ce-Source", "/s"}};
  auto d = DecodeCloudEventHeaders(h, "", Binding::kHttp);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.type, "t");
  EXPECT_EQ(d->event.content_type, "application/octet-stream");
}

TEST(CloudEventsSpec, HttpPercentEncodingExample) {
  // http-protocol-binding.md 3.1.3.2: "Euro € 😀"
  Event e;
  e.id = "1";
  e.type = "Euro \xE2\x82\xAC \xF0\x9F\x98\x80";
  e.stream = "s";
  auto h = EncodeCloudEventHeaders(e, "/s", Binding::kHttp);
  std::string type;
  for (const auto& [k, v] : h) {
    if (k == "ce-type") type = v;
  }
  EXPECT_EQ(type, "Euro%20%E2%82%AC%20%F0%9F%98%80");
  auto d = DecodeCloudEventHeaders(h, "", Binding::kHttp);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->event.type, e.type);
  // Decoding accepts lower-case hex, needless encoding and the older
  // double-quoted form; it refuses encodings of invalid UTF-8.
  MessageHeaders base = {
      {"ce-specversion", "1.0"}, {"ce-id", "1"}, {"ce-source", "/s"}};
  auto with_type = [&](const std::string& v) {
    MessageHeaders h2 = base;
    h2.emplace_back("ce-type", v);
    return DecodeCloudEventHeaders(h2, "", Binding::kHttp);
  };
  EXPECT_EQ(with_type("Euro%20%e2%82%ac")->event.type, "Euro \xE2\x82\xAC");
  EXPECT_EQ(with_type("%41bc")->event.type, "Abc");
  EXPECT_EQ(with_type("\"quoted \\\"value\\\"\"")->event.type,
            "quoted \"value\"");
  EXPECT_FALSE(with_type("%C0%A0").ok()) << "overlong U+0020 must be refused";
  EXPECT_FALSE(with_type("100%").ok());
  EXPECT_FALSE(with_type("%zz").ok());
}

TEST(CloudEventsSpec, KafkaBinaryModeExample) {
  // kafka-protocol-binding.md 3.2.5
  MessageHeaders h = {{"ce_specversion", "1.0"},
                      {"ce_type", "com.example.someevent"},
                      {"ce_source", "/mycontext/subcontext"},
                      {"ce_id", "1234-1234-1234"},
                      {"ce_time", "2018-04-05T03:56:24Z"},
                      {"content-type", "application/avro"}};
  auto d =
      DecodeCloudEventHeaders(h, std::string("\x02\x06", 2), Binding::kKafka);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.id, "1234-1234-1234");
  EXPECT_EQ(d->event.content_type, "application/avro");
  EXPECT_EQ(d->event.payload, std::string("\x02\x06", 2));
  EXPECT_EQ(d->source, "/mycontext/subcontext");
  // Kafka values are not percent-decoded.
  h.emplace_back("ce_comexampleextension1", "50%25 off");
  d = DecodeCloudEventHeaders(h, "", Binding::kKafka);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->event.metadata, R"({"comexampleextension1":"50%25 off"})");
}

TEST(CloudEventsSpec, AmqpBinaryModeExampleWithBothSeparators) {
  // amqp-protocol-binding.md 3.1.4 (':'), and 3.1.3.1 ('_', JMS-friendly)
  for (std::string prefix : {"cloudEvents:", "cloudEvents_"}) {
    MessageHeaders h = {{"content-type", "application/json; charset=utf-8"},
                        {prefix + "specversion", "1.0"},
                        {prefix + "type", "com.example.someevent"},
                        {prefix + "time", "2018-04-05T03:56:24Z"},
                        {prefix + "id", "1234-1234-1234"},
                        {prefix + "source", "/mycontext/subcontext"}};
    auto d = DecodeCloudEventHeaders(h, "{}", Binding::kAmqp);
    ASSERT_TRUE(d.ok()) << prefix << ": " << d.status().message();
    EXPECT_EQ(d->event.type, "com.example.someevent");
    EXPECT_EQ(d->event.content_type, "application/json; charset=utf-8");
    EXPECT_EQ(d->source, "/mycontext/subcontext");
  }
}

TEST(CloudEventsSpec, NatsBinaryModeExample) {
  // nats-protocol-binding.md 3.1.4
  MessageHeaders h = {{"ce-specversion", "1.0"},
                      {"ce-type", "com.example.someevent"},
                      {"ce-time", "2018-04-05T03:56:24Z"},
                      {"ce-id", "1234-1234-1234"},
                      {"ce-source", "/mycontext/subcontext"},
                      {"ce-datacontenttype", "application/json"}};
  auto d = DecodeCloudEventHeaders(h, "[1]", Binding::kNats);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.content_type, "application/json");
  EXPECT_EQ(d->event.payload, "[1]");
}

TEST(CloudEventsSpec, JsonFormatBinaryDataExample) {
  // json-format.md 4: data_base64, extensions of two types
  auto d = DecodeCloudEventJson(R"({
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "id" : "A234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "application/vnd.apache.thrift.binary",
    "data_base64" : "AAECAwQ="
  })");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.id, "A234-1234-1234");
  EXPECT_EQ(d->event.content_type, "application/vnd.apache.thrift.binary");
  EXPECT_EQ(d->event.payload, std::string("\0\1\2\3\4", 5));
  EXPECT_EQ(d->event.metadata,
            R"({"comexampleextension1":"value","comexampleothervalue":5})");
}

TEST(CloudEventsSpec, JsonFormatXmlStringDataExample) {
  auto d = DecodeCloudEventJson(R"({
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "id" : "B234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "unsetextension": null,
    "datacontenttype" : "application/xml",
    "data" : "<much wow=\"xml\"/>"
  })");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.payload, R"(<much wow="xml"/>)");
  EXPECT_EQ(d->event.content_type, "application/xml");
  EXPECT_EQ(d->event.metadata.find("unsetextension"), std::string::npos);
}

TEST(CloudEventsSpec, JsonFormatJsonDataExamples) {
  auto d = DecodeCloudEventJson(R"({
    "specversion" : "1.0",
    "type" : "com.example.someevent",
    "source" : "/mycontext",
    "subject": null,
    "id" : "C234-1234-1234",
    "time" : "2018-04-05T17:31:00Z",
    "comexampleextension1" : "value",
    "comexampleothervalue" : 5,
    "datacontenttype" : "application/json",
    "data" : {
        "appinfoA" : "abc",
        "appinfoB" : 123,
        "appinfoC" : true
    }
  })");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.stream, "");
  auto data = Json::Parse(d->event.payload);
  ASSERT_TRUE(data.ok()) << d->event.payload;
  EXPECT_EQ(data->Find("appinfoB")->raw(), "123");

  d = DecodeCloudEventJson(
      R"({"specversion":"1.0","type":"com.example.someevent",
    "source":"/mycontext","subject":null,"id":"C234-1234-1234",
    "datacontenttype":"application/json","data":1.5})");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->event.payload, "1.5");
}

TEST(CloudEventsSpec, JsonFormatImpliedJsonAndNoContentType) {
  // Without datacontenttype, `data` is JSON: the string stays quoted, as the
  // spec's binary re-encoding shows.
  auto d = DecodeCloudEventJson(R"({
    "specversion" : "1.0", "type" : "com.example.someevent",
    "source" : "/mycontext", "subject": null, "id" : "D234-1234-1234",
    "time" : "2018-04-05T17:31:00Z", "comexampleextension1" : "value",
    "comexampleothervalue" : 5, "data" : "I'm just a string"})");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.content_type, "application/json");
  EXPECT_EQ(d->event.payload, "\"I'm just a string\"");
  // data_base64 without datacontenttype: no content type is inferred.
  d = DecodeCloudEventJson(R"({"specversion" : "1.0",
    "type" : "com.example.someevent", "source" : "/mycontext",
    "id" : "D234-1234-1234", "data_base64" : "eyAieHl6IjogMTIzIH0="})");
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(d->event.payload, R"({ "xyz": 123 })");
  EXPECT_EQ(d->event.content_type, "application/octet-stream");
}

TEST(CloudEventsSpec, RequiredAttributesAndVersion) {
  EXPECT_FALSE(DecodeCloudEventJson(
                   R"({"specversion":"0.3","id":"1","source":"/","type":"t"})")
                   .ok());
  EXPECT_FALSE(
      DecodeCloudEventJson(R"({"specversion":"1.0","source":"/","type":"t"})")
          .ok());
  EXPECT_FALSE(
      DecodeCloudEventJson(R"({"specversion":"1.0","id":"1","type":"t"})")
          .ok());
  EXPECT_FALSE(
      DecodeCloudEventJson(R"({"id":"1","source":"/","type":"t"})").ok());
  EXPECT_FALSE(DecodeCloudEventJson(
                   R"({"specversion":"1.0","id":1,"source":"/","type":"t"})")
                   .ok());
  EXPECT_FALSE(DecodeCloudEventJson(R"({"specversion":"1.0","id":"1",)"
                                    R"("source":"/","type":"t","data":1,)"
                                    R"("data_base64":"AA=="})")
                   .ok());
  EXPECT_FALSE(DecodeCloudEventJson(R"({"specversion":"1.0","id":"1",)"
                                    R"("source":"/","type":"t",)"
                                    R"("time":"2023-02-30T00:00:00Z"})")
                   .ok());
  EXPECT_FALSE(DecodeCloudEventHeaders(
                   {{"ce-id", "1"}, {"ce-source", "/"}, {"ce-type", "t"}}, "",
                   Binding::kHttp)
                   .ok());
}

TEST(CloudEventsSpec, DistributedTracingExtension) {
  // extensions/distributed-tracing.md: traceparent and tracestate are
  // extension attributes like any other (ce-traceparent over HTTP).
  MessageHeaders h = {
      {"ce-specversion", "1.0"},
      {"ce-type", "com.example.someevent"},
      {"ce-source", "/mycontext"},
      {"ce-id", "1"},
      {"ce-traceparent",
       "  00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"},
      {"ce-tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
      {"traceparent",
       "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}};
  auto d = DecodeCloudEventHeaders(h, "", Binding::kHttp);
  ASSERT_TRUE(d.ok()) << d.status().message();
  EXPECT_EQ(
      d->event.metadata,
      R"({"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01",)"
      R"("tracestate":"rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"})");
}

// ---- herald events, encoded and decoded in every binding
// ----------------------

Event Sample() {
  Event e;
  e.id = "0190a5d0-ac96-774b-bcce-b302099a8057";
  e.position = 42;
  e.stream = "commande-\xC3\xA9t\xC3\xA9 42";
  e.stream_version = 3;
  e.type = "order.paid";
  e.payload = R"({"total":12.5})";
  e.metadata =
      R"({"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",)"
      R"("tracestate":"rojo=00f067aa0ba902b7","correlation_id":"c-1",)"
      R"("Causation-ID":"c 0%","retries":3,"source":"web","xid":"q"})";
  e.occurred_at_us = 1795340000123456;
  return e;
}

// What decoding gives back of Sample()'s metadata: names reduced, values
// as strings; escaped names ("source" went as "xsource") come back.
constexpr std::string_view kDecodedMetadata =
    R"({"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",)"
    R"("tracestate":"rojo=00f067aa0ba902b7","correlationid":"c-1",)"
    R"("causationid":"c 0%","retries":"3","source":"web","xid":"q"})";

void ExpectDecodedSample(const DecodedCloudEvent& d, const Event& e) {
  EXPECT_EQ(d.source, "/orders");
  EXPECT_EQ(d.event.id, e.id);
  EXPECT_EQ(d.event.stream, e.stream);
  EXPECT_EQ(d.event.type, e.type);
  EXPECT_EQ(d.event.content_type, e.content_type);
  EXPECT_EQ(d.event.payload, e.payload);
  EXPECT_EQ(d.event.occurred_at_us, e.occurred_at_us);
  EXPECT_EQ(d.event.position, e.position);
  EXPECT_EQ(d.event.stream_version, e.stream_version);
}

TEST(CloudEvents, EveryBindingRoundTrips) {
  Event e = Sample();
  ASSERT_TRUE(ValidateEvent(e).ok()) << ValidateEvent(e).message();
  for (Binding b :
       {Binding::kHttp, Binding::kKafka, Binding::kAmqp, Binding::kNats}) {
    auto h = EncodeCloudEventHeaders(e, "/orders", b);
    auto d = DecodeCloudEventHeaders(h, e.payload, b);
    ASSERT_TRUE(d.ok()) << static_cast<int>(b) << ": " << d.status().message();
    ExpectDecodedSample(*d, e);
    EXPECT_EQ(d->event.metadata, kDecodedMetadata) << static_cast<int>(b);
  }
  std::string json;
  AppendCloudEventJson(e, "/orders", &json);
  EXPECT_TRUE(IsValidJson(json)) << json;
  auto d = DecodeCloudEventJson(json);
  ASSERT_TRUE(d.ok()) << d.status().message();
  ExpectDecodedSample(*d, e);
  EXPECT_EQ(d->event.metadata, kDecodedMetadata);
}

TEST(CloudEvents, EncodingIntoReusedHeadersEqualsAFreshEncoding) {
  // A sender keeps one MessageHeaders and encodes event after event into
  // it: what an earlier, longer event left (more extensions, longer values,
  // percent-encoded bytes) must not show in a later one.
  Event big = Sample();
  Event small = Sample();
  small.metadata = "{}";
  small.id = "1";
  small.stream = "s";
  for (Binding b :
       {Binding::kHttp, Binding::kKafka, Binding::kAmqp, Binding::kNats}) {
    MessageHeaders reused;
    for (const Event* e : {&big, &small, &big, &small}) {
      EncodeCloudEventHeadersInto(*e, "/orders", b, &reused);
      EXPECT_EQ(reused, EncodeCloudEventHeaders(*e, "/orders", b))
          << static_cast<int>(b) << " " << e->id;
    }
  }
}

TEST(CloudEvents, BinaryPayloadsRoundTrip) {
  Event e = Sample();
  e.content_type = "application/octet-stream";
  e.payload = std::string("\xff\x00\xfe\x80", 4);
  std::string json;
  AppendCloudEventJson(e, "/orders", &json);
  EXPECT_NE(json.find("\"data_base64\":\"/wD+gA==\""), std::string::npos)
      << json;
  auto d = DecodeCloudEventJson(json);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->event.payload, e.payload);
  for (Binding b :
       {Binding::kHttp, Binding::kKafka, Binding::kAmqp, Binding::kNats}) {
    auto hd = DecodeCloudEventHeaders(EncodeCloudEventHeaders(e, "/o", b),
                                      e.payload, b);
    ASSERT_TRUE(hd.ok());
    EXPECT_EQ(hd->event.payload, e.payload);
    EXPECT_EQ(hd->event.content_type, e.content_type);
  }
}

TEST(CloudEvents, NamesPerBinding) {
  Event e = Sample();
  e.metadata = R"({"traceparent":"tp"})";
  auto names = [&](Binding b) {
    std::vector<std::string> out;
    for (const auto& [k, v] : EncodeCloudEventHeaders(e, "/o", b)) {
      out.push_back(k);
    }
    return out;
  };
  using V = std::vector<std::string>;
  EXPECT_EQ(names(Binding::kHttp),
            (V{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject",
               "ce-time", "ce-position", "ce-streamversion", "ce-traceparent",
               "Content-Type"}));
  EXPECT_EQ(names(Binding::kKafka),
            (V{"ce_specversion", "ce_id", "ce_source", "ce_type", "ce_subject",
               "ce_time", "ce_position", "ce_streamversion", "ce_traceparent",
               "content-type"}));
  EXPECT_EQ(
      names(Binding::kAmqp),
      (V{"cloudEvents:specversion", "cloudEvents:id", "cloudEvents:source",
         "cloudEvents:type", "cloudEvents:subject", "cloudEvents:time",
         "cloudEvents:position", "cloudEvents:streamversion",
         "cloudEvents:traceparent", "content-type"}));
  EXPECT_EQ(names(Binding::kNats),
            (V{"ce-specversion", "ce-id", "ce-source", "ce-type", "ce-subject",
               "ce-time", "ce-datacontenttype", "ce-position",
               "ce-streamversion", "ce-traceparent"}));
  // Values: percent-encoded in HTTP and NATS, as they are in Kafka and AMQP.
  for (const auto& [k, v] : EncodeCloudEventHeaders(e, "/o", Binding::kHttp)) {
    if (k == "ce-subject") {
      EXPECT_EQ(v, "commande-%C3%A9t%C3%A9%2042");
    }
  }
  for (const auto& [k, v] : EncodeCloudEventHeaders(e, "/o", Binding::kKafka)) {
    if (k == "ce_subject") {
      EXPECT_EQ(v, e.stream);
    }
  }
  // The sender's envelope is the HTTP binding.
  EXPECT_EQ(CloudEventHeaders(e, "/o"),
            EncodeCloudEventHeaders(e, "/o", Binding::kHttp));
}

TEST(CloudEvents, StructuredModeKeepsItsShapeAndAddsExtensions) {
  Event e = Sample();
  e.metadata = R"({"correlation_id":"c-1","n":{"a":[1, 2]}})";
  std::string json;
  AppendCloudEventJson(e, "/orders", &json);
  EXPECT_EQ(json,
            "{\"specversion\":\"1.0\",\"id\":\"" + e.id +
                "\",\"source\":\"/orders\",\"type\":\"order.paid\","
                "\"subject\":\"commande-\xC3\xA9t\xC3\xA9 42\","
                "\"time\":\"2026-11-22T09:33:20.123456Z\","
                "\"datacontenttype\":\"application/json\",\"position\":42,"
                "\"streamversion\":3,\"correlationid\":\"c-1\","
                "\"n\":\"{\\\"a\\\":[1, 2]}\",\"data\":{\"total\":12.5}}");
  // A JSON payload spread over lines stays on one line (file: senders).
  e.payload = "{\n\"a\":1\n}";
  json.clear();
  AppendCloudEventJson(e, "/orders", &json);
  EXPECT_EQ(json.find('\n'), std::string::npos);
}

TEST(CloudEvents, MetadataKeysThatCollideAreRefusedAtAppend) {
  Event e;
  e.stream = "s";
  e.type = "t";
  e.payload = "{}";
  auto check = [&](const char* metadata) {
    e.metadata = metadata;
    return ValidateEvent(e);
  };
  EXPECT_TRUE(check(R"({"traceparent":"a","trace_state":"b"})").ok());
  Status s = check(R"({"trace_id":"a","traceId":"b"})");
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("'trace_id' and 'traceId'"), std::string::npos)
      << s.message();
  EXPECT_NE(s.message().find("'traceid'"), std::string::npos);
  s = check(R"({"_":1})");
  EXPECT_TRUE(s.IsInvalidArgument());
  EXPECT_NE(s.message().find("'_'"), std::string::npos) << s.message();
  EXPECT_FALSE(check(R"({"\u65e5\u672c":1})").ok());
  // Context attribute names are escaped, not refused: they round-trip.
  EXPECT_TRUE(check(R"({"source":"a","id":"b","xsource":"c","data":1})").ok());
  EXPECT_FALSE(check(R"({"source":"a","SOURCE":"b"})").ok());
  EXPECT_FALSE(check("[]").ok());
  EXPECT_FALSE(check("{\"a\":1").ok());
}

TEST(CloudEvents, ReservedNamesAreEscapedWithOneMoreX) {
  Event e = Sample();
  e.metadata =
      R"({"source":"1","xsource":"2","xxtime":"3","streamversion":"4","x":"5"})";
  ASSERT_TRUE(ValidateEvent(e).ok());
  auto attrs = CloudEventAttributes(e, "/o");
  std::vector<std::string> ext;
  for (size_t i = 9; i < attrs.size(); ++i) ext.push_back(attrs[i].first);
  EXPECT_EQ(ext, (std::vector<std::string>{"xsource", "xxsource", "xxxtime",
                                           "xstreamversion", "x"}));
  auto d = DecodeCloudEventHeaders(
      EncodeCloudEventHeaders(e, "/o", Binding::kKafka), "", Binding::kKafka);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->event.metadata, e.metadata);
  EXPECT_EQ(d->source, "/o");
  EXPECT_EQ(d->event.stream_version, 3);
}

TEST(CloudEvents, StoredMetadataThatCollidesStillEncodes) {
  // Stored before the rule: the first key of a name wins, nameless keys are
  // left out, and the rest still goes.
  Event e = Sample();
  e.metadata = R"({"a_b":"1","aB":"2","!":"3","c":"4"})";
  auto attrs = CloudEventAttributes(e, "/o");
  ASSERT_EQ(attrs.size(), 11u);
  EXPECT_EQ(attrs[9], (std::pair<std::string, std::string>{"ab", "1"}));
  EXPECT_EQ(attrs[10], (std::pair<std::string, std::string>{"c", "4"}));
}

}  // namespace
}  // namespace herald

namespace herald {
namespace {

// Issue 12, item 2: metadata reaches a receiver; here the file: sender's
// structured lines (the HTTP sender's headers are CloudEventHeaders above).
TEST(CloudEventsSenders, FileLinesCarryMetadataAsExtensions) {
  char dir_template[] = "/tmp/herald-ce-XXXXXX";
  ASSERT_NE(::mkdtemp(dir_template), nullptr);
  std::string path = std::string(dir_template) + "/out.jsonl";
  RouteConfig route;
  route.name = "r";
  route.sender = "file:" + path;
  auto sender = MakeSender(route);
  ASSERT_TRUE(sender.ok()) << sender.status().message();
  Event e;
  e.id = "0190a5d0-ac96-774b-bcce-b302099a8057";
  e.stream = "s";
  e.type = "t";
  e.payload = "{}";
  e.metadata =
      R"({"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",)"
      R"("correlation_id":"c-1"})";
  std::vector<Event> events = {e};
  std::vector<SendResult> results(1);
  (*sender)->Send(events, results,
                  std::chrono::steady_clock::now() + std::chrono::seconds(10));
  ASSERT_TRUE(results[0].status.ok()) << results[0].status.message();
  std::FILE* f = std::fopen(path.c_str(), "rb");
  ASSERT_NE(f, nullptr);
  char buf[4096];
  size_t n = std::fread(buf, 1, sizeof buf, f);
  std::fclose(f);
  std::string line(buf, n);
  std::remove(path.c_str());
  ::rmdir(dir_template);
  ASSERT_FALSE(line.empty());
  line.pop_back();  // '\n'
  auto d = DecodeCloudEventJson(line);
  ASSERT_TRUE(d.ok()) << d.status().message() << "\n" << line;
  EXPECT_EQ(
      d->event.metadata,
      R"({"traceparent":"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",)"
      R"("correlationid":"c-1"})");
}

}  // namespace
}  // namespace herald
