// DieAtAck: a ConsumerSource wrapper for the consumer child processes of
// the end-to-end tests (tests/consumer, tests/broker_consumer) that
// SIGKILLs its own process when the acknowledgements handed to it reach a
// count, before the source it wraps hears of the last ones. The consumer
// acknowledges only after a delivery's inbox transaction committed, so the
// crash lands every time in the window between the commit and the
// acknowledgement: a wrapper that fails on cue. Header-only. Thread
// safety: that of the wrapped source; the consumer calls Ack from its
// source thread only, so the count needs no lock.
#pragma once

#include <signal.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "herald/consumer_source.h"

namespace herald::testing {

class DieAtAck final : public ConsumerSource {
 public:
  // Dies at the acknowledgement that brings the count to `n` or more; n <=
  // 0: never.
  DieAtAck(std::unique_ptr<ConsumerSource> inner, int64_t n)
      : inner_(std::move(inner)), die_at_(n) {}
  Status Start() override { return inner_->Start(); }
  Result<std::vector<SourceDelivery>> Poll(
      int max, std::chrono::milliseconds timeout) override {
    return inner_->Poll(max, timeout);
  }
  Status Ack(std::span<const uint64_t> handles) override {
    acked_ += static_cast<int64_t>(handles.size());
    if (die_at_ > 0 && acked_ >= die_at_) {
      std::fprintf(stderr, "consumer child: dying before acknowledging\n");
      std::fflush(stderr);
      ::raise(SIGKILL);
    }
    return inner_->Ack(handles);
  }
  Status Release(std::span<const uint64_t> handles) override {
    return inner_->Release(handles);
  }
  void KeepAlive(std::span<const uint64_t> handles) override {
    inner_->KeepAlive(handles);
  }
  std::optional<int64_t> Lag() override { return inner_->Lag(); }
  void Wake() override { inner_->Wake(); }
  void Close() override { inner_->Close(); }
  std::string_view kind() const override { return inner_->kind(); }

 private:
  std::unique_ptr<ConsumerSource> inner_;
  int64_t die_at_;
  int64_t acked_ = 0;
};

}  // namespace herald::testing
