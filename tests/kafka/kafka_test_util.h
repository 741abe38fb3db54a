// Test helpers for the Kafka sender: librdkafka's mock cluster
// (rdkafka_mock.h: Kafka's protocol served on 127.0.0.1 by librdkafka
// itself; no Kafka broker can run on this machine), in this process or as
// the herald_test_kafka_mock process for the `herald` binary, and a real
// consumer reading partitions back with assign() (no group join).
// Header-only; needs librdkafka.
#pragma once

#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <sys/stat.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "support/test_util.h"

namespace herald::testing {

// Kafka's Java client, Utils.murmur2, written out again here from its
// definition (not librdkafka's code), so the test checks librdkafka's
// partitioner against an independent implementation.
inline int32_t JavaMurmur2(const std::string& key) {
  const uint32_t m = 0x5bd1e995;
  const int r = 24;
  const size_t length = key.size();
  uint32_t h = 0x9747b28c ^ static_cast<uint32_t>(length);
  const auto* data = reinterpret_cast<const unsigned char*>(key.data());
  for (size_t i = 0; i + 4 <= length; i += 4) {
    uint32_t k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) |
                 (static_cast<uint32_t>(data[i + 3]) << 24);
    k *= m;
    k ^= k >> r;
    k *= m;
    h *= m;
    h ^= k;
  }
  const size_t tail = length & ~size_t{3};
  switch (length % 4) {
    case 3:
      h ^= static_cast<uint32_t>(data[tail + 2]) << 16;
      [[fallthrough]];
    case 2:
      h ^= static_cast<uint32_t>(data[tail + 1]) << 8;
      [[fallthrough]];
    case 1:
      h ^= data[tail];
      h *= m;
  }
  h ^= h >> 13;
  h *= m;
  h ^= h >> 15;
  return static_cast<int32_t>(h);
}

// Java's DefaultPartitioner for a keyed record.
inline int32_t JavaPartition(const std::string& key, int partitions) {
  return (JavaMurmur2(key) & 0x7fffffff) % partitions;
}

// A mock cluster of `brokers` brokers in this process; partition p of each
// topic it creates is led by broker (p % brokers) + 1.
class MockCluster {
 public:
  explicit MockCluster(int brokers = 3) : brokers_(brokers) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    // The handle only hosts the cluster: quiet about having no brokers.
    rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk_) mc_ = rd_kafka_mock_cluster_new(rk_, brokers);
  }
  ~MockCluster() {
    if (mc_) rd_kafka_mock_cluster_destroy(mc_);
    if (rk_) rd_kafka_destroy(rk_);
  }
  MockCluster(const MockCluster&) = delete;
  MockCluster& operator=(const MockCluster&) = delete;

  bool ok() const { return mc_ != nullptr; }
  std::string bootstraps() const {
    return mc_ ? rd_kafka_mock_cluster_bootstraps(mc_) : "";
  }
  rd_kafka_mock_cluster_t* get() { return mc_; }
  int brokers() const { return brokers_; }

  // Creates a topic; with `fixed_leaders` partition p is led by broker
  // (p % brokers) + 1, else the mock picks.
  bool CreateTopic(const std::string& name, int partitions,
                   bool fixed_leaders = true) {
    if (rd_kafka_mock_topic_create(mc_, name.c_str(), partitions,
                                   brokers_ < 3 ? brokers_ : 3)) {
      return false;
    }
    for (int p = 0; fixed_leaders && p < partitions; ++p) {
      if (rd_kafka_mock_partition_set_leader(mc_, name.c_str(), p,
                                             p % brokers_ + 1)) {
        return false;
      }
    }
    return true;
  }
  bool SetLeader(const std::string& topic, int partition, int broker) {
    return rd_kafka_mock_partition_set_leader(mc_, topic.c_str(), partition,
                                              broker) ==
           RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  // The `k`-th Produce request that broker `broker` gets from now on
  // (k = 1..6) fails with `err` after `rtt_ms` (err 0: answered OK, late);
  // the ones before it are answered normally.
  bool FailNthProduce(int broker, int k, rd_kafka_resp_err_t err,
                      int rtt_ms = 0) {
    const auto ok = RD_KAFKA_RESP_ERR_NO_ERROR;
    rd_kafka_resp_err_t r;
    switch (k) {
      case 1:
        r = rd_kafka_mock_broker_push_request_error_rtts(mc_, broker, 0, 1, err,
                                                         rtt_ms);
        break;
      case 2:
        r = rd_kafka_mock_broker_push_request_error_rtts(mc_, broker, 0, 2, ok,
                                                         0, err, rtt_ms);
        break;
      case 3:
        r = rd_kafka_mock_broker_push_request_error_rtts(mc_, broker, 0, 3, ok,
                                                         0, ok, 0, err, rtt_ms);
        break;
      case 4:
        r = rd_kafka_mock_broker_push_request_error_rtts(
            mc_, broker, 0, 4, ok, 0, ok, 0, ok, 0, err, rtt_ms);
        break;
      case 5:
        r = rd_kafka_mock_broker_push_request_error_rtts(
            mc_, broker, 0, 5, ok, 0, ok, 0, ok, 0, ok, 0, err, rtt_ms);
        break;
      case 6:
        r = rd_kafka_mock_broker_push_request_error_rtts(
            mc_, broker, 0, 6, ok, 0, ok, 0, ok, 0, ok, 0, ok, 0, err, rtt_ms);
        break;
      default:
        return false;
    }
    return r == RD_KAFKA_RESP_ERR_NO_ERROR;
  }
  // The next Produce requests fail with `errs`, one each.
  void FailProduce(std::vector<rd_kafka_resp_err_t> errs) {
    rd_kafka_mock_push_request_errors_array(mc_, 0 /* Produce */, errs.size(),
                                            errs.data());
  }

 private:
  int brokers_;
  rd_kafka_t* rk_ = nullptr;
  rd_kafka_mock_cluster_t* mc_ = nullptr;
};

// The herald_test_kafka_mock process (tests/kafka/mock_cluster.cc): its
// bootstrap address, and its commands (down/up B, errors API E..., clear
// API, topic NAME:P) sent through a FIFO on its stdin.
class MockClusterProcess {
 public:
  // `fixed_leaders`: partition p led by broker (p % brokers) + 1 (slow to
  // set up for many partitions); otherwise the mock picks.
  MockClusterProcess(const std::string& binary, int brokers,
                     const std::vector<std::string>& topics,
                     bool fixed_leaders = true) {
    fifo_ = dir_.file("control");
    ::mkfifo(fifo_.c_str(), 0600);
    std::vector<std::string> argv{binary, "--brokers", std::to_string(brokers)};
    if (fixed_leaders) argv.push_back("--fixed-leaders");
    for (const auto& t : topics) {
      argv.push_back("--topic");
      argv.push_back(t);
    }
    Child::Options o;
    o.stdin_path = fifo_;
    o.stdout_path = dir_.file("out");
    o.stderr_path = dir_.file("err");
    child_ = std::make_unique<Child>(argv, o);
    control_ = ::open(fifo_.c_str(), O_WRONLY | O_CLOEXEC);
    WaitFor([&] { return Lines().size() >= 1; }, std::chrono::seconds(60));
    auto lines = Lines();
    if (!lines.empty()) bootstraps_ = lines[0];
  }
  ~MockClusterProcess() {
    if (control_ >= 0) ::close(control_);
    if (child_) {
      child_->Signal(SIGTERM);
      child_->Wait();
    }
  }
  MockClusterProcess(const MockClusterProcess&) = delete;
  MockClusterProcess& operator=(const MockClusterProcess&) = delete;

  bool ok() const { return !bootstraps_.empty(); }
  const std::string& bootstraps() const { return bootstraps_; }
  std::string err() const { return Slurp(dir_.file("err")); }

  // Sends one command; its answer ("ok" or "error ...").
  std::string Command(const std::string& line) {
    size_t before = Lines().size();
    std::string l = line + "\n";
    if (::write(control_, l.data(), l.size()) !=
        static_cast<ssize_t>(l.size())) {
      return "error writing the command";
    }
    WaitFor([&] { return Lines().size() > before; }, std::chrono::seconds(10));
    auto lines = Lines();
    return lines.size() > before ? lines.back() : "error no answer";
  }
  // Ends it with SIGTERM; its exit status.
  int Stop() {
    child_->Signal(SIGTERM);
    int rc = child_->Wait();
    child_.reset();
    return rc;
  }

 private:
  static std::string Slurp(const std::string& path) {
    std::string s;
    if (FILE* f = std::fopen(path.c_str(), "rb")) {
      char buf[4096];
      size_t n;
      while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
      std::fclose(f);
    }
    return s;
  }
  std::vector<std::string> Lines() const {
    std::string text = Slurp(dir_.file("out"));
    std::vector<std::string> out;
    size_t from = 0;
    for (size_t nl; (nl = text.find('\n', from)) != std::string::npos;
         from = nl + 1) {
      out.push_back(text.substr(from, nl - from));
    }
    return out;
  }

  TempDir dir_;
  std::string fifo_;
  int control_ = -1;
  std::unique_ptr<Child> child_;
  std::string bootstraps_;
};

// One record as a consumer reads it.
struct KafkaRecord {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  int64_t timestamp_ms = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string Header(const std::string& name) const {
    for (const auto& [n, v] : headers) {
      if (n == name) return v;
    }
    return "";
  }
};

// A consumer that assigns every partition of `topic` from the beginning
// (no consumer group join) and keeps what it read.
class KafkaReader {
 public:
  KafkaReader(const std::string& bootstraps, const std::string& topic,
              int partitions)
      : topic_(topic), partitions_(partitions) {
    char errstr[512];
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps.c_str(), errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "group.id", "herald-test-reader", errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr,
                      sizeof errstr);
    rd_kafka_conf_set(conf, "enable.partition.eof", "false", errstr,
                      sizeof errstr);
    rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof errstr);
    if (!rk_) return;
    rd_kafka_topic_partition_list_t* parts =
        rd_kafka_topic_partition_list_new(partitions);
    for (int p = 0; p < partitions; ++p) {
      rd_kafka_topic_partition_list_add(parts, topic.c_str(), p)->offset =
          RD_KAFKA_OFFSET_BEGINNING;
    }
    rd_kafka_assign(rk_, parts);
    rd_kafka_topic_partition_list_destroy(parts);
  }
  ~KafkaReader() {
    if (rk_) {
      rd_kafka_consumer_close(rk_);
      rd_kafka_destroy(rk_);
    }
  }
  KafkaReader(const KafkaReader&) = delete;
  KafkaReader& operator=(const KafkaReader&) = delete;

  // Reads until `want` records were read in all, or `timeout` passed.
  const std::vector<KafkaRecord>& ReadUntil(size_t want,
                                            std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (records_.size() < want &&
           std::chrono::steady_clock::now() < deadline) {
      Poll(100);
    }
    return records_;
  }
  // Reads for `quiet` with nothing new (to see that nothing more comes).
  const std::vector<KafkaRecord>& Drain(std::chrono::milliseconds quiet) {
    auto until = std::chrono::steady_clock::now() + quiet;
    while (std::chrono::steady_clock::now() < until) {
      if (Poll(50)) until = std::chrono::steady_clock::now() + quiet;
    }
    return records_;
  }
  // Reads everything the topic holds now: as many records as its
  // partitions' high watermarks say (log start 0: nothing was deleted).
  const std::vector<KafkaRecord>& ReadAll(std::chrono::milliseconds timeout) {
    int64_t total = 0;
    for (int p = 0; p < partitions_; ++p) {
      int64_t low = 0, high = 0;
      if (rd_kafka_query_watermark_offsets(rk_, topic_.c_str(), p, &low, &high,
                                           5000) ==
          RD_KAFKA_RESP_ERR_NO_ERROR) {
        total += high - low;
      }
    }
    return ReadUntil(static_cast<size_t>(total), timeout);
  }
  const std::vector<KafkaRecord>& records() const { return records_; }

 private:
  bool Poll(int ms) {
    rd_kafka_message_t* m = rd_kafka_consumer_poll(rk_, ms);
    if (!m) return false;
    bool got = false;
    if (!m->err) {
      KafkaRecord r;
      r.topic = rd_kafka_topic_name(m->rkt);
      r.partition = m->partition;
      r.offset = m->offset;
      if (m->key) r.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload) {
        r.value.assign(static_cast<const char*>(m->payload), m->len);
      }
      r.timestamp_ms = rd_kafka_message_timestamp(m, nullptr);
      rd_kafka_headers_t* h = nullptr;
      if (rd_kafka_message_headers(m, &h) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const char* name;
        const void* value;
        size_t size;
        for (size_t i = 0;
             rd_kafka_header_get_all(h, i, &name, &value, &size) ==
             RD_KAFKA_RESP_ERR_NO_ERROR;
             ++i) {
          r.headers.emplace_back(
              name, std::string(static_cast<const char*>(value), size));
        }
      }
      records_.push_back(std::move(r));
      got = true;
    }
    rd_kafka_message_destroy(m);
    return got;
  }

  std::string topic_;
  int partitions_;
  rd_kafka_t* rk_ = nullptr;
  std::vector<KafkaRecord> records_;
};

}  // namespace herald::testing
