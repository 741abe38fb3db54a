// StoreWrapper: a Store that forwards every call to another store, in the
// manner of LevelDB's EnvWrapper. Subclass it and override only the calls to
// observe or to break (count calls, fail a commit on cue, slow a read):
//
//   class FailingAppends : public StoreWrapper {
//    public:
//     using StoreWrapper::StoreWrapper;
//     using StoreWrapper::Append;
//     Result<AppendResult> Append(Transaction& tx, std::span<Event> events,
//                                 const AppendOptions& options) override {
//       if (fail_.exchange(false)) return Status::Unavailable("injected");
//       return StoreWrapper::Append(tx, events, options);
//     }
//     std::atomic<bool> fail_{false};
//   };
//
// Transactions are the target's own (Begin and Join forward), so they may be
// passed to the wrapper or to the target alike.
//
// Thread safety: as the target's; the wrapper adds no state.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "herald/store.h"

namespace herald {

class StoreWrapper : public Store {
 public:
  // `target` is not owned and must outlive the wrapper.
  explicit StoreWrapper(Store* target) : target_(target) {}

  Store* target() const { return target_; }

  // ---- Database ------------------------------------------------------------
  std::string_view backend() const override { return target_->backend(); }
  Result<std::unique_ptr<Transaction>> Begin() override {
    return target_->Begin();
  }
  Result<std::unique_ptr<Transaction>> BeginRelaxed() override {
    return target_->BeginRelaxed();
  }
  std::unique_ptr<Transaction> Join(void* native_connection) override {
    return target_->Join(native_connection);
  }

  // ---- EventLog ------------------------------------------------------------
  using EventLog::Append;
  Result<AppendResult> Append(Transaction& tx, std::span<Event> events,
                              const AppendOptions& options) override {
    return target_->Append(tx, events, options);
  }
  Result<Page> Read(const ReadRequest& request) override {
    return target_->Read(request);
  }
  Result<Page> Scan(const ReadRequest& request,
                    const EventVisitor& visit) override {
    return target_->Scan(request, visit);
  }
  Result<std::vector<Event>> ReadStream(const std::string& stream,
                                        int64_t from_version,
                                        int limit) override {
    return target_->ReadStream(stream, from_version, limit);
  }
  Result<Event> Get(const std::string& id) override { return target_->Get(id); }
  Result<int64_t> Head() override { return target_->Head(); }
  Result<std::string> DescribeHoldup() override {
    return target_->DescribeHoldup();
  }
  Result<Holdup> GetHoldup() override { return target_->GetHoldup(); }
  uint64_t append_epoch() const override { return target_->append_epoch(); }
  uint64_t WaitForAppend(uint64_t seen,
                         std::chrono::milliseconds timeout) override {
    return target_->WaitForAppend(seen, timeout);
  }

  // ---- RelayState ----------------------------------------------------------
  using RelayState::SaveCheckpoint;
  Result<int64_t> GetCheckpoint(const std::string& name) override {
    return target_->GetCheckpoint(name);
  }
  Status SaveCheckpoint(Transaction& tx, const std::string& name,
                        int64_t next_offset) override {
    return target_->SaveCheckpoint(tx, name, next_offset);
  }
  Result<std::vector<std::pair<std::string, int64_t>>> ListCheckpoints(
      const std::string& prefix) override {
    return target_->ListCheckpoints(prefix);
  }
  Status DeleteCheckpoints(Transaction& tx,
                           const std::string& prefix) override {
    return target_->DeleteCheckpoints(tx, prefix);
  }
  Status Park(Transaction& tx, const ParkedEvent& parked) override {
    return target_->Park(tx, parked);
  }
  Result<std::vector<ParkedEvent>> ListParked(const std::string& route,
                                              const std::string& state,
                                              int limit) override {
    return target_->ListParked(route, state, limit);
  }
  Result<std::optional<ParkedEvent>> GetParked(
      const std::string& route, const std::string& event_id) override {
    return target_->GetParked(route, event_id);
  }
  Result<int64_t> CountParked(const std::string& route) override {
    return target_->CountParked(route);
  }
  Result<ParkedCounts> CountParkedByState(const std::string& route) override {
    return target_->CountParkedByState(route);
  }
  Status SetParkedState(const std::string& route, const std::string& id,
                        const std::string& state) override {
    return target_->SetParkedState(route, id, state);
  }
  Status DropParked(Transaction& tx, const std::string& route,
                    const std::string& id) override {
    return target_->DropParked(tx, route, id);
  }
  Result<bool> AcquireLease(const std::string& name, const std::string& owner,
                            std::chrono::milliseconds ttl) override {
    return target_->AcquireLease(name, owner, ttl);
  }
  Status ReleaseLease(const std::string& name,
                      const std::string& owner) override {
    return target_->ReleaseLease(name, owner);
  }
  Result<std::optional<LeaseInfo>> GetLease(const std::string& name) override {
    return target_->GetLease(name);
  }
  Status SetRouteError(const std::string& route, const std::string& error,
                       int64_t at_us) override {
    return target_->SetRouteError(route, error, at_us);
  }
  Result<std::optional<RouteStatusRow>> GetRouteStatus(
      const std::string& route) override {
    return target_->GetRouteStatus(route);
  }

  // ---- Inbox ---------------------------------------------------------------
  Result<bool> MarkHandled(Transaction& tx, const std::string& consumer,
                           const std::string& event_id) override {
    return target_->MarkHandled(tx, consumer, event_id);
  }
  Result<int64_t> SweepInbox(std::chrono::milliseconds max_age) override {
    return target_->SweepInbox(max_age);
  }
  Result<bool> IsHandled(const std::string& consumer,
                         const std::string& event_id) override {
    return target_->IsHandled(consumer, event_id);
  }
  Result<int64_t> SweepInboxBatch(const std::string& consumer,
                                  std::chrono::milliseconds max_age,
                                  int limit) override {
    return target_->SweepInboxBatch(consumer, max_age, limit);
  }

 private:
  Store* const target_;
};

}  // namespace herald
