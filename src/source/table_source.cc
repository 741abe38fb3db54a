// TableSource: an application's outbox table as an EventSource, flag mode
// (see herald/table_source.h).
//
// Progress per route is kept here: the ids each route has acknowledged (or
// set aside) that are still pending in the table because another route has
// not acknowledged them yet. A row every route acknowledged is marked done
// at once and leaves those sets. With a relay state, each acknowledgement
// that does not complete a row is also saved there (a checkpoint
// "adopt/SOURCE/ID/ROUTE") before the route goes on, and loaded when the
// source opens, so a restart sends such a row again only to the routes
// that had not acknowledged it; the checkpoints of a row go once it is
// marked (stale ones, of rows marked before a crash, when the source
// opens). Without a state, a restart sends such rows again to every route
// (same event id): at least once either way.
//
// Thread safety: mu_ guards the client and the progress sets; every call
// takes it (route threads read and report concurrently).
#include "herald/table_source.h"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <set>
#include <thread>
#include <utility>

#include "herald/config.h"
#include "herald/time.h"
#include "source/sql_client.h"
#include "util/thread_annotations.h"

namespace herald {

namespace {

uint64_t Fnv1a(std::string_view data, uint64_t seed) {
  uint64_t h = 1469598103934665603ull ^ seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // A final mix so nearby ids spread over every bit.
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

// "YYYY-MM-DD HH:MM:SS[.ffffff]" (MySQL DATETIME, SQLite datetime()) or
// RFC 3339, read as UTC. 0 when it cannot be read.
int64_t ParseRowTime(const std::string& text) {
  std::string t = text;
  if (t.size() >= 19 && t[10] == ' ') t[10] = 'T';
  bool has_zone = t.size() > 19 && (t.back() == 'Z' || t.back() == 'z' ||
                                    t.find('+', 19) != std::string::npos ||
                                    t.find('-', 19) != std::string::npos);
  if (!has_zone) t += "Z";
  // PostgreSQL's timestamptz text ends in "+HH" (whole-hour zones).
  if (t.size() > 3 && (t[t.size() - 3] == '+' || t[t.size() - 3] == '-')) {
    t += ":00";
  }
  auto r = ParseRfc3339(t);
  return r.ok() ? *r : 0;
}

bool MatchesAny(const std::vector<std::string>& globs, const std::string& s) {
  if (globs.empty()) return true;
  for (const auto& g : globs) {
    if (GlobMatch(g, s)) return true;
  }
  return false;
}

bool IsIntegerType(const std::string& type) {
  return type.find("int") != std::string::npos;
}

bool IsInteger(const std::string& v) {
  if (v.empty()) return false;
  size_t i = v[0] == '-' ? 1 : 0;
  if (i == v.size()) return false;
  for (; i < v.size(); ++i) {
    if (!std::isdigit(static_cast<unsigned char>(v[i]))) return false;
  }
  return true;
}

// PostgreSQL's boolean takes these literals (any case).
bool IsBoolLiteral(std::string v) {
  for (auto& c : v) c = static_cast<char>(std::tolower(c));
  for (const char* b : {"true", "false", "t", "f", "yes", "no", "on", "off",
                        "1", "0", "y", "n"}) {
    if (v == b) return true;
  }
  return false;
}

bool IsTextType(const std::string& type) {
  for (const char* t : {"char", "text", "enum", "set"}) {
    if (type.find(t) != std::string::npos) return true;
  }
  return type.empty();  // SQLite: no declared type holds anything
}

class TableSource : public EventSource {
 public:
  TableSource(SourceConfig config, const std::vector<std::string>& readers,
              std::unique_ptr<detail::SqlClient> client, RelayState* state)
      : config_(std::move(config)),
        id_mode_(config_.id_mode()),
        state_(state),
        client_(std::move(client)) {
    detail::MutexLock lock(&mu_);
    for (const auto& r : readers) {
      if (id_mode_) {
        ids_[r];
      } else {
        progress_[r];
      }
    }
    BuildSql();
  }

  // Checks the table and its columns against the config.
  Status Check() {
    detail::MutexLock lock(&mu_);
    auto cols = client_->Columns(config_.table);
    if (!cols.ok()) {
      if (cols.status().IsNotFound()) {
        return config_.Error("table",
                             "table '" + config_.table + "' does not exist");
      }
      return cols.status();
    }
    auto find = [&](const std::string& name) -> const detail::SqlColumn* {
      for (const auto& c : *cols) {
        if (c.name == name) return &c;
      }
      return nullptr;
    };
    const auto& m = config_.columns;
    for (auto [key, name] :
         {std::pair<const char*, const std::string*>{"columns.id", &m.id},
          {"columns.stream", &m.stream},
          {"columns.type", &m.type},
          {"columns.payload", &m.payload},
          {"columns.occurred_at", &m.occurred_at},
          {"columns.event_id", &m.event_id},
          {"columns.content_type", &m.content_type},
          {"columns.metadata", &m.metadata},
          {"published.column", &config_.published.column},
          {"published.at", &config_.published.at}}) {
      if (name->empty()) continue;
      if (!find(*name)) {
        // PostgreSQL folds unquoted names to lower case: orderNo in the
        // DDL is column "orderno".
        std::string hint;
        for (const auto& c : *cols) {
          if (c.name.size() == name->size() &&
              std::equal(c.name.begin(), c.name.end(), name->begin(),
                         [](char a, char b) {
                           return std::tolower(static_cast<unsigned char>(a)) ==
                                  std::tolower(static_cast<unsigned char>(b));
                         })) {
            hint =
                " (names are case-sensitive; did you mean '" + c.name + "'?)";
          }
        }
        return config_.Error(key, "table '" + config_.table +
                                      "' has no column '" + *name + "'" + hint);
      }
    }
    const detail::SqlColumn* id = find(m.id);
    if (!IsIntegerType(id->type)) {
      return config_.Error("columns.id",
                           "column '" + m.id + "' must be an integer, not " +
                               (id->type.empty() ? "untyped" : id->type));
    }
    // A time column of whole seconds holds a row's time rounded down (by up
    // to a second): its rows are taken a second later, so that none is read
    // before it was pending for min_age (or safety_delay).
    const detail::SqlColumn* at = find(m.occurred_at);
    if (at->fraction_digits == 0) BuildSql(std::chrono::seconds(1));
    if (id_mode_) return Status::OK();
    const detail::SqlColumn* flag = find(config_.published.column);
    for (auto [key, value] :
         {std::pair<const char*, const std::string*>{
              "published.pending", &config_.published.pending},
          {"published.done", &config_.published.done}}) {
      bool fits;
      if (IsIntegerType(flag->type)) {
        fits = IsInteger(*value);
      } else if (flag->type == "boolean") {
        fits = IsBoolLiteral(*value);
      } else if (IsTextType(flag->type)) {
        fits = flag->max_length < 0 ||
               static_cast<int64_t>(value->size()) <= flag->max_length;
      } else {
        fits = false;
      }
      if (!fits) {
        return config_.Error(
            key, "'" + *value + "' cannot be held by column '" + flag->name +
                     "' (" + flag->type +
                     (flag->max_length >= 0
                          ? "(" + std::to_string(flag->max_length) + ")"
                          : std::string()) +
                     ")");
      }
    }
    return Status::OK();
  }

  // Loads the progress saved in the relay state: the routes'
  // acknowledgements of rows still pending. Marks the rows every route
  // had acknowledged; drops the checkpoints of rows no longer pending.
  Status LoadProgress() {
    detail::MutexLock lock(&mu_);
    if (!state_) return Status::OK();
    if (id_mode_) return LoadIdProgress();
    auto list = state_->ListCheckpoints(Prefix());
    if (!list.ok()) {
      if (list.status().code() == Status::Code::kFailedPrecondition) {
        state_ = nullptr;  // this state cannot keep it: memory only
        return Status::OK();
      }
      return list.status();
    }
    std::set<int64_t> ids;
    for (const auto& [name, value] : *list) {
      std::string_view rest = std::string_view(name).substr(Prefix().size());
      size_t slash = rest.find('/');
      if (slash == std::string_view::npos) continue;
      std::string id_text(rest.substr(0, slash));
      if (!IsInteger(id_text)) continue;
      int64_t id = std::stoll(id_text);
      ids.insert(id);
      persisted_.insert(id);
      auto it = progress_.find(std::string(rest.substr(slash + 1)));
      if (it != progress_.end()) it->second.done.insert(id);
    }
    // Which of them are still pending.
    std::set<int64_t> pending;
    std::vector<int64_t> all(ids.begin(), ids.end());
    for (size_t i = 0; i < all.size(); i += 1000) {
      std::string in;
      for (size_t k = i; k < all.size() && k < i + 1000; ++k) {
        in += (in.empty() ? "" : ",") + std::to_string(all[k]);
      }
      auto rows =
          client_->Query("SELECT " + id_col_ + " FROM " + table_ + " WHERE " +
                         id_col_ + " IN (" + in + ") AND " + flag_col_ + " = " +
                         client_->QuoteText(config_.published.pending));
      if (!rows.ok()) return rows.status();
      for (const auto& r : *rows) {
        if (r[0] && IsInteger(*r[0])) pending.insert(std::stoll(*r[0]));
      }
    }
    std::vector<int64_t> stale;
    for (int64_t id : ids) {
      if (!pending.count(id)) {
        stale.push_back(id);
        continue;
      }
      bool all_done = true;
      for (const auto& [route, p] : progress_) {
        all_done = all_done && p.done.count(id);
      }
      if (all_done) to_mark_.insert(id);
    }
    for (auto& [route, p] : progress_) {
      for (int64_t id : stale) p.done.erase(id);
    }
    HERALD_RETURN_IF_ERROR(ForgetProgress(stale));
    return FlushMarks();
  }

  Result<Page> Read(const ReadRequest& req) override {
    detail::MutexLock lock(&mu_);
    if (!deferred_.ok()) {
      Status s = deferred_;
      deferred_ = Status::OK();
      return s;
    }
    if (id_mode_) return ReadByIds(req);
    HERALD_RETURN_IF_ERROR(FlushMarks());
    Page page;
    page.next_offset = std::max<int64_t>(req.offset, 1);
    auto pit = progress_.find(req.reader);
    Progress* progress = pit == progress_.end() ? nullptr : &pit->second;
    const int limit = std::max(1, req.limit);
    bool first = true;
    int64_t cursor = 0;
    // Scans pending rows from the lowest id: a row that committed late
    // (below rows already delivered) is found like any other. Rows this
    // route has acknowledged but others have not are skipped.
    for (int round = 0; round < 100; ++round) {
      std::string sql = select_;
      if (!first) sql += " AND " + id_col_ + " > " + std::to_string(cursor);
      sql += " ORDER BY " + id_col_ + " LIMIT " + std::to_string(config_.batch);
      auto rows = client_->Query(sql);
      if (!rows.ok()) return rows.status();
      first = false;
      for (auto& row : *rows) {
        if (!row[0] || !IsInteger(*row[0])) {
          return Status::Corruption("source '" + config_.name +
                                    "': a row without an integer id");
        }
        int64_t id = std::stoll(*row[0]);
        cursor = id;
        page.head = std::max(page.head, id);
        if (progress && progress->done.count(id)) continue;
        Event e = ToEvent(row, id);
        if (!MatchesAny(req.types, e.type)) {
          // Not selected by this route: as good as acknowledged by it.
          if (progress) MarkDoneFor(progress, id, /*aside=*/false);
          continue;
        }
        page.events.push_back(std::move(e));
        page.next_offset = id + 1;
        if (static_cast<int>(page.events.size()) >= limit) break;
      }
      if (static_cast<int>(page.events.size()) >= limit ||
          static_cast<int>(rows->size()) < config_.batch) {
        break;
      }
    }
    HERALD_RETURN_IF_ERROR(FlushMarks());
    return page;
  }

  Result<int64_t> Head() override {
    detail::MutexLock lock(&mu_);
    auto rows = client_->Query("SELECT MAX(" + id_col_ + ") FROM " + table_);
    if (!rows.ok()) return rows.status();
    if (rows->empty() || !(*rows)[0][0]) return int64_t{0};
    return std::stoll(*(*rows)[0][0]);
  }

  // Flag mode: rows holding the pending value. Id mode: rows at or above
  // the lowest route checkpoint, read from `state` (this process's own
  // reads when null).
  Result<int64_t> CountPending(RelayState* state) {
    detail::MutexLock lock(&mu_);
    std::string where =
        flag_col_ + " = " + client_->QuoteText(config_.published.pending);
    if (id_mode_) {
      int64_t lowest = INT64_MAX;
      for (auto& [route, ip] : ids_) {
        int64_t next = ip.next;
        if (state) {
          auto c = state->GetCheckpoint("relay/" + route);
          if (!c.ok()) return c.status();
          next = *c;
        }
        lowest = std::min(lowest, std::max<int64_t>(next, 1));
      }
      where = id_col_ + " >= " + std::to_string(lowest);
    }
    auto rows =
        client_->Query("SELECT COUNT(*) FROM " + table_ + " WHERE " + where);
    if (!rows.ok()) return rows.status();
    if (rows->empty() || !(*rows)[0][0] || !IsInteger(*(*rows)[0][0])) {
      return Status::Corruption("source '" + config_.name +
                                "': COUNT(*) answered no number");
    }
    return std::stoll(*(*rows)[0][0]);
  }

  uint64_t append_epoch() const override { return 0; }
  // Rows are written by other processes: nothing signals them, so this
  // only waits (the relay then polls).
  uint64_t WaitForAppend(uint64_t seen,
                         std::chrono::milliseconds timeout) override {
    std::this_thread::sleep_for(timeout);
    return seen;
  }

  // Late rows (id mode): per route from `state` when given, else as
  // counted in this process.
  Result<LateCounts> CountLate(RelayState* state) {
    detail::MutexLock lock(&mu_);
    LateCounts out;
    out.id_mode = id_mode_;
    if (!id_mode_) return out;
    for (const auto& [route, ip] : ids_) {
      int64_t n = ip.late, last = ip.last_late;
      if (state) {
        auto c = state->GetCheckpoint(Prefix() + "late/" + route);
        if (!c.ok()) return c.status();
        auto l = state->GetCheckpoint(Prefix() + "late-row/" + route);
        if (!l.ok()) return l.status();
        n = *c;
        last = *l;
      }
      out.per_route.emplace_back(route, n);
      out.total += n;
      out.last_row = std::max(out.last_row, last);
    }
    return out;
  }

  std::vector<LateRow> TakeLateRows() {
    detail::MutexLock lock(&mu_);
    return std::exchange(late_log_, {});
  }

  void OnRouteProgress(const std::string& route,
                       std::span<const int64_t> acknowledged,
                       std::span<const int64_t> set_aside) override {
    detail::MutexLock lock(&mu_);
    if (id_mode_) {
      Status s = CloseGaps(route, acknowledged, set_aside);
      if (!s.ok()) deferred_ = s;
      return;
    }
    auto it = progress_.find(route);
    if (it == progress_.end()) return;
    for (int64_t id : set_aside) MarkDoneFor(&it->second, id, true);
    std::vector<int64_t> keep;  // acknowledged, waiting for other routes
    for (int64_t id : acknowledged) {
      MarkDoneFor(&it->second, id, false);
      if (!to_mark_.count(id)) keep.push_back(id);
    }
    Status s = SaveProgress(route, keep);
    // What routes of other processes saved may complete these rows.
    if (s.ok() && !keep.empty()) s = MergeSaved();
    if (!s.ok()) deferred_ = s;
    // A failure to mark is kept for the next Read, which reports it.
    (void)FlushMarks();
  }

 private:
  struct Progress {
    std::set<int64_t> done;   // acknowledged or set aside, still pending
    std::set<int64_t> aside;  // parked or held: not acknowledged
  };

  // `slack`: added to min_age (see Check).
  std::string Prefix() const { return "adopt/" + config_.name + "/"; }
  std::string RowPrefix(int64_t id) const {
    return Prefix() + std::to_string(id) + "/";
  }

  // Saves `route`'s acknowledgements of `ids` in the relay state.
  Status SaveProgress(const std::string& route, const std::vector<int64_t>& ids)
      REQUIRES(mu_) {
    if (!state_ || ids.empty()) return Status::OK();
    auto tx = state_->Begin();
    if (!tx.ok()) return tx.status();
    for (int64_t id : ids) {
      HERALD_RETURN_IF_ERROR(
          state_->SaveCheckpoint(**tx, RowPrefix(id) + route, id));
    }
    HERALD_RETURN_IF_ERROR((*tx)->Commit());
    persisted_.insert(ids.begin(), ids.end());
    return Status::OK();
  }

  // Reads every route's saved acknowledgements (some may be another
  // process's, running other routes of this source under their leases):
  // queues the rows every route has acknowledged for marking, and forgets
  // rows whose checkpoints are gone (another process marked them).
  Status MergeSaved() REQUIRES(mu_) {
    auto list = state_->ListCheckpoints(Prefix());
    if (!list.ok()) return list.status();
    std::map<int64_t, std::vector<std::string>> saved;
    for (const auto& [name, value] : *list) {
      std::string_view rest = std::string_view(name).substr(Prefix().size());
      size_t slash = rest.find('/');
      if (slash == std::string_view::npos) continue;
      std::string id_text(rest.substr(0, slash));
      if (!IsInteger(id_text)) continue;
      saved[std::stoll(id_text)].emplace_back(rest.substr(slash + 1));
    }
    for (auto it = persisted_.begin(); it != persisted_.end();) {
      if (saved.count(*it)) {
        ++it;
        continue;
      }
      for (auto& [route, p] : progress_) {
        p.done.erase(*it);
        p.aside.erase(*it);
      }
      it = persisted_.erase(it);
    }
    for (const auto& [id, routes] : saved) {
      persisted_.insert(id);
      for (const auto& r : routes) {
        auto p = progress_.find(r);
        if (p != progress_.end()) p->second.done.insert(id);
      }
      bool all_done = true;
      for (const auto& [route, p] : progress_) {
        all_done = all_done && p.done.count(id) && !p.aside.count(id);
      }
      if (all_done) to_mark_.insert(id);
    }
    return Status::OK();
  }

  // Removes the saved acknowledgements of `ids` (rows marked, or no longer
  // pending).
  Status ForgetProgress(const std::vector<int64_t>& ids) REQUIRES(mu_) {
    if (!state_) return Status::OK();
    std::vector<int64_t> saved;
    for (int64_t id : ids) {
      if (persisted_.count(id)) saved.push_back(id);
    }
    if (saved.empty()) return Status::OK();
    auto tx = state_->Begin();
    if (!tx.ok()) return tx.status();
    for (int64_t id : saved) {
      HERALD_RETURN_IF_ERROR(state_->DeleteCheckpoints(**tx, RowPrefix(id)));
    }
    HERALD_RETURN_IF_ERROR((*tx)->Commit());
    for (int64_t id : saved) persisted_.erase(id);
    return Status::OK();
  }

  void BuildSql(std::chrono::milliseconds slack = {}) REQUIRES(mu_) {
    const auto& m = config_.columns;
    table_ = client_->QuoteIdent(config_.table);
    id_col_ = client_->QuoteIdent(m.id);
    std::string cols = id_col_;
    for (const std::string* c : {&m.stream, &m.type, &m.payload, &m.occurred_at,
                                 &m.event_id, &m.content_type, &m.metadata}) {
      cols += ", ";
      cols += c->empty() ? "NULL" : client_->QuoteIdent(*c);
    }
    if (id_mode_) {
      // Column 8: whether the row is older than safety_delay (min_age when
      // longer), by the database's clock.
      auto delay = std::max(config_.safety_delay, config_.min_age) + slack;
      select_ = "SELECT " + cols + ", CASE WHEN " +
                client_->QuoteIdent(m.occurred_at) +
                " <= " + client_->NowMinus(delay) + " THEN 1 ELSE 0 END FROM " +
                table_ + " WHERE ";
      return;
    }
    flag_col_ = client_->QuoteIdent(config_.published.column);
    select_ = "SELECT " + cols + " FROM " + table_ + " WHERE " + flag_col_ +
              " = " + client_->QuoteText(config_.published.pending);
    if (config_.min_age.count() > 0) {
      select_ += " AND " + client_->QuoteIdent(m.occurred_at) +
                 " <= " + client_->NowMinus(config_.min_age + slack);
    }
  }

  Event ToEvent(const detail::SqlRow& row, int64_t id) {
    auto text = [&](size_t i) { return row[i] ? *row[i] : std::string(); };
    Event e;
    e.position = id;
    e.stream = text(1);
    e.type = text(2);
    e.payload = text(3);
    e.occurred_at_us = ParseRowTime(text(4));
    std::string event_id = text(5);
    if (row[5] && !event_id.empty()) {
      for (auto& c : event_id) c = static_cast<char>(std::tolower(c));
      e.id = event_id;
    } else {
      e.id = DerivedEventId(config_.name, id);
    }
    e.content_type =
        row[6] && !row[6]->empty() ? *row[6] : config_.content_type;
    if (row[7] && !row[7]->empty()) {
      e.metadata = *row[7];
    } else if (!config_.metadata.empty()) {
      e.metadata = config_.metadata;
    }
    return e;
  }

  // Records that `progress`'s route is done with row `id`; queues the row
  // for marking when every route acknowledged it.
  void MarkDoneFor(Progress* progress, int64_t id, bool aside) REQUIRES(mu_) {
    progress->done.insert(id);
    if (aside) {
      progress->aside.insert(id);
      return;
    }
    progress->aside.erase(id);
    for (const auto& [name, p] : progress_) {
      if (!p.done.count(id) || p.aside.count(id)) return;
    }
    to_mark_.insert(id);
  }

  // Marks the queued rows done, only where they still hold the pending
  // value (the service may have marked them itself).
  Status FlushMarks() REQUIRES(mu_) {
    while (!to_mark_.empty()) {
      std::vector<int64_t> ids;
      for (auto it = to_mark_.begin();
           it != to_mark_.end() && ids.size() < 1000; ++it) {
        ids.push_back(*it);
      }
      std::string in;
      for (int64_t id : ids) {
        if (!in.empty()) in += ",";
        in += std::to_string(id);
      }
      std::string sql = "UPDATE " + table_ + " SET " + flag_col_ + " = " +
                        client_->QuoteText(config_.published.done);
      if (!config_.published.at.empty()) {
        sql += ", " + client_->QuoteIdent(config_.published.at) + " = " +
               client_->Now();
      }
      sql += " WHERE " + id_col_ + " IN (" + in + ") AND " + flag_col_ + " = " +
             client_->QuoteText(config_.published.pending);
      auto r = client_->Exec(sql);
      if (!r.ok()) return r.status();
      for (int64_t id : ids) {
        to_mark_.erase(id);
        for (auto& [name, p] : progress_) {
          p.done.erase(id);
          p.aside.erase(id);
        }
      }
      // Left behind on failure: dropped when the source next opens.
      Status s = ForgetProgress(ids);
      if (!s.ok()) deferred_ = s;
    }
    return Status::OK();
  }

  // ---- Id mode ------------------------------------------------------------
  //
  // Each route reads rows with id >= its checkpoint in id order, stopping
  // at the first row younger than safety_delay. Ids it passes over that
  // hold no visible row (a transaction still open, or rolled back) are
  // gaps: kept per route, saved in the relay state before the page is
  // handed out ("adopt/SOURCE/gap/ROUTE/LO/HI", value: when first seen,
  // UTC µs), and re-read (at most once a second) until late_window has
  // passed. A row found in a gap is delivered (late: out of its stream's
  // order) and counted once acknowledged ("adopt/SOURCE/late/ROUTE", and
  // the last such row in "adopt/SOURCE/late-row/ROUTE").
  struct Gap {
    int64_t hi = 0;
    int64_t seen_us = 0;
  };
  struct IdProgress {
    std::map<int64_t, Gap> gaps;  // by lowest id
    int64_t late = 0, last_late = 0;
    int64_t next = 1;  // the last offset this process read from
    int64_t high = 0;  // the highest next_offset handed out here
    std::chrono::steady_clock::time_point last_reread{};
  };

  std::string GapName(const std::string& route, int64_t lo) const {
    return Prefix() + "gap/" + route + "/" + std::to_string(lo) + "/";
  }

  // Loads the routes' gaps and late counts from the relay state (`only`:
  // one route's, replacing what this process held).
  Status LoadIdProgress(const std::string* only = nullptr) REQUIRES(mu_) {
    auto list = state_->ListCheckpoints(Prefix());
    if (!list.ok()) {
      if (list.status().code() == Status::Code::kFailedPrecondition) {
        state_ = nullptr;
        return Status::OK();
      }
      return list.status();
    }
    if (only) {
      IdProgress& ip = ids_[*only];
      ip.gaps.clear();
      ip.late = ip.last_late = 0;
    }
    for (const auto& [name, value] : *list) {
      std::string_view rest = std::string_view(name).substr(Prefix().size());
      auto take = [&](std::string_view head) {
        if (rest.substr(0, head.size()) != head) return false;
        rest.remove_prefix(head.size());
        return true;
      };
      auto mine = [&](std::string_view route) {
        return !only || route == *only;
      };
      if (take("late/")) {
        auto it = ids_.find(std::string(rest));
        if (it != ids_.end() && mine(rest)) it->second.late = value;
      } else if (take("late-row/")) {
        auto it = ids_.find(std::string(rest));
        if (it != ids_.end() && mine(rest)) it->second.last_late = value;
      } else if (take("gap/")) {
        // ROUTE/LO/HI/
        size_t a = rest.find('/');
        if (a == std::string_view::npos) continue;
        auto it = ids_.find(std::string(rest.substr(0, a)));
        if (!mine(rest.substr(0, a))) continue;
        std::string_view nums = rest.substr(a + 1);
        size_t b = nums.find('/');
        if (it == ids_.end() || b == std::string_view::npos) continue;
        std::string lo(nums.substr(0, b));
        std::string hi(nums.substr(b + 1, nums.find('/', b + 1) - b - 1));
        if (!IsInteger(lo) || !IsInteger(hi)) continue;
        it->second.gaps[std::stoll(lo)] = Gap{std::stoll(hi), value};
      }
    }
    return Status::OK();
  }

  // Forgets the route's gaps older than late_window (a transaction open
  // longer than that is not waited for; docs/adopt.md).
  Status ExpireGaps(const std::string& route, IdProgress* ip) REQUIRES(mu_) {
    int64_t cutoff = NowMicros() - config_.late_window.count() * 1000;
    std::vector<int64_t> old;
    for (const auto& [lo, g] : ip->gaps) {
      if (g.seen_us < cutoff) old.push_back(lo);
    }
    if (old.empty()) return Status::OK();
    if (state_) {
      auto tx = state_->BeginRelaxed();
      if (!tx.ok()) return tx.status();
      for (int64_t lo : old) {
        HERALD_RETURN_IF_ERROR(
            state_->DeleteCheckpoints(**tx, GapName(route, lo)));
      }
      HERALD_RETURN_IF_ERROR((*tx)->Commit());
    }
    for (int64_t lo : old) ip->gaps.erase(lo);
    return Status::OK();
  }

  // The gap holding `id`, or gaps.end().
  static std::map<int64_t, Gap>::iterator GapOf(IdProgress* ip, int64_t id) {
    auto it = ip->gaps.upper_bound(id);
    if (it == ip->gaps.begin()) return ip->gaps.end();
    --it;
    return it->second.hi >= id ? it : ip->gaps.end();
  }

  Result<Page> ReadByIds(const ReadRequest& req) REQUIRES(mu_) {
    Page page;
    int64_t cursor = std::max<int64_t>(req.offset, 1) - 1;
    page.next_offset = cursor + 1;
    auto it = ids_.find(req.reader);
    IdProgress* ip = it == ids_.end() ? nullptr : &it->second;
    const int limit = std::max(1, req.limit);
    if (ip && state_ && req.offset != ip->high) {
      // Not where this process's last read ended: the route's first read
      // here, or after another process ran it (its lease moved), or after
      // a failure. Its gaps and counts are taken from the relay state.
      bool before = req.offset < ip->high;
      int64_t high = ip->high;
      HERALD_RETURN_IF_ERROR(LoadIdProgress(&req.reader));
      ip = &ids_[req.reader];
      if (before) ip->high = high;  // this process's own reads, kept
    }
    if (ip) {
      // The relay moves its checkpoint back to an event it could not
      // deliver: for a late row that is an id inside a gap, below rows
      // already delivered. Those need not be read again: the late row is
      // still in its gap and is read from there.
      if (req.offset < ip->high && GapOf(ip, req.offset) != ip->gaps.end()) {
        cursor = ip->high - 1;
        page.next_offset = ip->high;
      }
      ip->next = cursor + 1;
    }
    // Rows that appeared in gaps below the cursor: late. Gaps past
    // late_window are dropped first (both at most once a second).
    auto now = std::chrono::steady_clock::now();
    if (ip && !ip->gaps.empty() &&
        now - ip->last_reread >= std::chrono::seconds(1)) {
      ip->last_reread = now;
      HERALD_RETURN_IF_ERROR(ExpireGaps(req.reader, ip));
    }
    if (ip && !ip->gaps.empty() && ip->last_reread == now) {
      std::vector<std::pair<int64_t, int64_t>> ranges;
      for (const auto& [lo, g] : ip->gaps) ranges.emplace_back(lo, g.hi);
      std::vector<int64_t> unselected;
      for (size_t i = 0; i < ranges.size(); i += 200) {
        std::string where;
        for (size_t k = i; k < ranges.size() && k < i + 200; ++k) {
          where += where.empty() ? "(" : " OR ";
          where += ranges[k].first == ranges[k].second
                       ? id_col_ + " = " + std::to_string(ranges[k].first)
                       : id_col_ + " BETWEEN " +
                             std::to_string(ranges[k].first) + " AND " +
                             std::to_string(ranges[k].second);
        }
        auto rows = client_->Query(select_ + where + ") ORDER BY " + id_col_);
        if (!rows.ok()) return rows.status();
        for (auto& row : *rows) {
          if (!row[0] || !IsInteger(*row[0])) continue;
          int64_t id = std::stoll(*row[0]);
          Event e = ToEvent(row, id);
          if (!MatchesAny(req.types, e.type)) {
            unselected.push_back(id);
            continue;
          }
          if (static_cast<int>(page.events.size()) < limit) {
            page.events.push_back(std::move(e));
          }
        }
      }
      // Not this route's: the gap closes without a delivery.
      HERALD_RETURN_IF_ERROR(CloseGaps(req.reader, unselected, {}, false));
    }
    // Rows past the cursor, in id order, each once older than the delay.
    std::vector<std::pair<int64_t, int64_t>> new_gaps;
    int64_t prev = cursor;
    for (int round = 0;
         round < 100 && static_cast<int>(page.events.size()) < limit; ++round) {
      auto rows = client_->Query(select_ + id_col_ + " > " +
                                 std::to_string(prev) + " ORDER BY " + id_col_ +
                                 " LIMIT " + std::to_string(config_.batch));
      if (!rows.ok()) return rows.status();
      bool stopped = false;
      for (auto& row : *rows) {
        if (!row[0] || !IsInteger(*row[0])) {
          return Status::Corruption("source '" + config_.name +
                                    "': a row without an integer id");
        }
        int64_t id = std::stoll(*row[0]);
        page.head = std::max(page.head, id);
        if (!row[8] || *row[8] != "1") {  // younger than the delay
          stopped = true;
          break;
        }
        if (id > prev + 1) new_gaps.emplace_back(prev + 1, id - 1);
        prev = id;
        page.next_offset = id + 1;
        Event e = ToEvent(row, id);
        if (!MatchesAny(req.types, e.type)) continue;
        page.events.push_back(std::move(e));
        if (static_cast<int>(page.events.size()) >= limit) {
          stopped = true;
          break;
        }
      }
      if (stopped || static_cast<int>(rows->size()) < config_.batch) break;
    }
    if (ip && !new_gaps.empty()) {
      int64_t now_us = NowMicros();
      std::vector<std::pair<int64_t, int64_t>> fresh;
      for (const auto& [lo, hi] : new_gaps) {
        // Read again from an older checkpoint (after a restart): the gap
        // is known already.
        if (GapOf(ip, lo) != ip->gaps.end()) continue;
        fresh.emplace_back(lo, hi);
      }
      if (state_ && !fresh.empty()) {
        auto tx = state_->BeginRelaxed();
        if (!tx.ok()) return tx.status();
        for (const auto& [lo, hi] : fresh) {
          HERALD_RETURN_IF_ERROR(state_->SaveCheckpoint(
              **tx, GapName(req.reader, lo) + std::to_string(hi) + "/",
              now_us));
        }
        HERALD_RETURN_IF_ERROR((*tx)->Commit());
      }
      for (const auto& [lo, hi] : fresh) ip->gaps[lo] = Gap{hi, now_us};
    }
    if (ip) ip->high = std::max(ip->high, page.next_offset);
    if (page.head == 0) {
      auto head = client_->Query("SELECT MAX(" + id_col_ + ") FROM " + table_);
      if (head.ok() && !head->empty() && (*head)[0][0] &&
          IsInteger(*(*head)[0][0])) {
        page.head = std::stoll(*(*head)[0][0]);
      }
    }
    return page;
  }

  // Rows of `route` acknowledged or set aside: those inside one of its
  // gaps were late (counted when `count`); their ids leave the gaps.
  Status CloseGaps(const std::string& route, std::span<const int64_t> acked,
                   std::span<const int64_t> aside, bool count = true)
      REQUIRES(mu_) {
    auto rit = ids_.find(route);
    if (rit == ids_.end()) return Status::OK();
    IdProgress* ip = &rit->second;
    if (ip->gaps.empty()) return Status::OK();
    std::vector<int64_t> ids(acked.begin(), acked.end());
    ids.insert(ids.end(), aside.begin(), aside.end());
    std::vector<int64_t> removed;  // gap starts removed
    std::vector<std::pair<int64_t, Gap>> added;
    int64_t late = 0, last = ip->last_late;
    for (int64_t id : ids) {
      auto g = GapOf(ip, id);
      if (g == ip->gaps.end()) continue;
      int64_t lo = g->first;
      Gap gap = g->second;
      ip->gaps.erase(g);
      removed.push_back(lo);
      if (lo < id) {
        ip->gaps[lo] = Gap{id - 1, gap.seen_us};
        added.emplace_back(lo, Gap{id - 1, gap.seen_us});
      }
      if (id < gap.hi) {
        ip->gaps[id + 1] = gap;
        added.emplace_back(id + 1, gap);
      }
      if (count) {
        ++late;
        last = std::max(last, id);
        late_log_.push_back(LateRow{route, id});
      }
    }
    if (removed.empty()) return Status::OK();
    ip->late += late;
    ip->last_late = last;
    if (!state_) return Status::OK();
    auto tx = state_->Begin();
    if (!tx.ok()) return tx.status();
    for (int64_t lo : removed) {
      HERALD_RETURN_IF_ERROR(
          state_->DeleteCheckpoints(**tx, GapName(route, lo)));
    }
    for (const auto& [lo, gap] : added) {
      HERALD_RETURN_IF_ERROR(state_->SaveCheckpoint(
          **tx, GapName(route, lo) + std::to_string(gap.hi) + "/",
          gap.seen_us));
    }
    if (late) {
      HERALD_RETURN_IF_ERROR(
          state_->SaveCheckpoint(**tx, Prefix() + "late/" + route, ip->late));
      HERALD_RETURN_IF_ERROR(state_->SaveCheckpoint(
          **tx, Prefix() + "late-row/" + route, ip->last_late));
    }
    return (*tx)->Commit();
  }

  const SourceConfig config_;
  const bool id_mode_;
  detail::Mutex mu_;
  std::map<std::string, IdProgress> ids_ GUARDED_BY(mu_);  // id mode
  std::vector<LateRow> late_log_ GUARDED_BY(mu_);          // for TakeLateRows
  RelayState* state_ GUARDED_BY(mu_);  // nullptr: progress in memory only
  std::set<int64_t> persisted_ GUARDED_BY(mu_);  // ids saved in state_
  Status deferred_ GUARDED_BY(mu_);  // a state error, for the next Read
  std::unique_ptr<detail::SqlClient> client_ GUARDED_BY(mu_);
  std::map<std::string, Progress> progress_ GUARDED_BY(mu_);
  std::set<int64_t> to_mark_ GUARDED_BY(mu_);
  // SQL pieces, built once.
  std::string table_, id_col_, flag_col_, select_;
};

}  // namespace

Result<int64_t> CountPendingRows(EventSource* source, RelayState* state) {
  auto* table = dynamic_cast<TableSource*>(source);
  if (!table) return Status::InvalidArgument("not an adopted table source");
  return table->CountPending(state);
}

Result<LateCounts> CountLateRows(EventSource* source, RelayState* state) {
  auto* table = dynamic_cast<TableSource*>(source);
  if (!table) return Status::InvalidArgument("not an adopted table source");
  return table->CountLate(state);
}

std::vector<LateRow> TakeLateRows(EventSource* source) {
  auto* table = dynamic_cast<TableSource*>(source);
  if (!table) return {};
  return table->TakeLateRows();
}

std::string DerivedEventId(std::string_view source_name, int64_t row_id) {
  std::string key(source_name);
  key += '\0';
  key += std::to_string(row_id);
  uint64_t hi = Fnv1a(key, 0x68657261ull);
  uint64_t lo = Fnv1a(key, 0x6c64ull << 32);
  hi = (hi & ~0xf000ull) | 0x8000ull;        // version 8
  lo = (lo & ~(3ull << 62)) | (2ull << 62);  // variant 10
  char out[37];
  std::snprintf(out, sizeof out, "%08x-%04x-%04x-%04x-%012llx",
                static_cast<unsigned>(hi >> 32),
                static_cast<unsigned>((hi >> 16) & 0xffff),
                static_cast<unsigned>(hi & 0xffff),
                static_cast<unsigned>(lo >> 48),
                static_cast<unsigned long long>(lo & 0xffffffffffffull));
  return out;
}

Result<std::unique_ptr<EventSource>> OpenTableSource(
    const SourceConfig& source, const std::vector<std::string>& readers,
    RelayState* state) {
  if (readers.empty()) {
    return source.Error(
        "name", "no route reads this source (from = \"" + source.name + "\")");
  }
  const std::string& url = source.url;
  std::unique_ptr<detail::SqlClient> client;
  // A malformed URL is the config's error (key and line); a server that
  // cannot be reached is not.
  [[maybe_unused]] auto adopt =
      [&](Result<std::unique_ptr<detail::SqlClient>> c) -> Status {
    if (!c.ok()) {
      if (c.status().IsInvalidArgument()) {
        return source.Error("url", c.status().message());
      }
      return c.status();
    }
    client = std::move(*c);
    return Status::OK();
  };
  if (url.rfind("sqlite:", 0) == 0) {
    auto c = detail::OpenSqliteClient(url.substr(7));
    if (!c.ok()) return source.Error("url", c.status().message());
    client = std::move(*c);
  } else if (url.rfind("mysql://", 0) == 0 || url.rfind("mariadb://", 0) == 0) {
#if HERALD_WITH_MYSQL
    HERALD_RETURN_IF_ERROR(adopt(detail::OpenMysqlClient(url)));
#else
    return Status::FailedPrecondition(
        "source '" + source.name +
        "': this herald was built without MySQL/MariaDB (HERALD_WITH_MYSQL)");
#endif
  } else if (url.rfind("postgresql://", 0) == 0 ||
             url.rfind("postgres://", 0) == 0) {
#if HERALD_WITH_POSTGRES
    HERALD_RETURN_IF_ERROR(adopt(detail::OpenPostgresClient(url)));
#else
    return Status::FailedPrecondition(
        "source '" + source.name +
        "': this herald was built without PostgreSQL (HERALD_WITH_POSTGRES)");
#endif
  } else {
    return source.Error("url", "'" + url + "' is not a source URL");
  }
  auto s =
      std::make_unique<TableSource>(source, readers, std::move(client), state);
  HERALD_RETURN_IF_ERROR(s->Check());
  HERALD_RETURN_IF_ERROR(s->LoadProgress());
  return std::unique_ptr<EventSource>(std::move(s));
}

}  // namespace herald
