#include "cli/tap.h"

#include <chrono>
#include <ctime>
#include <map>
#include <memory>
#include <ostream>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/mesh_ref.h"
#include "cli/stat.h"
#include "common/flags.h"
#include "common/scrape/scrape.h"
#include "common/status.h"

namespace weft::cli {

bool TapMatches(const nlohmann::json& e, const std::string& filter) {
  if (filter.empty()) return true;
  bool has_workload = filter.find('/') != std::string::npos;
  for (const char* k : {"src_workload", "dst_workload"}) {
    std::string w = e.value(k, "");
    if (has_workload ? w == filter : w.rfind(filter + "/", 0) == 0) return true;
  }
  return false;
}

std::string FormatTapEvent(const nlohmann::json& e, const std::string& node) {
  int64_t ms = e.value("unix_ms", int64_t{0});
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  auto or_addr = [&](const char* workload, const char* addr) {
    std::string w = e.value(workload, "");
    return w.empty() ? e.value(addr, "?") + " (not in the mesh)" : w;
  };
  int status = e.value("status", 0);
  std::string line = absl::StrFormat(
      "%02d:%02d:%02d.%03d %s -> %s %s %s %s %s %.1fms", tm.tm_hour, tm.tm_min, tm.tm_sec,
      static_cast<int>(ms % 1000), or_addr("src_workload", "src_addr"),
      or_addr("dst_workload", "dst_addr"), e.value("method", "?"), e.value("authority", "-"),
      e.value("path", "?"), status ? std::to_string(status) : std::string("no-response"),
      e.value("latency_ms", 0.0));
  if (e.value("local_reply", false)) line += " (ztunnel)";
  std::string id = e.value("src_identity", "");
  absl::StrAppend(&line, " src=", id.empty() ? "plaintext" : id, " (", node, ")");
  return line;
}

namespace {

struct TapFlags {
  std::vector<StatTarget> targets;
  std::string filter;
  MeshRef mesh;
  int max = 0;                            // 0: no limit
  std::chrono::milliseconds duration{0};  // 0: until interrupted
  bool json = false;
};

std::unique_ptr<CLI::App> TapApp(TapFlags& f) {
  auto app = std::make_unique<CLI::App>(
      "The HTTP requests the ztunnels see, live (like linkerd viz tap): time, source and\n"
      "destination, method, authority, path, status, latency. Read from each ztunnel's\n"
      "loopback admin endpoint; only connections ztunnel parses as HTTP (workloads with L7\n"
      "policy) are seen. Stops after --max requests or --duration, or on Ctrl-C.",
      "weftctl tap");
  app->add_option("NS|NS/WORKLOAD", f.filter, "only requests from or to this namespace/workload");
  AddMeshRefFlags(*app, &f.mesh);
  AddTargetFlag(*app, &f.targets, "admin");
  app->add_option("--max", f.max, "stop after this many requests (default: no limit)")
      ->check(CLI::NonNegativeNumber);
  AddDurationFlag(*app, "--duration", &f.duration, "stop after this long (default: until Ctrl-C)");
  app->add_flag("--json", f.json, "print one JSON object per request");
  return app;
}

}  // namespace

absl::StatusOr<std::unique_ptr<TapReader>> TapReader::Open(const std::vector<StatTarget>& targets) {
  auto r = std::unique_ptr<TapReader>(new TapReader());
  for (const StatTarget& t : targets) {
    Source s;
    s.target = t;
    auto ns = OpenNetns(t.netns);
    if (!ns.ok()) return WithContext(ns.status(), absl::StrCat("node ", t.node));
    auto addr = SockAddr::Parse(t.addr);
    if (!addr.ok()) return WithContext(addr.status(), absl::StrCat("node ", t.node));
    s.netns = std::move(*ns);
    s.addr = *addr;
    r->sources_.push_back(std::move(s));
  }
  return r;
}

absl::StatusOr<std::vector<nlohmann::json>> TapReader::Poll() {
  std::vector<nlohmann::json> out;
  for (Source& s : sources_) {
    auto body = HttpGet(s.addr, absl::StrCat("/tap?since=", s.since, "&max=500"),
                        s.netns.valid() ? s.netns.get() : -1, nullptr, 2000);
    if (!body.ok()) {
      return absl::UnavailableError(absl::StrCat("node ", s.target.node, ": ztunnel admin at ",
                                                 s.target.addr, ": ", body.status().message()));
    }
    auto page = nlohmann::json::parse(*body, nullptr, /*allow_exceptions=*/false);
    if (page.is_discarded() || !page.is_object()) {
      return absl::DataLossError(
          absl::StrCat("node ", s.target.node, ": /tap answered something not JSON"));
    }
    s.since = page.value("next", s.since);
    s.dropped = page.value("dropped", uint64_t{0});
    if (!s.primed) {  // history from before this tap: skipped
      s.primed = true;
      continue;
    }
    s.missed += page.value("missed", uint64_t{0});
    for (const auto& e : page.value("events", nlohmann::json::array())) {
      nlohmann::json j = e;
      j["node"] = s.target.node;
      out.push_back(std::move(j));
    }
  }
  return out;
}

std::string TapReader::LossSummary() const {
  std::string out;
  for (const Source& s : sources_) {
    if (s.missed + s.dropped > 0) {
      absl::StrAppend(&out, "node ", s.target.node, ": ", s.missed,
                      " requests missed (the tap fell behind), ", s.dropped,
                      " dropped by ztunnel (never waits on a tap)\n");
    }
  }
  return out;
}

int TapMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  TapFlags f;
  if (auto rc = ParseCommand(*TapApp(f), args, out, err)) return *rc;
  if (!FillLocalTargets(f.targets, f.mesh, /*admin=*/true, "tap", err)) return kExitFailure;
  auto reader = TapReader::Open(f.targets);
  if (!reader.ok()) {
    err << "weftctl tap: " << reader.status().message() << "\n";
    return kExitFailure;
  }
  auto start = std::chrono::steady_clock::now();
  int shown = 0;
  while (f.max == 0 || shown < f.max) {
    if (f.duration.count() > 0 && std::chrono::steady_clock::now() - start >= f.duration) break;
    auto events = (*reader)->Poll();
    if (!events.ok()) {
      err << "weftctl tap: " << events.status().message() << "\n";
      return kExitFailure;
    }
    for (const nlohmann::json& e : *events) {
      if (!TapMatches(e, f.filter)) continue;
      if (f.json) {
        out << e.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) << "\n";
      } else {
        out << FormatTapEvent(e, e.value("node", "")) << "\n";
      }
      out.flush();
      if (f.max > 0 && ++shown >= f.max) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  err << (*reader)->LossSummary();
  return kExitOk;
}

}  // namespace weft::cli
