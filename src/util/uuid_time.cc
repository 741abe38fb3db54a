// UUIDv7 generation and RFC 3339 time formatting (see herald/uuid.h and
// herald/time.h). Thread-safe: each thread has its own random generator.
#include <chrono>
#include <climits>
#include <cstring>
#include <random>

#include "herald/time.h"
#include "herald/uuid.h"

namespace herald {

namespace {
std::mt19937_64& Rng() {
  thread_local std::mt19937_64 rng([] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }());
  return rng;
}

bool IsHex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

bool IsLeapYear(int y) { return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0; }

int DaysInMonth(int y, int m) {
  static const int kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  return m == 2 && IsLeapYear(y) ? 29 : kDays[m - 1];
}

bool Digits(std::string_view s, size_t pos, size_t n, int* out) {
  if (pos + n > s.size()) return false;
  int v = 0;
  for (size_t i = pos; i < pos + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = v;
  return true;
}
}  // namespace

std::string NewUuidV7() {
  uint64_t ms = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  uint64_t r1 = Rng()();
  uint64_t r2 = Rng()();
  unsigned char b[16];
  for (int i = 0; i < 6; ++i)
    b[i] = static_cast<unsigned char>(ms >> (40 - 8 * i));
  b[6] = static_cast<unsigned char>(0x70 | (r1 & 0x0F));
  b[7] = static_cast<unsigned char>(r1 >> 8);
  b[8] = static_cast<unsigned char>(0x80 | ((r1 >> 16) & 0x3F));
  for (int i = 9; i < 16; ++i)
    b[i] = static_cast<unsigned char>(r2 >> (8 * (i - 9)));
  static const char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[b[i] >> 4]);
    out.push_back(kHex[b[i] & 0xF]);
  }
  return out;
}

bool IsUuid(std::string_view t) {
  if (t.size() != 36) return false;
  for (size_t i = 0; i < 36; ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (t[i] != '-') return false;
    } else if (!IsHex(t[i])) {
      return false;
    }
  }
  return true;
}

int64_t NowMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Writes `width` decimal digits of v, zero-padded, at p.
void PutDigits(char* p, int64_t v, int width) {
  for (int i = width - 1; i >= 0; --i) {
    p[i] = static_cast<char>('0' + v % 10);
    v /= 10;
  }
}

void AppendRfc3339(int64_t micros, std::string* out) {
  // Hand-rolled (no gmtime/snprintf): every event rendered to JSON pays it.
  int64_t secs = micros / 1000000;
  int64_t frac = micros % 1000000;
  if (frac < 0) {
    frac += 1000000;
    --secs;
  }
  int64_t days = secs / 86400;
  int64_t rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  size_t at = out->size();
  out->resize(at + 27);
  char* p = out->data() + at;
  // Pages hold runs of events from one day: the date is kept per thread.
  thread_local int64_t last_days = INT64_MIN;
  thread_local char last_date[10];
  if (days != last_days) {
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    const int64_t z = days + 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const int64_t doe = z - era * 146097;
    const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const int64_t mp = (5 * doy + 2) / 153;
    const int64_t d = doy - (153 * mp + 2) / 5 + 1;
    const int64_t m = mp < 10 ? mp + 3 : mp - 9;
    const int64_t y = yoe + era * 400 + (m <= 2);
    PutDigits(last_date, y, 4);
    last_date[4] = '-';
    PutDigits(last_date + 5, m, 2);
    last_date[7] = '-';
    PutDigits(last_date + 8, d, 2);
    last_days = days;
  }
  std::memcpy(p, last_date, 10);
  p[10] = 'T';
  PutDigits(p + 11, rem / 3600, 2);
  p[13] = ':';
  PutDigits(p + 14, rem / 60 % 60, 2);
  p[16] = ':';
  PutDigits(p + 17, rem % 60, 2);
  p[19] = '.';
  PutDigits(p + 20, frac, 6);
  p[26] = 'Z';
}

std::string FormatRfc3339(int64_t micros) {
  std::string out;
  AppendRfc3339(micros, &out);
  return out;
}

Result<int64_t> ParseRfc3339(std::string_view s) {
  int y, mo, d, h, mi, se;
  auto bad = [&] {
    return Status::InvalidArgument("not an RFC 3339 time: '" + std::string(s) +
                                   "'");
  };
  if (!Digits(s, 0, 4, &y) || s.size() < 20 || s[4] != '-' ||
      !Digits(s, 5, 2, &mo) || s[7] != '-' || !Digits(s, 8, 2, &d) ||
      (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !Digits(s, 11, 2, &h) ||
      s[13] != ':' || !Digits(s, 14, 2, &mi) || s[16] != ':' ||
      !Digits(s, 17, 2, &se)) {
    return bad();
  }
  if (mo < 1 || mo > 12 || d < 1 || d > DaysInMonth(y, mo) || h > 23 ||
      mi > 59 || se > 60) {
    return Status::InvalidArgument("not an RFC 3339 time: '" + std::string(s) +
                                   "' (no such date or time of day)");
  }
  size_t i = 19;
  int64_t frac = 0;
  if (i < s.size() && s[i] == '.') {
    ++i;
    int n = 0;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') {
      if (n < 6) frac = frac * 10 + (s[i] - '0');
      ++n;
      ++i;
    }
    if (n == 0) return bad();
    for (; n < 6; ++n) frac *= 10;
  }
  int64_t offset = 0;
  if (i < s.size() && (s[i] == 'Z' || s[i] == 'z')) {
    ++i;
  } else if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!Digits(s, i + 1, 2, &oh) || i + 3 >= s.size() || s[i + 3] != ':' ||
        !Digits(s, i + 4, 2, &om)) {
      return bad();
    }
    if (oh > 23 || om > 59) {
      return Status::InvalidArgument("not an RFC 3339 time: '" +
                                     std::string(s) +
                                     "' (offset beyond +-23:59)");
    }
    offset = (oh * 60 + om) * 60;
    if (s[i] == '-') offset = -offset;
    i += 6;
  } else {
    return bad();
  }
  if (i != s.size()) return bad();
  int64_t days =
      DaysFromCivil(y, static_cast<unsigned>(mo), static_cast<unsigned>(d));
  int64_t secs = days * 86400 + h * 3600 + mi * 60 + se - offset;
  if (se == 60 && ((secs - 60) % 86400 + 86400) % 86400 != 86340) {
    // A leap second is inserted only after 23:59:59 UTC.
    return Status::InvalidArgument("not an RFC 3339 time: '" + std::string(s) +
                                   "' (a leap second only at 23:59:60 UTC)");
  }
  return secs * 1000000 + frac;
}

}  // namespace herald
