// libpq helpers for the PostgreSQL store (internal): owners of libpq
// handles, binary parameters and results, SQLSTATE -> Status.
//
// Thread safety: plain values; a PGconn is used by one thread at a time.
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "herald/status.h"

namespace herald::detail::pg {

struct ConnCloser {
  void operator()(PGconn* c) const { PQfinish(c); }
};
struct ResultClearer {
  void operator()(PGresult* r) const { PQclear(r); }
};
using ConnPtr = std::unique_ptr<PGconn, ConnCloser>;
using ResultPtr = std::unique_ptr<PGresult, ResultClearer>;

// Type OIDs used in binary arrays.
inline constexpr unsigned kOidBytea = 17;
inline constexpr unsigned kOidText = 25;
inline constexpr unsigned kOidTimestamptz = 1184;
inline constexpr unsigned kOidUuid = 2950;

// Microseconds between the Unix epoch and PostgreSQL's (2000-01-01).
inline constexpr int64_t kPgEpochOffsetUs = 946684800000000LL;

inline void PutU32(std::string* out, uint32_t v) {
  char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
               static_cast<char>(v >> 8), static_cast<char>(v)};
  out->append(b, 4);
}
inline void PutU64(std::string* out, uint64_t v) {
  PutU32(out, static_cast<uint32_t>(v >> 32));
  PutU32(out, static_cast<uint32_t>(v));
}
inline uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}
inline uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

// The 16 bytes of a UUID in text form; false if it is not one.
bool UuidToBytes(std::string_view text, std::string* out);
// Lowercase 8-4-4-4-12 text of 16 UUID bytes.
std::string UuidToText(const char* bytes);

// A one-dimensional array in PostgreSQL's binary format, built element by
// element.
class BinaryArray {
 public:
  BinaryArray(unsigned elem_oid, size_t count) {
    PutU32(&buf_, 1);  // dimensions
    PutU32(&buf_, 0);  // no NULLs
    PutU32(&buf_, elem_oid);
    PutU32(&buf_, static_cast<uint32_t>(count));
    PutU32(&buf_, 1);  // lower bound
  }
  void Add(std::string_view v) {
    PutU32(&buf_, static_cast<uint32_t>(v.size()));
    buf_.append(v);
  }
  void AddInt64(int64_t v) {
    PutU32(&buf_, 8);
    PutU64(&buf_, static_cast<uint64_t>(v));
  }
  std::string Take() { return std::move(buf_); }

 private:
  std::string buf_;
};

// Parameters of one statement. Each value is text or binary format; the
// SQL casts every parameter ($1::bigint) so binary values match.
class Params {
 public:
  Params& Text(std::string_view v) { return Push(std::string(v), 0); }
  // Binary format: bytea and text take their raw bytes.
  Params& Bytes(std::string_view v) { return Push(std::string(v), 1); }
  Params& Binary(std::string v) { return Push(std::move(v), 1); }
  Params& Int8(int64_t v) {
    std::string b;
    PutU64(&b, static_cast<uint64_t>(v));
    return Push(std::move(b), 1);
  }
  Params& Int4(int32_t v) {
    std::string b;
    PutU32(&b, static_cast<uint32_t>(v));
    return Push(std::move(b), 1);
  }
  Params& Bool(bool v) { return Push(std::string(1, v ? 1 : 0), 1); }
  // timestamptz from Unix microseconds.
  Params& Timestamp(int64_t unix_us) {
    return Int8(unix_us - kPgEpochOffsetUs);
  }
  Params& Null() {
    values_.emplace_back();
    formats_.push_back(1);
    nulls_.push_back(true);
    return *this;
  }

  int size() const { return static_cast<int>(values_.size()); }
  // Pointer arrays for libpq; valid until the next change.
  const char* const* values() {
    ptrs_.clear();
    lengths_.clear();
    for (size_t i = 0; i < values_.size(); ++i) {
      ptrs_.push_back(nulls_[i] ? nullptr : values_[i].data());
      lengths_.push_back(static_cast<int>(values_[i].size()));
    }
    return ptrs_.data();
  }
  const int* lengths() const { return lengths_.data(); }
  const int* formats() const { return formats_.data(); }

 private:
  Params& Push(std::string v, int format) {
    values_.push_back(std::move(v));
    formats_.push_back(format);
    nulls_.push_back(false);
    return *this;
  }
  std::vector<std::string> values_;
  std::vector<int> formats_;
  std::vector<bool> nulls_;
  std::vector<const char*> ptrs_;
  std::vector<int> lengths_;
};

// Readers of binary result columns.
inline bool IsNull(const PGresult* r, int row, int col) {
  return PQgetisnull(r, row, col) != 0;
}
inline int64_t Int8At(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return 0;
  return static_cast<int64_t>(GetU64(PQgetvalue(r, row, col)));
}
inline int32_t Int4At(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return 0;
  return static_cast<int32_t>(GetU32(PQgetvalue(r, row, col)));
}
inline bool BoolAt(const PGresult* r, int row, int col) {
  return !PQgetisnull(r, row, col) && PQgetvalue(r, row, col)[0] != 0;
}
inline std::string BytesAt(const PGresult* r, int row, int col) {
  return std::string(PQgetvalue(r, row, col),
                     static_cast<size_t>(PQgetlength(r, row, col)));
}
inline std::string UuidAt(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col) || PQgetlength(r, row, col) != 16) return {};
  return UuidToText(PQgetvalue(r, row, col));
}
// Unix microseconds of a timestamptz.
inline int64_t TimestampAt(const PGresult* r, int row, int col) {
  if (PQgetisnull(r, row, col)) return 0;
  return Int8At(r, row, col) + kPgEpochOffsetUs;
}

// Whether the connection is gone (server restarted, network cut).
inline bool Broken(PGconn* c) { return !c || PQstatus(c) == CONNECTION_BAD; }

// The Status for a failed result (or a null one) on connection c: the
// SQLSTATE picks the code; `what` prefixes the message.
Status ErrorStatus(PGconn* c, const PGresult* r, std::string_view what);

// Runs sql (no parameters, text results). OK when the command succeeded.
Status Exec(PGconn* c, const char* sql, std::string_view what);

// Whether result r succeeded (PGRES_COMMAND_OK or PGRES_TUPLES_OK).
inline bool Succeeded(const PGresult* r) {
  if (!r) return false;
  auto s = PQresultStatus(r);
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK;
}

}  // namespace herald::detail::pg
