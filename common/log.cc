#include "common/log.h"

#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <mutex>

namespace weft::log {
namespace {
std::atomic<int> g_level{static_cast<int>(Level::kInfo)};
std::mutex g_mu;

std::string Now() {
  timeval tv;
  gettimeofday(&tv, nullptr);
  tm t;
  gmtime_r(&tv.tv_sec, &t);
  char buf[40];
  size_t n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &t);
  snprintf(buf + n, sizeof buf - n, ".%03ldZ", static_cast<long>(tv.tv_usec / 1000));
  return buf;
}

void Emit(const nlohmann::json& j) {
  // Replace invalid UTF-8 instead of throwing: log text may carry peer-supplied bytes.
  std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  line.push_back('\n');
  std::lock_guard<std::mutex> lock(g_mu);
  fwrite(line.data(), 1, line.size(), stderr);
  fflush(stderr);
}
}  // namespace

void SetLevel(Level l) {
  g_level.store(static_cast<int>(l));
}
Level GetLevel() {
  return static_cast<Level>(g_level.load(std::memory_order_relaxed));
}

// Each level's name; the first entry of a level is its canonical name ("warning" is accepted).
constexpr std::pair<std::string_view, Level> kLevelNames[] = {
    {"debug", Level::kDebug},  {"info", Level::kInfo},   {"warn", Level::kWarn},
    {"warning", Level::kWarn}, {"error", Level::kError}, {"off", Level::kOff}};

bool ParseLevel(std::string_view s, Level* out) {
  for (const auto& [n, l] : kLevelNames) {
    if (n == s) {
      *out = l;
      return true;
    }
  }
  return false;
}

std::string_view LevelName(Level l) {
  for (const auto& [n, level] : kLevelNames) {
    if (level == l) return n;
  }
  return "?";
}

void Write(Level l, std::string_view scope, std::string_view msg, const nlohmann::json& fields) {
  nlohmann::json j = {{"ts", Now()}, {"level", LevelName(l)}, {"scope", scope}, {"msg", msg}};
  if (fields.is_object())
    for (auto& [k, v] : fields.items()) j[k] = v;
  Emit(j);
}

void WriteRecord(nlohmann::json record) {
  if (!record.contains("ts")) record["ts"] = Now();
  Emit(record);
}

}  // namespace weft::log
