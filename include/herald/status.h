// Status and Result<T>: herald's error values.
//
// Every fallible herald call returns a Status (or a Result<T> holding either a
// value or a non-ok Status). No exception crosses herald's public API.
// Status is a small value type; it is safe to copy between threads.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace herald {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,     // the caller's input is malformed; never retry
    kNotFound,            // the thing asked for does not exist
    kConflict,            // expected version mismatch, lease held elsewhere
    kUnavailable,         // a server or database is unreachable; retry later
    kCorruption,          // stored data or a file is not what herald expects
    kFailedPrecondition,  // the state forbids it (schema too new, not migrated)
    kPermanent,           // a receiver rejected the event for good (poison)
    kResourceExhausted,   // a limit was hit (queue full, body too large)
    kInternal,            // a bug or an unexpected library failure
  };

  Status() = default;  // OK
  Status(Code code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string m) {
    return {Code::kInvalidArgument, std::move(m)};
  }
  static Status NotFound(std::string m) {
    return {Code::kNotFound, std::move(m)};
  }
  static Status Conflict(std::string m) {
    return {Code::kConflict, std::move(m)};
  }
  static Status Unavailable(std::string m) {
    return {Code::kUnavailable, std::move(m)};
  }
  static Status Corruption(std::string m) {
    return {Code::kCorruption, std::move(m)};
  }
  static Status FailedPrecondition(std::string m) {
    return {Code::kFailedPrecondition, std::move(m)};
  }
  static Status Permanent(std::string m) {
    return {Code::kPermanent, std::move(m)};
  }
  static Status ResourceExhausted(std::string m) {
    return {Code::kResourceExhausted, std::move(m)};
  }
  static Status Internal(std::string m) {
    return {Code::kInternal, std::move(m)};
  }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsConflict() const { return code_ == Code::kConflict; }
  bool IsUnavailable() const { return code_ == Code::kUnavailable; }

  // Whether trying the same operation again later may succeed. The relay
  // retries retryable failures and parks (or blocks on) the others.
  bool retryable() const {
    return code_ == Code::kUnavailable || code_ == Code::kResourceExhausted ||
           code_ == Code::kInternal;
  }

  // A short lowercase name of the code ("invalid_argument", ...).
  std::string_view code_name() const;
  // "code_name: message", or "ok".
  std::string ToString() const;

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

// Either a T or a non-ok Status.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}  // NOLINT

  bool ok() const { return std::holds_alternative<T>(v_); }
  // The error; OK if a value is held.
  Status status() const { return ok() ? Status() : std::get<Status>(v_); }

  T& value() & { return std::get<T>(v_); }
  const T& value() const& { return std::get<T>(v_); }
  T&& value() && { return std::get<T>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace herald

// Returns early from the enclosing function if `expr` is a non-ok Status.
#define HERALD_RETURN_IF_ERROR(expr)       \
  do {                                     \
    ::herald::Status herald_s_ = (expr);   \
    if (!herald_s_.ok()) return herald_s_; \
  } while (0)
