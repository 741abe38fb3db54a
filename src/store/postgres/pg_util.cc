// libpq helpers (see pg_util.h).
#include "store/postgres/pg_util.h"

namespace herald::detail::pg {

namespace {
int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}
}  // namespace

bool UuidToBytes(std::string_view t, std::string* out) {
  if (t.size() != 36) return false;
  out->clear();
  for (size_t i = 0; i < 36;) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (t[i] != '-') return false;
      ++i;
      continue;
    }
    int hi = HexValue(t[i]), lo = HexValue(t[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out->push_back(static_cast<char>(hi << 4 | lo));
    i += 2;
  }
  return out->size() == 16;
}

std::string UuidToText(const char* b) {
  static const char kHex[] = "0123456789abcdef";
  std::string s;
  s.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s.push_back('-');
    auto v = static_cast<unsigned char>(b[i]);
    s.push_back(kHex[v >> 4]);
    s.push_back(kHex[v & 15]);
  }
  return s;
}

Status ErrorStatus(PGconn* c, const PGresult* r, std::string_view what) {
  std::string msg(what);
  msg += ": ";
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  const char* primary =
      r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
  if (primary) {
    msg += primary;
  } else if (r && *PQresultErrorMessage(r)) {
    msg += Trim(PQresultErrorMessage(r));
  } else if (c) {
    msg += Trim(PQerrorMessage(c));
  } else {
    msg += "no connection";
  }
  if (!state) {
    if (Broken(c) || !r) {
      return Status::Unavailable(msg + " (PostgreSQL connection lost)");
    }
    return Status::Internal(msg);
  }
  std::string_view s(state);
  auto cls = s.substr(0, 2);
  if (s == "23505") {
    const char* constraint = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
    if (constraint && std::string_view(constraint) == "herald_events_id_key") {
      return Status::Unavailable(
          msg +
          " (an event id of this append was appended by a concurrent "
          "transaction; retry the transaction)");
    }
    return Status::Conflict(msg);
  }
  if (s == "HR409") return Status::Conflict(msg);
  if (cls == "08" || cls == "53" || cls == "57" || cls == "40" || cls == "28" ||
      s == "55P03" || s == "3D000" || cls == "58") {
    return Status::Unavailable(msg);
  }
  if (cls == "22" || s == "23502" || s == "23514") {
    return Status::InvalidArgument(msg);
  }
  if (s == "42P01" || s == "42883") {
    return Status::FailedPrecondition(
        msg + " (the herald schema is missing or old: run `herald migrate`)");
  }
  if (s == "25P02") {
    return Status::FailedPrecondition(
        msg + " (an earlier statement failed; roll the transaction back)");
  }
  return Status::Internal(msg + " (SQLSTATE " + std::string(s) + ")");
}

Status Exec(PGconn* c, const char* sql, std::string_view what) {
  ResultPtr r(PQexec(c, sql));
  if (!Succeeded(r.get())) return ErrorStatus(c, r.get(), what);
  return Status::OK();
}

}  // namespace herald::detail::pg
