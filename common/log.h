// Structured JSON logs, one object per line on stderr:
//   {"ts":"2026-11-27T05:28:11.123Z","level":"info","scope":"hbone","msg":"...", ...fields}
// Thread-safe. The level is process-wide and can be changed at run time (admin /logging).
#pragma once

#include <string>
#include <string_view>

#include "nlohmann/json.hpp"

namespace weft::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3, kOff = 4 };

void SetLevel(Level l);
Level GetLevel();
bool ParseLevel(std::string_view s, Level* out);
std::string_view LevelName(Level l);
inline bool Enabled(Level l) {
  return l >= GetLevel();
}

// Writes one line. `fields` must be a JSON object (or null).
void Write(Level l, std::string_view scope, std::string_view msg,
           const nlohmann::json& fields = nullptr);
// Writes a pre-built record as-is (access logs); adds "ts" if missing.
void WriteRecord(nlohmann::json record);

}  // namespace weft::log

// Fields are built lazily: only when the level is enabled.
#define WEFT_LOG(level, scope, msg, ...)                                                      \
  do {                                                                                        \
    if (::weft::log::Enabled(::weft::log::Level::level))                                      \
      ::weft::log::Write(::weft::log::Level::level, scope, msg, nlohmann::json(__VA_ARGS__)); \
  } while (0)
#define LOG_DEBUG(scope, msg, ...) WEFT_LOG(kDebug, scope, msg, __VA_ARGS__)
#define LOG_INFO(scope, msg, ...) WEFT_LOG(kInfo, scope, msg, __VA_ARGS__)
#define LOG_WARN(scope, msg, ...) WEFT_LOG(kWarn, scope, msg, __VA_ARGS__)
#define LOG_ERROR(scope, msg, ...) WEFT_LOG(kError, scope, msg, __VA_ARGS__)
