#include "bench/suite/report.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <set>
#include <string_view>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "bench/suite/results.h"
#include "common/status.h"

extern char** environ;

namespace weft::bench::suite {
namespace {

using json = nlohmann::json;

constexpr double kMiB = 1024.0 * 1024.0;
// Comparisons at exactly the limit (13.2 / 12 = 1.1000000000000001) must not flip to a miss.
constexpr double kEps = 1e-9;

// The modes the goals are about.
std::vector<std::string> WeftModes() {
  return {std::string(kModeEbpf), std::string(kModeIptables)};
}

// ---- Typed access: any scenario, step, case or run may be missing, a run may have failed ----

const SeedStep* FindSeedStep(const SuiteResults& r, int users) {
  if (!r.scenarios.seed) return nullptr;
  for (const SeedStep& s : r.scenarios.seed->steps)
    if (s.users == users) return &s;
  return nullptr;
}

// The HTTP/1.1 case of `conns` connections (documents before gRPC have no protocol: HTTP/1.1).
const IstioCase* FindIstioCase(const SuiteResults& r, int conns) {
  if (!r.scenarios.istio) return nullptr;
  for (const IstioCase& c : r.scenarios.istio->cases)
    if (c.connections == conns && (c.protocol.empty() || c.protocol == kProtocolHttp1)) return &c;
  return nullptr;
}

const ThroughputCase* FindThroughputCase(const SuiteResults& r, const std::string& pair,
                                         int streams) {
  if (!r.scenarios.throughput) return nullptr;
  for (const ThroughputCase& c : r.scenarios.throughput->cases)
    if (c.pair == pair && c.streams == streams) return &c;
  return nullptr;
}

// The mode's run in a step or case (nullptr: no such step or no such run).
template <typename Run>
const Run* RunIn(const std::map<std::string, Run>& runs, const std::string& mode) {
  auto it = runs.find(mode);
  return it == runs.end() ? nullptr : &it->second;
}
template <typename StepOrCase>
auto RunOf(const StepOrCase* s, std::string_view mode) -> decltype(RunIn(s->runs, "")) {
  return s == nullptr ? nullptr : RunIn(s->runs, std::string(mode));
}

// The run if it is there and did not fail.
template <typename Run>
const Run* Ok(const Run* run) {
  return run != nullptr && run->error.empty() ? run : nullptr;
}
template <typename Run>
const RunResources* Res(const Run* run) {
  return Ok(run) ? &run->resources : nullptr;
}

// A figure of `p`, as a double (nullopt: no `p`, or not measured).
template <typename P, typename T>
std::optional<double> Get(const P* p, std::optional<T> P::*member) {
  if (p == nullptr || !(p->*member)) return std::nullopt;
  return static_cast<double>(*(p->*member));
}
template <typename T>
std::optional<double> D(const std::optional<T>& v) {
  if (!v) return std::nullopt;
  return static_cast<double>(*v);
}

std::vector<std::string> Modes(const SuiteResults& r) {
  if (!r.modes.empty()) return r.modes;
  return {std::string(kModeBare), std::string(kModeEbpf), std::string(kModeIptables),
          std::string(kModeSidecar)};
}

// The run keys of `runs` in report order: each mode, then its "-l7" and "-l7-route" runs when
// there are.
template <typename Run>
std::vector<std::string> RunKeys(const std::vector<std::string>& modes,
                                 const std::map<std::string, Run>& runs) {
  std::vector<std::string> keys;
  for (const std::string& m : modes) {
    keys.push_back(m);
    for (std::string_view suffix : {kL7Suffix, kL7RouteSuffix})
      if (runs.contains(m + std::string(suffix))) keys.push_back(m + std::string(suffix));
  }
  return keys;
}

// The title the document recorded for the mode, else the suite's (results.h).
std::string ModeTitle(const SuiteResults& r, const std::string& mode) {
  auto it = r.mode_titles.find(mode);
  return it == r.mode_titles.end() || it->second.empty() ? suite::ModeTitle(mode) : it->second;
}

// ---- Formatting ----

double Round(double v, double unit) {
  return std::round(v / unit) * unit;
}

std::string Fmt(double v, int decimals) {
  return absl::StrFormat("%.*f", decimals, v);
}

std::string Thousands(double v) {
  const bool neg = v < 0;
  std::string digits = absl::StrFormat("%.0f", std::fabs(v));
  std::string out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return neg ? "-" + out : out;
}

std::string Pct(double fraction) {
  const double p = fraction * 100.0;
  return Fmt(p, std::fabs(p) < 10 ? 1 : 0) + "%";
}

std::string Ratio(double r) {
  return Fmt(r, 2) + "×";
}

std::string Signed(double v, int decimals) {
  return (v >= 0 ? "+" : "") + Fmt(v, decimals);
}

std::string Opt(const std::optional<double>& v, int decimals, double scale = 1.0) {
  return v ? Fmt(*v / scale, decimals) : "–";
}

// Markdown table cells: a '|' or a newline in an error message would break the table.
std::string Cell(std::string s) {
  s = absl::StrReplaceAll(s, {{"|", "\\|"}, {"\r", " "}, {"\n", " "}});
  return s;
}

std::optional<double> Div(const std::optional<double>& a, const std::optional<double>& b) {
  if (!a || !b || *b == 0) return std::nullopt;
  return *a / *b;
}

// ---- Goals ----

GoalRow NotMeasured(std::string scenario, std::string goal, std::string mode, std::string why) {
  GoalRow g;
  g.scenario = std::move(scenario);
  g.goal = std::move(goal);
  g.mode = std::move(mode);
  g.value = "not measured";
  g.measured = false;
  g.pass = false;
  g.detail = std::move(why);
  return g;
}

// One number from one run, or why it is not there.
struct Input {
  std::optional<double> v;
  std::string why;
};

// `key` of the run `what_run`, read by `get`.
template <typename Run, typename Get>
Input Need(const Run* run, const std::string& what_run, const std::string& key, Get get) {
  if (run == nullptr) return {std::nullopt, what_run + " missing"};
  if (!run->error.empty()) return {std::nullopt, absl::StrCat(what_run, " failed: ", run->error)};
  std::optional<double> v = get(*run);
  if (!v) return {std::nullopt, absl::StrCat(key, " missing from ", what_run)};
  return {v, ""};
}

// The first reason among inputs that are missing ("" when all are there).
std::string Missing(std::initializer_list<const Input*> inputs) {
  for (const Input* i : inputs)
    if (!i->v) return i->why;
  return "";
}

// Sets pass/value/detail for `value` against `limit`; `inputs` explains where value came from.
void Judge(GoalRow& g, double value, double limit, bool at_most, const std::string& value_text,
           const std::string& limit_text, const std::string& inputs) {
  g.measured = true;
  g.value = value_text;
  g.pass = at_most ? value <= limit + kEps * std::fabs(limit) + kEps
                   : value >= limit - kEps * std::fabs(limit) - kEps;
  std::string verdict;
  if (g.pass) {
    verdict = "met";
  } else if (limit > 0) {
    verdict = "missed by " + Pct(at_most ? value / limit - 1 : 1 - value / limit);
  } else {
    verdict = absl::StrCat("missed by ", Fmt(std::fabs(value - limit), 2));
  }
  g.detail = absl::StrCat(value_text, ", goal ", limit_text, ": ", verdict,
                          inputs.empty() ? "" : " (" + inputs + ")");
}

void SeedGoals(const SuiteResults& r, std::vector<GoalRow>& out) {
  const std::optional<SeedResult>& seed = r.scenarios.seed;
  const SeedStep* s20 = FindSeedStep(r, 20);
  const LoadRun* bare20 = RunOf(s20, kModeBare);
  struct RatioGoal {
    const char* key;
    std::optional<double> (*get)(const LoadRun&);
    const char* goal;
    double limit;
    int decimals;
    double scale;
    const char* unit;
  };
  const RatioGoal ratio_goals[] = {
      {"latency_ms.p75", [](const LoadRun& x) { return x.latency_ms.p75; },
       "p75 latency at 20 users ≤ 1.10× bare", 1.10, 2, 1, " ms"},
      {"cpu_cores", [](const LoadRun& x) { return x.resources.cpu_cores; },
       "CPU (cores) at 20 users ≤ 1.25× bare", 1.25, 3, 1, " cores"},
      {"mem_bytes", [](const LoadRun& x) { return D(x.resources.mem_bytes); },
       "memory at 20 users ≤ 1.05× bare", 1.05, 1, kMiB, " MiB"},
  };
  for (const RatioGoal& rg : ratio_goals) {
    for (const std::string& mode : WeftModes()) {
      if (!seed) {
        out.push_back(NotMeasured("seed", rg.goal, mode, "scenario seed not run"));
        continue;
      }
      if (s20 == nullptr) {
        out.push_back(NotMeasured("seed", rg.goal, mode, "no 20-user step in scenario seed"));
        continue;
      }
      const LoadRun* run = RunOf(s20, mode);
      const std::string key = rg.key;
      Input b = Need(bare20, "the bare run at 20 users", key, rg.get);
      Input m = Need(run, "the " + mode + " run at 20 users", key, rg.get);
      std::string why = Missing({&b, &m});
      if (why.empty() && *b.v <= 0) why = "bare's " + key + " is 0: no ratio";
      if (!why.empty()) {
        out.push_back(NotMeasured("seed", rg.goal, mode, why));
        continue;
      }
      GoalRow g;
      g.scenario = "seed";
      g.goal = rg.goal;
      g.mode = mode;
      const double ratio = *m.v / *b.v;
      Judge(g, ratio, rg.limit, true, Ratio(ratio) + " bare", "≤ " + Ratio(rg.limit),
            absl::StrCat(Fmt(*m.v / rg.scale, rg.decimals), rg.unit, " vs bare ",
                         Fmt(*b.v / rg.scale, rg.decimals), rg.unit));
      out.push_back(std::move(g));
    }
  }

  const char* goal40 = "holds 40 users: achieved ≥ 0.99× asked rps, no errors";
  const SeedStep* s40 = FindSeedStep(r, 40);
  const LoadRun* bare40 = RunOf(s40, kModeBare);
  const double rate = seed ? seed->rate_per_user : 5.0;
  for (const std::string& mode : WeftModes()) {
    if (!seed) {
      out.push_back(NotMeasured("seed", goal40, mode, "scenario seed not run"));
      continue;
    }
    if (s40 == nullptr) {
      out.push_back(NotMeasured("seed", goal40, mode, "no 40-user step in scenario seed"));
      continue;
    }
    const LoadRun* run = RunOf(s40, mode);
    const std::string what = "the " + mode + " run at 40 users";
    Input achieved =
        Need(run, what, "achieved_rps", [](const LoadRun& x) { return x.achieved_rps; });
    Input errors = Need(run, what, "errors", [](const LoadRun& x) { return D(x.errors); });
    Input asked = Need(run, what, "asked_rps", [](const LoadRun& x) { return x.asked_rps; });
    if (!asked.v && achieved.v) asked.v = 40 * rate;  // the step's definition: users × rate
    std::string why = Missing({&achieved, &errors, &asked});
    if (why.empty() && *asked.v <= 0) why = "asked_rps is 0";
    if (!why.empty()) {
      out.push_back(NotMeasured("seed", goal40, mode, why));
      continue;
    }
    GoalRow g;
    g.scenario = "seed";
    g.goal = goal40;
    g.mode = mode;
    g.measured = true;
    const double frac = *achieved.v / *asked.v;
    g.value = absl::StrCat(Fmt(*achieved.v, 1), " of ", Fmt(*asked.v, 0), " rps, ",
                           Thousands(*errors.v), " errors");
    const bool rps_ok = frac >= 0.99 - kEps;
    const bool errors_ok = *errors.v == 0;
    g.pass = rps_ok && errors_ok;
    std::vector<std::string> parts;
    parts.push_back(absl::StrCat(Ratio(frac), " asked"));
    if (!rps_ok) parts.back() += absl::StrCat(", goal ≥ 0.99×: missed by ", Pct(1 - frac / 0.99));
    if (!errors_ok) parts.push_back(absl::StrCat(Thousands(*errors.v), " errors, goal 0"));
    std::optional<double> bare_rps = Get(Ok(bare40), &LoadRun::achieved_rps);
    if (bare_rps && *bare_rps > 0) {
      std::string b = absl::StrCat("bare ", Fmt(*bare_rps, 1), " rps, ",
                                   Thousands(Get(bare40, &LoadRun::errors).value_or(0)),
                                   " errors; ", Ratio(*achieved.v / *bare_rps), " bare");
      if (*bare_rps / *asked.v < 0.99)
        b += "; bare did not hold the rate either: the machine is saturated";
      parts.push_back(b);
    } else {
      parts.push_back("no bare run at 40 users to compare with");
    }
    g.detail = absl::StrCat(g.pass ? "met" : "missed", ": ", absl::StrJoin(parts, "; "));
    out.push_back(std::move(g));
  }
}

std::vector<int> IstioConnections(const SuiteResults& r) {
  std::vector<int> out;
  if (r.scenarios.istio)
    for (const IstioCase& c : r.scenarios.istio->cases)
      if (c.protocol.empty() || c.protocol == kProtocolHttp1) out.push_back(c.connections);
  return out;
}

void IstioGoals(const SuiteResults& r, std::vector<GoalRow>& out) {
  const std::optional<IstioResult>& istio = r.scenarios.istio;
  std::vector<int> conns = IstioConnections(r);
  const char* kP99 = "added p99 over bare ≤ ½ the sidecar's added p99";
  const char* kCpu = "CPU per 1,000 rps over bare ≤ 0.06 vCPU";
  const char* kRss = "ztunnel RSS at 1,000 rps ≤ 12 MiB";
  if (!istio || conns.empty()) {
    const std::string why = !istio ? "scenario istio not run" : "no istio cases";
    for (const char* goal : {kP99, kCpu, kRss})
      for (const std::string& mode : WeftModes())
        out.push_back(NotMeasured("istio", goal, mode, why));
    return;
  }
  const double scenario_rps = istio->rps;
  for (const char* goal : {kP99, kCpu, kRss}) {
    for (int n : conns) {
      const IstioCase* c = FindIstioCase(r, n);
      const std::string goal_text = absl::StrCat(goal, " (", n, " connections)");
      const std::string suffix = absl::StrCat(" run, ", n, " connections");
      const LoadRun* bare = RunOf(c, kModeBare);
      const LoadRun* side = RunOf(c, kModeSidecar);
      for (const std::string& mode : WeftModes()) {
        const LoadRun* run = RunOf(c, mode);
        GoalRow g;
        g.scenario = "istio";
        g.goal = goal_text;
        g.mode = mode;
        if (goal == kP99) {
          auto p99 = [](const LoadRun& x) { return x.latency_ms.p99; };
          Input b = Need(bare, "the bare" + suffix, "latency_ms.p99", p99);
          Input m = Need(run, "the " + mode + suffix, "latency_ms.p99", p99);
          Input s = Need(side, "the sidecar" + suffix, "latency_ms.p99", p99);
          if (std::string why = Missing({&b, &m, &s}); !why.empty()) {
            out.push_back(NotMeasured("istio", goal_text, mode, why));
            continue;
          }
          const double added = *m.v - *b.v, side_added = *s.v - *b.v, limit = side_added / 2;
          Judge(g, added, limit, true, absl::StrCat(Signed(added, 2), " ms"),
                absl::StrCat("≤ ", Signed(limit, 2), " ms"),
                absl::StrCat("p99 ", Fmt(*m.v, 2), " ms vs bare ", Fmt(*b.v, 2),
                             " ms; sidecar added ", Signed(side_added, 2), " ms"));
          // A limit at or below 0 means the sidecar was no slower than bare (noise): say so.
          if (limit <= 0) g.detail += "; the sidecar added nothing in this run";
        } else if (goal == kCpu) {
          // The mode's processes (apps + mesh) and the kernel's softirq time over bare's: on a
          // shared machine the whole host's CPU moves with unrelated work, these do not.
          auto cpu = [](const LoadRun& x) { return x.resources.cpu_cores; };
          auto softirq = [](const LoadRun& x) { return x.resources.host_softirq_cores; };
          Input b = Need(bare, "the bare" + suffix, "cpu_cores", cpu);
          Input m = Need(run, "the " + mode + suffix, "cpu_cores", cpu);
          Input bs = Need(bare, "the bare" + suffix, "host_softirq_cores", softirq);
          Input ms = Need(run, "the " + mode + suffix, "host_softirq_cores", softirq);
          if (std::string why = Missing({&b, &m, &bs, &ms}); !why.empty()) {
            out.push_back(NotMeasured("istio", goal_text, mode, why));
            continue;
          }
          double rps = run->achieved_rps.value_or(run->asked_rps.value_or(0));
          if (rps <= 0) rps = scenario_rps;
          const double per_k = ((*m.v - *b.v) + (*ms.v - *bs.v)) * 1000.0 / rps;
          std::string inputs = absl::StrCat("apps + mesh processes ", Fmt(*m.v, 3), " vs bare ",
                                            Fmt(*b.v, 3), " cores, softirq ", Fmt(*ms.v, 3), " vs ",
                                            Fmt(*bs.v, 3), " cores, at ", Fmt(rps, 0), " rps");
          if (auto mesh = run->resources.mesh_cpu_cores)
            inputs += absl::StrCat("; mesh processes alone ", Fmt(*mesh * 1000.0 / rps, 3),
                                   " vCPU per 1,000 rps");
          auto hm = run->resources.host_cpu_cores, hb = bare->resources.host_cpu_cores;
          if (hm && hb)
            inputs += absl::StrCat("; whole host ", Fmt((*hm - *hb) * 1000.0 / rps, 3),
                                   " vCPU per 1,000 rps over bare (includes unrelated work)");
          Judge(g, per_k, 0.06, true, absl::StrCat(Fmt(per_k, 3), " vCPU"), "≤ 0.060 vCPU", inputs);
        } else {
          Input m = Need(run, "the " + mode + suffix, "ztunnel_peak_rss_bytes",
                         [](const LoadRun& x) { return D(x.resources.ztunnel_peak_rss_bytes); });
          if (!m.v) {
            out.push_back(NotMeasured("istio", goal_text, mode, m.why));
            continue;
          }
          std::string inputs = "largest ztunnel's peak RSS";
          auto pss = D(run->resources.ztunnel_peak_pss_bytes);
          auto anon = D(run->resources.ztunnel_peak_anon_bytes);
          if (pss && anon) {
            inputs += absl::StrCat("; its PSS ", Fmt(*pss / kMiB, 1), " MiB, private heap/stack ",
                                   Fmt(*anon / kMiB, 1),
                                   " MiB (the rest of the RSS is shared library code)");
          }
          Judge(g, *m.v / kMiB, 12.0, true, absl::StrCat(Fmt(*m.v / kMiB, 1), " MiB"), "≤ 12 MiB",
                inputs);
        }
        out.push_back(std::move(g));
      }
    }
  }
}

void ThroughputGoals(const SuiteResults& r, std::vector<GoalRow>& out) {
  const std::optional<ThroughputResult>& tp = r.scenarios.throughput;
  struct Want {
    std::string pair;
    int streams;
    double limit;
  };
  std::vector<Want> wants = {{"cross-node", 1, 0.5}};
  std::set<int> same_streams;
  if (tp)
    for (const ThroughputCase& c : tp->cases)
      if (c.pair == "same-node") same_streams.insert(c.streams);
  if (same_streams.empty()) same_streams = {1, 8};
  for (int s : same_streams) wants.push_back({"same-node", s, 0.8});
  for (const Want& w : wants) {
    const std::string goal =
        absl::StrCat(w.pair, ", ", w.streams, w.streams == 1 ? " stream" : " streams", " ≥ ",
                     Fmt(w.limit * 100, 0), "% of bare");
    const ThroughputCase* c = FindThroughputCase(r, w.pair, w.streams);
    for (const std::string& mode : WeftModes()) {
      if (!tp) {
        out.push_back(NotMeasured("throughput", goal, mode, "scenario throughput not run"));
        continue;
      }
      if (c == nullptr) {
        out.push_back(NotMeasured("throughput", goal, mode, "case not run"));
        continue;
      }
      auto gbps = [](const ThroughputRun& x) { return x.gbps; };
      Input b = Need(RunOf(c, kModeBare), "the bare run", "gbps", gbps);
      Input m = Need(RunOf(c, mode), "the " + mode + " run", "gbps", gbps);
      std::string why = Missing({&b, &m});
      if (why.empty() && *b.v <= 0) why = "bare measured 0 Gbit/s: no ratio";
      if (!why.empty()) {
        out.push_back(NotMeasured("throughput", goal, mode, why));
        continue;
      }
      GoalRow g;
      g.scenario = "throughput";
      g.goal = goal;
      g.mode = mode;
      const double frac = *m.v / *b.v;
      Judge(g, frac, w.limit, false, Pct(frac) + " of bare", "≥ " + Pct(w.limit),
            absl::StrCat(Fmt(*m.v, 2), " vs bare ", Fmt(*b.v, 2), " Gbit/s"));
      out.push_back(std::move(g));
    }
  }
}

// The idle-connection entry with the most connections for a mode.
const ScaleIdle* LargestIdle(const SuiteResults& r, const std::string& mode) {
  const ScaleIdle* best = nullptr;
  double best_n = -1;
  if (!r.scenarios.scale) return nullptr;
  for (const ScaleIdle& e : r.scenarios.scale->idle_connections) {
    if (e.mode != mode) continue;
    if (e.connections > best_n) {
      best = &e;
      best_n = e.connections;
    }
  }
  return best;
}

std::optional<double> BytesPerConnection(const ScaleIdle& e) {
  if (auto b = D(e.bytes_per_connection)) return b;
  auto rss = D(e.ztunnel_rss_bytes), base = D(e.baseline_ztunnel_rss_bytes);
  const double n = e.connections;
  if (rss && base && n > 0) return (*rss - *base) / n;
  return std::nullopt;
}

void ScaleGoals(const SuiteResults& r, std::vector<GoalRow>& out) {
  const char* goal = "ztunnel memory per idle tunnelled connection ≤ 4 KiB";
  for (const std::string& mode : WeftModes()) {
    if (!r.scenarios.scale) {
      out.push_back(NotMeasured("scale", goal, mode, "scenario scale not run"));
      continue;
    }
    const ScaleIdle* e = LargestIdle(r, mode);
    if (e == nullptr) {
      out.push_back(NotMeasured("scale", goal, mode, "no idle-connection measurement"));
      continue;
    }
    if (!e->error.empty()) {
      out.push_back(NotMeasured("scale", goal, mode, "idle-connection run failed: " + e->error));
      continue;
    }
    std::optional<double> bpc = BytesPerConnection(*e);
    if (!bpc) {
      out.push_back(NotMeasured("scale", goal, mode, "bytes_per_connection missing"));
      continue;
    }
    GoalRow g;
    g.scenario = "scale";
    g.goal = goal + std::string(" (per ztunnel)");
    g.mode = mode;
    // A cross-node tunnelled connection is held by two ztunnels (the client's node and the
    // server's): the goal is what one ztunnel spends per connection it holds, as Istio quotes
    // ztunnel memory per ztunnel. The sum over both is in the detail.
    const double per_zt = D(e->bytes_per_connection_per_ztunnel).value_or(*bpc / 2);
    Judge(g, per_zt, 4096, true, absl::StrCat(Thousands(per_zt), " B"), "≤ 4,096 B",
          absl::StrCat("at ", Thousands(e->connections),
                       " connections; both nodes' ztunnels together ", Thousands(*bpc),
                       " B per connection"));
    out.push_back(std::move(g));
  }
}

// ---- Markdown ----

struct Md {
  std::string s;
  void Line(const std::string& l = "") { s += l + "\n"; }
  void Row(const std::vector<std::string>& cells) {
    std::string l = "|";
    for (const std::string& c : cells) l += " " + c + " |";
    Line(l);
  }
  void Head(const std::vector<std::string>& cells, size_t left_aligned) {
    Row(cells);
    std::string l = "|";
    for (size_t i = 0; i < cells.size(); ++i) l += i < left_aligned ? "---|" : "---:|";
    Line(l);
  }
};

template <typename Run>
std::string RunFailedCell(const Run* run) {
  if (run == nullptr) return "not run";
  if (!run->error.empty()) return "**failed** (see Errors)";
  return "";
}

// "1.05×" of mode over bare, or "–".
std::string RatioCell(const std::optional<double>& v, const std::optional<double>& bare) {
  auto r = Div(v, bare);
  return r ? Ratio(*r) : "–";
}

// A latency percentile of a run that did not fail.
std::optional<double> Lat(const LoadRun* run, std::optional<double> Percentiles::*p) {
  return Ok(run) ? run->latency_ms.*p : std::nullopt;
}

// CPU cores a mode adds over bare: its processes (apps + mesh, system time included) and the
// kernel's softirq time, both minus bare's.
std::optional<double> AddedCpu(const LoadRun* run, const LoadRun* bare) {
  auto m = Get(Res(run), &RunResources::cpu_cores), b = Get(Res(bare), &RunResources::cpu_cores);
  auto ms = Get(Res(run), &RunResources::host_softirq_cores),
       bs = Get(Res(bare), &RunResources::host_softirq_cores);
  if (!m || !b || !ms || !bs) return std::nullopt;
  return (*m - *b) + (*ms - *bs);
}

void PlotLinks(Md& md, const std::vector<std::string>& plots,
               std::initializer_list<std::pair<const char*, const char*>> wanted) {
  bool any = false;
  for (const auto& [file, alt] : wanted) {
    for (const std::string& p : plots) {
      if (std::filesystem::path(p).filename() == file) {
        md.Line(absl::StrCat("![", alt, "](", file, ")"));
        any = true;
      }
    }
  }
  if (any) md.Line();
}

void RenderHeader(const SuiteResults& r, Md& md) {
  md.Line("# Weft benchmark suite");
  md.Line();
  md.Line(
      absl::StrCat("- Run: ", r.started.value_or("?"), " to ", r.finished.value_or("?"), " (UTC)"));
  md.Line(absl::StrCat("- Invocation: `", r.invocation.value_or("?"), "`"));
  md.Line(absl::StrCat("- Revision: ", r.revision.value_or("unknown")));
  md.Line(absl::StrCat("- Quick run: ",
                       r.quick ? "yes (shorter runs, fewer steps: indicative only)" : "no"));
  const Machine& m = r.machine;
  std::string machine;
  if (m.nproc) machine += absl::StrCat(Fmt(*m.nproc, 0), " CPUs");
  if (m.mem_total_bytes)
    machine +=
        absl::StrCat(machine.empty() ? "" : ", ",
                     Fmt(static_cast<double>(*m.mem_total_bytes) / (kMiB * 1024), 1), " GiB RAM");
  if (!m.kernel.empty()) machine += absl::StrCat(machine.empty() ? "" : ", ", "kernel ", m.kernel);
  md.Line(absl::StrCat("- Machine: ", machine.empty() ? "unknown" : machine));
  auto load = [&](const std::optional<std::vector<double>>& l) {
    if (!l) return std::string("?");
    std::vector<std::string> parts;
    for (double e : *l) parts.push_back(Fmt(e, 2));
    return absl::StrJoin(parts, " / ");
  };
  md.Line(absl::StrCat("- Load average (1/5/15 min) before: ", load(m.load_before), ", after: ",
                       load(m.load_after), " (other work on the machine skews the figures)"));
  std::vector<std::string> titles;
  for (const std::string& mode : Modes(r))
    titles.push_back(absl::StrCat("`", mode, "` = ", ModeTitle(r, mode)));
  md.Line(absl::StrCat("- Modes (run order within each step): ", absl::StrJoin(titles, "; ")));
  md.Line();
}

void RenderGoals(const std::vector<GoalRow>& goals, bool l7, Md& md) {
  int pass = 0, miss = 0, unmeasured = 0;
  for (const GoalRow& g : goals) (g.measured ? (g.pass ? pass : miss) : unmeasured)++;
  md.Line("## Goals");
  md.Line();
  md.Line(absl::StrCat(
      "Goals, not assertions (", l7 ? "issues 6 and 14, L7 rows marked \"L7:\"" : "issue 6",
      "): ", pass, " met, ", miss, " missed, ", unmeasured,
      " not measured. A goal whose inputs are missing or whose run failed is not measured."));
  md.Line();
  md.Head({"scenario", "goal", "mode", "value", "result", "detail"}, 6);
  for (const GoalRow& g : goals) {
    md.Row({g.scenario, Cell(g.goal), g.mode, Cell(g.value),
            !g.measured ? "not measured"
            : g.pass    ? "pass"
                        : "**missed**",
            Cell(g.detail)});
  }
  md.Line();
}

std::string PlusPct(double mode, double bare) {
  return bare > 0
             ? absl::StrCat(" (", mode >= bare ? "+" : "", Fmt((mode / bare - 1) * 100, 0), "%)")
             : "";
}

void RenderAnchors(const SuiteResults& r, Md& md) {
  const std::vector<std::string> cols = {std::string(kModeEbpf), std::string(kModeIptables),
                                         std::string(kModeSidecar)};
  md.Line("## Published anchors (other hardware)");
  md.Line();
  md.Line(
      "Published figures come from other hardware and other setups (the thesis's TeaStore runs "
      "at 20 users; Istio's ambient and sidecar figures per 1,000 rps): compare the ratios to "
      "bare, not the absolute values.");
  md.Line();
  std::vector<std::string> head = {"figure", "published (other hardware)", "this run: bare"};
  for (const std::string& m : cols) head.push_back("this run: " + ModeTitle(r, m));
  md.Head(head, head.size());

  const SeedStep* s20 = FindSeedStep(r, 20);
  const LoadRun* bare20 = RunOf(s20, kModeBare);
  auto seed_row = [&](const std::string& figure, const std::string& published,
                      std::function<std::optional<double>(const LoadRun*)> get, double scale,
                      int decimals, const std::string& unit) {
    std::optional<double> b = get(bare20);
    auto num = [&](double v) {
      return decimals == 0 ? Thousands(v / scale) : Fmt(v / scale, decimals);
    };
    std::vector<std::string> row = {figure, published, b ? num(*b) + unit : "–"};
    for (const std::string& m : cols) {
      std::optional<double> v = get(RunOf(s20, m));
      row.push_back(v ? num(*v) + unit + (b ? PlusPct(*v, *b) : "") : "–");
    }
    md.Row(row);
  };
  seed_row(
      "seed p75 latency, 20 users", "bare 18 ms; Istio 42 ms (+133%); Linkerd 49 ms (+175%)",
      [](const LoadRun* run) { return Lat(run, &Percentiles::p75); }, 1, 2, " ms");
  seed_row(
      "seed CPU, 20 users", "bare 2,226 m; Istio 5,132 m (+131%); Linkerd 4,386 m (+97%)",
      [](const LoadRun* run) { return Get(Res(run), &RunResources::cpu_cores); }, 0.001, 0, " m");
  seed_row(
      "seed memory, 20 users", "bare 9,749 MB; Istio 14,152 MB (+45%); Linkerd 10,947 MB (+11%)",
      [](const LoadRun* run) { return Get(Res(run), &RunResources::mem_bytes); }, kMiB, 0, " MiB");

  std::vector<int> conns = IstioConnections(r);
  auto istio_row =
      [&](const std::string& figure, const std::string& published,
          std::function<std::string(const IstioCase* c, const std::string& mode)> cell) {
        std::vector<std::string> row = {figure, published};
        for (const std::string& m :
             std::vector<std::string>{std::string(kModeBare), cols[0], cols[1], cols[2]}) {
          std::vector<std::string> parts;
          for (int n : conns) {
            std::string c = cell(FindIstioCase(r, n), m);
            if (!c.empty()) parts.push_back(absl::StrCat(c, " (", n, " conns)"));
          }
          row.push_back(parts.empty() ? "–" : absl::StrJoin(parts, "; "));
        }
        md.Row(row);
      };
  istio_row("istio added p90 / p99 over bare, 1,000 rps",
            "Istio ambient, two ztunnel hops: +0.17 ms p90 / +0.20 ms p99",
            [](const IstioCase* c, const std::string& m) -> std::string {
              const LoadRun* b = RunOf(c, kModeBare);
              const LoadRun* run = RunOf(c, m);
              auto b90 = Lat(b, &Percentiles::p90), b99 = Lat(b, &Percentiles::p99),
                   v90 = Lat(run, &Percentiles::p90), v99 = Lat(run, &Percentiles::p99);
              if (!b90 || !b99 || !v90 || !v99) return "";
              if (m == kModeBare) return absl::StrCat(Fmt(*b90, 2), " / ", Fmt(*b99, 2), " ms");
              return absl::StrCat(Signed(*v90 - *b90, 2), " / ", Signed(*v99 - *b99, 2), " ms");
            });
  istio_row("CPU per 1,000 rps over bare (processes + softirq)",
            "ambient ~0.06 vCPU; a sidecar ~0.20 vCPU",
            [&](const IstioCase* c, const std::string& m) -> std::string {
              if (m == kModeBare) return "";
              const LoadRun* run = RunOf(c, m);
              auto added = AddedCpu(run, RunOf(c, kModeBare));
              if (!added) return "";
              double rps = Get(Ok(run), &LoadRun::achieved_rps).value_or(0);
              if (rps <= 0) rps = r.scenarios.istio ? r.scenarios.istio->rps : 1000;
              return absl::StrCat(Fmt(*added * 1000 / rps, 3), " vCPU");
            });
  istio_row("mesh memory at 1,000 rps", "ambient ztunnel ~12 MB; a sidecar ~60 MB",
            [](const IstioCase* c, const std::string& m) -> std::string {
              const LoadRun* run = RunOf(c, m);
              if (m == kModeBare) return "";
              if (m == kModeSidecar) {
                auto v = Get(Res(run), &RunResources::mesh_peak_rss_bytes);
                return v ? absl::StrCat(Fmt(*v / kMiB, 1), " MiB all proxies") : "";
              }
              auto v = Get(Res(run), &RunResources::ztunnel_peak_rss_bytes);
              return v ? absl::StrCat(Fmt(*v / kMiB, 1), " MiB ztunnel") : "";
            });
  md.Line();
}

void RenderSeed(const SuiteResults& r, const std::vector<std::string>& modes,
                const std::vector<std::string>& plots, Md& md) {
  if (!r.scenarios.seed) return;
  const SeedResult& seed = *r.scenarios.seed;
  md.Line("## Seed (TeaStore-like shop)");
  md.Line();
  md.Line(absl::StrCat("Users × ", Fmt(seed.rate_per_user, 0), " rps each, warm-up ",
                       Fmt(seed.warmup_seconds, 0), " s, measured ", Fmt(seed.duration_seconds, 0),
                       " s per step. Latency from intended send time (ms); CPU = apps + mesh "
                       "cores (load generator excluded); memory = mean summed PSS (MiB: shared "
                       "library pages counted once, not once per process). "
                       "Ratios are to bare at the same step."));
  md.Line();
  PlotLinks(md, plots,
            {{"seed-latency.png", "seed: p75 and p99 latency vs users"},
             {"seed-cpu.png", "seed: CPU vs users"},
             {"seed-memory.png", "seed: memory vs users"}});
  md.Head({"users", "mode", "p50", "p75", "p90", "p99", "achieved / asked rps", "errors",
           "CPU cores", "memory MiB", "p75 ×bare", "p99 ×bare", "CPU ×bare", "memory ×bare"},
          2);
  for (const SeedStep& step : seed.steps) {
    const std::string users = Fmt(step.users, 0);
    const LoadRun* bare = RunOf(&step, kModeBare);
    for (const std::string& mode : RunKeys(modes, step.runs)) {
      const LoadRun* run = RunOf(&step, mode);
      if (run == nullptr) continue;
      if (!run->error.empty()) {
        md.Row({users, ModeTitle(r, mode), RunFailedCell(run), "", "", "", "", "", "", "", "", "",
                "", ""});
        continue;
      }
      const bool is_bare = mode == kModeBare;
      auto ratio = [&](std::optional<double> v, std::optional<double> b) {
        return is_bare ? std::string("1.00×") : RatioCell(v, b);
      };
      const RunResources& res = run->resources;
      const RunResources* bres = Res(bare);
      md.Row({users, ModeTitle(r, mode), Opt(Lat(run, &Percentiles::p50), 2),
              Opt(Lat(run, &Percentiles::p75), 2), Opt(Lat(run, &Percentiles::p90), 2),
              Opt(Lat(run, &Percentiles::p99), 2),
              absl::StrCat(Opt(run->achieved_rps, 1), " / ", Opt(run->asked_rps, 0)),
              Opt(D(run->errors), 0), Opt(res.cpu_cores, 3), Opt(D(res.mem_bytes), 1, kMiB),
              ratio(Lat(run, &Percentiles::p75), Lat(bare, &Percentiles::p75)),
              ratio(Lat(run, &Percentiles::p99), Lat(bare, &Percentiles::p99)),
              ratio(res.cpu_cores, Get(bres, &RunResources::cpu_cores)),
              ratio(D(res.mem_bytes), Get(bres, &RunResources::mem_bytes))});
    }
  }
  md.Line();
}

void RenderIstio(const SuiteResults& r, const std::vector<std::string>& modes,
                 const std::vector<std::string>& plots, Md& md) {
  if (!r.scenarios.istio) return;
  const IstioResult& istio = *r.scenarios.istio;
  md.Line("## Istio-style echo (fortio-like)");
  md.Line();
  md.Line(
      absl::StrCat(Fmt(istio.payload_bytes, 0), " B echo at ", Fmt(istio.rps, 0), " rps for ",
                   Fmt(istio.duration_seconds, 0),
                   " s. Added = mode − bare in the same case (ms). CPU over bare per 1,000 rps = "
                   "(apps + mesh processes' CPU + softirq) of the mode minus bare's, × 1000 / "
                   "achieved rps (kernel time included: system time in the processes, "
                   "softirq from /proc/stat); mesh CPU counts the mesh's processes only."));
  md.Line();
  PlotLinks(md, plots, {{"istio-latency.png", "istio: latency per mode"}});
  md.Head({"connections", "mode", "achieved / asked rps", "errors", "p50", "p90", "p99",
           "added p50 / p90 / p99", "CPU over bare per 1,000 rps", "mesh CPU per 1,000 rps",
           "ztunnel peak RSS MiB"},
          2);
  for (const IstioCase& c : istio.cases) {
    const std::string n = c.protocol.empty()
                              ? Fmt(c.connections, 0)
                              : absl::StrCat(Fmt(c.connections, 0), " (", c.protocol, ")");
    const LoadRun* bare = RunOf(&c, kModeBare);
    for (const std::string& mode : RunKeys(modes, c.runs)) {
      const LoadRun* run = RunOf(&c, mode);
      if (run == nullptr) continue;
      if (!run->error.empty()) {
        md.Row({n, ModeTitle(r, mode), RunFailedCell(run), "", "", "", "", "", "", "", ""});
        continue;
      }
      std::string added = "–";
      if (mode != kModeBare) {
        std::vector<std::string> parts;
        for (auto p : {&Percentiles::p50, &Percentiles::p90, &Percentiles::p99}) {
          auto v = Lat(run, p), b = Lat(bare, p);
          parts.push_back(v && b ? Signed(*v - *b, 2) : "–");
        }
        added = absl::StrJoin(parts, " / ");
      }
      double rps = run->achieved_rps.value_or(0);
      if (rps <= 0) rps = istio.rps;
      std::string host = "–";
      if (auto added = AddedCpu(run, bare); mode != kModeBare && added)
        host = Fmt(*added * 1000 / rps, 3);
      auto mesh = run->resources.mesh_cpu_cores;
      md.Row({n, ModeTitle(r, mode),
              absl::StrCat(Opt(run->achieved_rps, 1), " / ", Opt(run->asked_rps, 0)),
              Opt(D(run->errors), 0), Opt(Lat(run, &Percentiles::p50), 2),
              Opt(Lat(run, &Percentiles::p90), 2), Opt(Lat(run, &Percentiles::p99), 2), added, host,
              mesh ? Fmt(*mesh * 1000 / rps, 3) : "–",
              Opt(D(run->resources.ztunnel_peak_rss_bytes), 1, kMiB)});
    }
  }
  md.Line();
}

void RenderThroughput(const SuiteResults& r, const std::vector<std::string>& modes, Md& md) {
  if (!r.scenarios.throughput) return;
  const ThroughputResult& tp = *r.scenarios.throughput;
  md.Line("## Throughput (iperf3)");
  md.Line();
  md.Line(absl::StrCat(Fmt(tp.seconds, 0), " s per run; % of bare in the same case."));
  md.Line();
  md.Head({"pair", "streams", "mode", "Gbit/s", "% of bare"}, 3);
  for (const ThroughputCase& c : tp.cases) {
    const ThroughputRun* bare = RunOf(&c, kModeBare);
    const std::string streams = Fmt(c.streams, 0);
    for (const std::string& mode : modes) {
      const ThroughputRun* run = RunOf(&c, mode);
      if (run == nullptr) continue;
      if (!run->error.empty()) {
        md.Row({c.pair, streams, ModeTitle(r, mode), RunFailedCell(run), ""});
        continue;
      }
      auto frac = Div(run->gbps, Get(Ok(bare), &ThroughputRun::gbps));
      md.Row({c.pair, streams, ModeTitle(r, mode), Opt(run->gbps, 2), frac ? Pct(*frac) : "–"});
    }
  }
  md.Line();
}

void RenderChurn(const SuiteResults& r, const std::vector<std::string>& modes, Md& md) {
  if (!r.scenarios.churn) return;
  const std::map<std::string, ChurnRun>& runs = r.scenarios.churn->runs;
  md.Line("## Connection churn");
  md.Line();
  md.Line(
      "New connections per second, raised step by step until saturation; max sustained = the "
      "highest asked rate the mode kept up with.");
  if (const auto& t = r.scenarios.churn->threads) {
    md.Line(absl::StrCat("The load generator ran ", *t, " thread", *t == 1 ? "" : "s",
                         " in every mode."));
  }
  md.Line();
  const ChurnRun* bare = RunIn(runs, std::string(kModeBare));
  md.Row({"mode", "max sustained conn/s", "% of bare", "steps (asked → achieved conn/s, p99 ms)"});
  md.Line("|---|---:|---:|---|");
  for (const std::string& mode : modes) {
    const ChurnRun* run = RunIn(runs, mode);
    if (run == nullptr) continue;
    if (!run->error.empty()) {
      md.Row({ModeTitle(r, mode), RunFailedCell(run), "", ""});
      continue;
    }
    auto frac = Div(run->max_sustained_cps, Get(Ok(bare), &ChurnRun::max_sustained_cps));
    std::vector<std::string> steps;
    for (const ChurnStep& s : run->steps) {
      std::string e;
      if (s.errors && *s.errors > 0) e = absl::StrCat(", ", Thousands(*s.errors), " errors");
      steps.push_back(absl::StrCat(Fmt(s.asked_cps, 0), " → ", Opt(s.achieved_cps, 0), " (",
                                   Opt(s.p99_ms, 1), e, s.saturated ? ", saturated" : "", ")"));
    }
    md.Row({ModeTitle(r, mode), run->max_sustained_cps ? Thousands(*run->max_sustained_cps) : "–",
            frac ? Pct(*frac) : "–", steps.empty() ? "–" : absl::StrJoin(steps, "; ")});
  }
  md.Line();
}

void RenderDataplane(const SuiteResults& r, const std::vector<std::string>& modes, Md& md) {
  if (!r.scenarios.dataplane) return;
  const DataplaneResult& dp = *r.scenarios.dataplane;
  md.Line("## Data plane (ping-pong latency, connection rate, BPF run time)");
  md.Line();
  md.Line(absl::StrCat(
      "`client` in the load pod against the suite's TCP echo servers, by pod IP. Ping-pong: ",
      Thousands(dp.round_trips), " round trips of ", dp.message_bytes,
      " B on one connection, µs. Connection rate: sequential connect, 32 B round trip, close, for ",
      dp.connect_seconds, " s. Ratios to bare in the same pair."));
  md.Line();
  md.Head({"pair", "mode", "p50 µs", "p90 µs", "p99 µs", "p99.9 µs", "p99 vs bare", "conn/s",
           "conn/s vs bare"},
          2);
  for (const DataplanePair& pair : dp.pairs) {
    const auto bare_pp = pair.pingpong.find(std::string(kModeBare));
    const auto bare_cr = pair.connect.find(std::string(kModeBare));
    for (const std::string& mode : modes) {
      const auto pp = pair.pingpong.find(mode);
      const auto cr = pair.connect.find(mode);
      if (pp == pair.pingpong.end() && cr == pair.connect.end()) continue;
      const DataplaneRun none;
      const DataplaneRun& p = pp == pair.pingpong.end() ? none : pp->second;
      const DataplaneRun& c = cr == pair.connect.end() ? none : cr->second;
      const DataplaneRun& bp = bare_pp == pair.pingpong.end() ? none : bare_pp->second;
      const DataplaneRun& bc = bare_cr == pair.connect.end() ? none : bare_cr->second;
      const std::string failed = "**failed** (see Errors)";
      md.Row({pair.pair, ModeTitle(r, mode), p.error.empty() ? Opt(p.p50_us, 1) : failed,
              Opt(p.p90_us, 1), Opt(p.p99_us, 1), Opt(p.p999_us, 1), RatioCell(p.p99_us, bp.p99_us),
              c.error.empty() ? (c.per_second ? Thousands(*c.per_second) : "–") : failed,
              RatioCell(c.per_second, bc.per_second)});
    }
  }
  md.Line();
  if (!dp.bpf_error.empty()) {
    md.Line("BPF program run time: not measured (" + dp.bpf_error + ").");
    md.Line();
    return;
  }
  md.Line(
      "BPF program run time in eBPF mode (the eBPF mesh's programs; kernel.bpf_stats_enabled=1 "
      "during the scenario only): runs and ns per run, summed over each figure's runs.");
  md.Line();
  md.Head({"program", "type", "ping-pong runs", "ns/run", "connect runs", "ns/run"}, 2);
  for (const BpfProgram& prog : dp.bpf_programs) {
    std::vector<std::string> row = {"`" + prog.name + "`", prog.type};
    for (const char* figure : {"pingpong", "connect"}) {
      auto it = prog.by_figure.find(figure);
      if (it == prog.by_figure.end()) {
        row.insert(row.end(), {"–", "–"});
      } else {
        row.insert(row.end(), {Thousands(it->second.runs), Fmt(it->second.ns_per_run(), 0)});
      }
    }
    md.Row(row);
  }
  md.Line();
}

void RenderScale(const SuiteResults& r, const std::vector<std::string>& plots, Md& md) {
  if (!r.scenarios.scale) return;
  const ScaleResult& scale = *r.scenarios.scale;
  md.Line("## Scale");
  md.Line();
  PlotLinks(md, plots,
            {{"scale-pods.png", "scale: RSS vs pods"},
             {"scale-idle-connections.png", "scale: ztunnel RSS vs idle connections"}});
  if (!scale.pods.empty()) {
    md.Line("ztunnel and agent RSS vs pods:");
    md.Line();
    md.Head({"mode", "pods", "ztunnel RSS MiB", "agent RSS MiB"}, 1);
    for (const ScalePods& p : scale.pods) {
      if (!p.error.empty()) {
        md.Row({ModeTitle(r, p.mode), Fmt(p.pods, 0), "**failed** (see Errors)", ""});
        continue;
      }
      md.Row({ModeTitle(r, p.mode), Fmt(p.pods, 0), Opt(D(p.ztunnel_rss_bytes), 1, kMiB),
              Opt(D(p.agent_rss_bytes), 1, kMiB)});
    }
    md.Line();
  }
  if (!scale.idle_connections.empty()) {
    md.Line("ztunnel RSS (both nodes' ztunnels summed) vs open idle tunnelled connections:");
    md.Line();
    md.Head({"mode", "connections", "ztunnel RSS MiB", "with 0 connections MiB",
             "bytes per connection (both ztunnels)", "per ztunnel"},
            1);
    for (const ScaleIdle& e : scale.idle_connections) {
      if (!e.error.empty()) {
        md.Row(
            {ModeTitle(r, e.mode), Fmt(e.connections, 0), "**failed** (see Errors)", "", "", ""});
        continue;
      }
      auto bpc = BytesPerConnection(e);
      auto per_zt = D(e.bytes_per_connection_per_ztunnel);
      md.Row({ModeTitle(r, e.mode), Thousands(e.connections), Opt(D(e.ztunnel_rss_bytes), 1, kMiB),
              Opt(D(e.baseline_ztunnel_rss_bytes), 1, kMiB), bpc ? Thousands(*bpc) : "–",
              per_zt ? Thousands(*per_zt) : (bpc ? Thousands(*bpc / 2) : "–")});
    }
    md.Line();
  }
}

// Run-level errors that the document's "errors" list does not already carry.
std::vector<std::string> RunErrors(const SuiteResults& r) {
  std::vector<std::string> out;
  auto add = [&](const std::string& where, const std::string& error) {
    if (!error.empty()) out.push_back(absl::StrCat(where, ": ", error));
  };
  const Scenarios& sc = r.scenarios;
  if (sc.seed)
    for (const SeedStep& s : sc.seed->steps)
      for (const auto& [mode, run] : s.runs)
        add(absl::StrCat("scenario seed, users ", s.users, ", mode ", mode), run.error);
  if (sc.istio)
    for (const IstioCase& c : sc.istio->cases)
      for (const auto& [mode, run] : c.runs)
        add(absl::StrCat("scenario istio, ", c.connections, " connections, mode ", mode),
            run.error);
  if (sc.throughput)
    for (const ThroughputCase& c : sc.throughput->cases)
      for (const auto& [mode, run] : c.runs)
        add(absl::StrCat("scenario throughput, ", c.pair, ", ", c.streams, " streams, mode ", mode),
            run.error);
  if (sc.churn)
    for (const auto& [mode, run] : sc.churn->runs) add("scenario churn, mode " + mode, run.error);
  if (sc.scale) {
    for (const ScalePods& e : sc.scale->pods) add("scenario scale (pods), mode " + e.mode, e.error);
    for (const ScaleIdle& e : sc.scale->idle_connections)
      add("scenario scale (idle_connections), mode " + e.mode, e.error);
  }
  return out;
}

void RenderErrors(const SuiteResults& r, Md& md) {
  std::vector<std::string> listed = r.errors;
  for (const std::string& e : RunErrors(r)) {
    // The runner usually lists a failed run's error already, prefixed with where it happened.
    const std::string msg = e.substr(e.find(": ") + 2);
    bool dup = std::any_of(listed.begin(), listed.end(),
                           [&](const std::string& l) { return l.find(msg) != std::string::npos; });
    if (!dup) listed.push_back(e);
  }
  md.Line("## Errors");
  md.Line();
  if (listed.empty()) {
    md.Line("None.");
  } else {
    for (const std::string& e : listed) md.Line("- " + absl::StrReplaceAll(e, {{"\n", " "}}));
  }
  md.Line();
}

// ---- Plots ----

// Mode names become file names and gnuplot string literals: keep them to a safe alphabet.
std::string SafeName(const std::string& s) {
  std::string out;
  for (char c : s)
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') ? c : '_';
  return out.empty() ? "_" : out;
}

// A gnuplot single-quoted string: only '' needs escaping there; newlines would end the command.
std::string GpQuote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "''";
    else if (c == '\n' || c == '\r')
      out += ' ';
    else
      out += c;
  }
  return out + "'";
}

std::string DatNum(const std::optional<double>& v) {
  return v ? absl::StrFormat("%.6g", *v) : "?";
}

class PlotWriter {
 public:
  explicit PlotWriter(std::string dir) : dir_(std::move(dir)) {}

  absl::Status WriteFile(const std::string& name, const std::string& content) {
    const std::string path = dir_ + "/" + name;
    std::ofstream f(path, std::ios::trunc);
    f << content;
    f.close();
    if (!f) return absl::InternalError(absl::StrCat("cannot write ", path));
    files_.push_back(path);
    return absl::OkStatus();
  }
  std::vector<std::string>& files() { return files_; }
  const std::string& dir() const { return dir_; }

 private:
  std::string dir_;
  std::vector<std::string> files_;
};

// Runs `gnuplot script` with cwd = dir; stderr is captured for the error message.
absl::Status RunGnuplot(const std::string& gnuplot, const std::string& dir,
                        const std::string& script) {
  const std::string log = dir + "/gnuplot.log";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addchdir_np(&fa, dir.c_str());
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  std::vector<std::string> args = {gnuplot, script};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, gnuplot.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc == ENOENT || rc == EACCES)
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot run ", gnuplot, ": ", std::strerror(rc),
        "; install gnuplot (apt-get install gnuplot-nox) to get the PNG plots, or re-plot later "
        "with `cd ",
        dir, " && gnuplot ", script, "`"));
  if (rc != 0)
    return absl::InternalError(absl::StrCat("posix_spawnp ", gnuplot, ": ", std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return ErrnoError(errno, "waitpid gnuplot");
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return absl::OkStatus();
  std::ifstream in(log);
  std::string err((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (err.size() > 2000) err = err.substr(err.size() - 2000);
  return absl::InternalError(absl::StrCat(gnuplot, " ", script, " in ", dir, " failed (",
                                          WIFEXITED(status)
                                              ? absl::StrCat("exit status ", WEXITSTATUS(status))
                                              : absl::StrCat("signal ", WTERMSIG(status)),
                                          "): ", err));
}

constexpr const char* kTerminal =
    "# pngcairo where gnuplot has cairo, else the libgd png terminal.\n"
    "if (strstrt(GPVAL_TERMINALS, 'pngcairo') > 0) {\n"
    "  set terminal pngcairo size 960,600 noenhanced font 'sans,10'\n"
    "} else {\n"
    "  set terminal png size 960,600 noenhanced\n"
    "}\n"
    "set datafile missing '?'\n"
    "set key inside top left opaque box\n"
    "set offsets 0, 0, graph 0.08, 0\n"
    "set grid\n";

// ---- L7 (issue 14): Weft L7 against the HTTP sidecar mesh, added latency and CPU ----

std::string CaseName(const IstioCase& c) {
  return absl::StrCat(c.protocol.empty() ? std::string(kProtocolHttp1) : c.protocol, ", ",
                      c.connections, " connections");
}

// Weft L7's added p99 and CPU per 1,000 rps at most the HTTP sidecar mesh's, in one step/case.
void L7GoalsOf(const std::map<std::string, LoadRun>& runs, const std::string& scenario,
               const std::string& where, double fallback_rps, std::vector<GoalRow>& out) {
  const LoadRun* bare = RunIn(runs, std::string(kModeBare));
  const LoadRun* side = RunIn(runs, std::string(kModeSidecarHttp));
  const std::optional<OverBare> s = ComputeOverBare(side, bare, fallback_rps);
  for (const std::string& mode : WeftModes()) {
    // istio: the "-l7" run (Service declared HTTP); seed: the tea shop's Services are HTTP.
    const std::string key = scenario == "istio" ? mode + std::string(kL7Suffix) : mode;
    const std::optional<OverBare> m = ComputeOverBare(RunIn(runs, key), bare, fallback_rps);
    for (bool cpu : {false, true}) {
      const std::string goal =
          absl::StrCat(cpu ? "L7: CPU over bare per 1,000 rps ≤ the HTTP sidecar mesh's"
                           : "L7: added p99 over bare ≤ the HTTP sidecar mesh's",
                       " (", where, ")");
      auto pick = [cpu](const std::optional<OverBare>& o) {
        return !o ? std::nullopt : cpu ? o->cpu_per_1000_rps : o->p99_ms;
      };
      const std::optional<double> mv = pick(m), sv = pick(s);
      if (!mv || !sv) {
        out.push_back(NotMeasured(scenario, goal, key,
                                  !mv ? absl::StrCat("the ", key,
                                                     " run or bare's is missing or "
                                                     "failed")
                                      : "the sidecar-http run or bare's is missing or failed"));
        continue;
      }
      GoalRow g;
      g.scenario = scenario;
      g.goal = goal;
      g.mode = key;
      const std::string unit = cpu ? " vCPU" : " ms";
      Judge(g, *mv, *sv, true, absl::StrCat(Signed(*mv, cpu ? 3 : 2), unit),
            absl::StrCat("≤ ", Signed(*sv, cpu ? 3 : 2), unit, " (sidecar-http)"), "");
      out.push_back(std::move(g));
    }
  }
}

void L7Goals(const SuiteResults& r, std::vector<GoalRow>& out) {
  if (const SeedStep* s20 = FindSeedStep(r, 20)) {
    const double rps = r.scenarios.seed->rate_per_user * 20;
    L7GoalsOf(s20->runs, "seed", "20 users", rps, out);
  }
  if (r.scenarios.istio) {
    for (const IstioCase& c : r.scenarios.istio->cases)
      L7GoalsOf(c.runs, "istio", CaseName(c), r.scenarios.istio->rps, out);
  }
}

// One table row per run key: percentiles, added over bare, CPU per 1,000 rps.
void OverBareRows(const SuiteResults& r, const std::string& where,
                  const std::map<std::string, LoadRun>& runs, double fallback_rps, Md& md) {
  const LoadRun* bare = RunIn(runs, std::string(kModeBare));
  for (const std::string& key : RunKeys(Modes(r), runs)) {
    const LoadRun* run = RunIn(runs, key);
    if (run == nullptr) continue;
    if (!run->error.empty()) {
      md.Row({where, ModeTitle(r, key), RunFailedCell(run), "", "", "", "", ""});
      continue;
    }
    const std::optional<OverBare> o = ComputeOverBare(run, bare, fallback_rps);
    auto lat = [&](std::optional<double> Percentiles::*p) { return Opt(Lat(run, p), 2); };
    std::string added = "–", cpu = "–", mesh = "–";
    if (o) {
      auto sg = [](const std::optional<double>& v, int d) { return v ? Signed(*v, d) : "–"; };
      added = absl::StrCat(sg(o->p50_ms, 2), " / ", sg(o->p90_ms, 2), " / ", sg(o->p99_ms, 2));
      cpu = o->cpu_per_1000_rps ? Fmt(*o->cpu_per_1000_rps, 3) : "–";
      mesh = o->mesh_cpu_per_1000_rps ? Fmt(*o->mesh_cpu_per_1000_rps, 3) : "–";
    }
    md.Row({where, ModeTitle(r, key), absl::StrCat(Opt(run->achieved_rps, 1)),
            absl::StrCat(lat(&Percentiles::p50), " / ", lat(&Percentiles::p90), " / ",
                         lat(&Percentiles::p99)),
            added, cpu, mesh, Opt(D(run->errors), 0)});
  }
}

void RenderOverBare(const SuiteResults& r, Md& md) {
  if (!HasL7Figures(r)) return;
  md.Line("## Added latency and CPU per 1,000 requests (L4 and L7)");
  md.Line();
  md.Line(
      "Every run against bare's in the same step or case. Added = run − bare (ms); CPU = (apps + "
      "mesh processes' CPU + softirq) − bare's, × 1000 / achieved rps (vCPU per 1,000 requests/s, "
      "kernel time included); mesh CPU = the mesh's processes alone. Weft runs marked \"Service "
      "declared HTTP (L7)\" target the echo server behind a Service whose port says appProtocol "
      "http/grpc; the unmarked Weft runs of the istio scenario target it behind a Service declared "
      "tcp (L4). The tea shop's Services are all declared HTTP, so its Weft runs are L7 wherever "
      "Weft terminates HTTP at the source. The HTTP sidecar mesh parses HTTP in both sidecars.");
  md.Line();
  md.Head({"step / case", "mode", "achieved rps", "p50 / p90 / p99 ms", "added p50 / p90 / p99",
           "CPU over bare per 1,000 rps", "mesh CPU per 1,000 rps", "errors"},
          2);
  if (r.scenarios.seed) {
    for (const SeedStep& s : r.scenarios.seed->steps)
      OverBareRows(r, absl::StrCat("seed, ", s.users, " users"), s.runs,
                   r.scenarios.seed->rate_per_user * s.users, md);
  }
  if (r.scenarios.istio) {
    for (const IstioCase& c : r.scenarios.istio->cases)
      OverBareRows(r, "istio, " + CaseName(c), c.runs, r.scenarios.istio->rps, md);
  }
  md.Line();
}

}  // namespace

std::optional<OverBare> ComputeOverBare(const LoadRun* run, const LoadRun* bare,
                                        double fallback_rps) {
  if (!Ok(run) || !Ok(bare) || run == bare) return std::nullopt;
  OverBare o;
  for (auto [to, p] : {std::pair{&OverBare::p50_ms, &Percentiles::p50},
                       std::pair{&OverBare::p90_ms, &Percentiles::p90},
                       std::pair{&OverBare::p99_ms, &Percentiles::p99}}) {
    auto v = Lat(run, p), b = Lat(bare, p);
    if (v && b) o.*to = Round(*v - *b, 1e-3);
  }
  double rps = run->achieved_rps.value_or(0);
  if (rps <= 0) rps = fallback_rps;
  if (rps > 0) {
    if (auto added = AddedCpu(run, bare)) o.cpu_per_1000_rps = Round(*added * 1000 / rps, 1e-4);
    if (auto m = run->resources.mesh_cpu_cores)
      o.mesh_cpu_per_1000_rps = Round(*m * 1000 / rps, 1e-4);
  }
  return o;
}

bool HasL7Figures(const SuiteResults& results) {
  auto any = [](const std::map<std::string, LoadRun>& runs) {
    for (const auto& [key, run] : runs)
      if (key == kModeSidecarHttp || key.ends_with(kL7Suffix)) return true;
    return false;
  };
  if (results.scenarios.seed)
    for (const SeedStep& s : results.scenarios.seed->steps)
      if (any(s.runs)) return true;
  if (results.scenarios.istio)
    for (const IstioCase& c : results.scenarios.istio->cases)
      if (!c.protocol.empty() || any(c.runs)) return true;
  return false;
}

std::vector<GoalRow> EvaluateGoals(const SuiteResults& results) {
  std::vector<GoalRow> out;
  SeedGoals(results, out);
  IstioGoals(results, out);
  if (HasL7Figures(results)) L7Goals(results, out);
  ThroughputGoals(results, out);
  ScaleGoals(results, out);
  return out;
}

json GoalsToJson(const std::vector<GoalRow>& goals) {
  json a = json::array();
  for (const GoalRow& g : goals) {
    a.push_back({{"scenario", g.scenario},
                 {"goal", g.goal},
                 {"mode", g.mode},
                 {"value", g.value},
                 {"measured", g.measured},
                 {"pass", g.pass},
                 {"result", !g.measured ? "not measured"
                            : g.pass    ? "pass"
                                        : "missed"},
                 {"detail", g.detail}});
  }
  return a;
}

std::string RenderSuiteMarkdown(const SuiteResults& results,
                                const std::vector<std::string>& plot_files) {
  Md md;
  const std::vector<std::string> modes = Modes(results);
  RenderHeader(results, md);
  RenderGoals(EvaluateGoals(results), HasL7Figures(results), md);
  RenderAnchors(results, md);
  RenderSeed(results, modes, plot_files, md);
  RenderIstio(results, modes, plot_files, md);
  RenderOverBare(results, md);
  RenderThroughput(results, modes, md);
  RenderChurn(results, modes, md);
  RenderDataplane(results, modes, md);
  RenderScale(results, plot_files, md);
  RenderErrors(results, md);
  return md.s;
}

namespace {

// The plots of one results document: data files through `w`, the gnuplot script in `gp`, the
// PNGs it will write in `pngs`.
struct Plots {
  const SuiteResults& results;
  PlotWriter& w;
  std::vector<std::string> modes;
  std::string gp;
  std::vector<std::string> pngs;

  // Seed: one data file per mode, rows per users step.
  absl::Status Seed() {
    if (!results.scenarios.seed) return absl::OkStatus();
    std::vector<std::pair<std::string, std::string>> seed_files;  // (mode, file)
    for (const std::string& mode : modes) {
      std::string dat = "# users p50_ms p75_ms p90_ms p99_ms cpu_cores mem_mib\n";
      int rows = 0;
      for (const SeedStep& step : results.scenarios.seed->steps) {
        const LoadRun* run = Ok(RunOf(&step, mode));
        if (run == nullptr) continue;
        auto mem = D(run->resources.mem_bytes);
        dat += absl::StrCat(DatNum(step.users), " ", DatNum(run->latency_ms.p50), " ",
                            DatNum(run->latency_ms.p75), " ", DatNum(run->latency_ms.p90), " ",
                            DatNum(run->latency_ms.p99), " ", DatNum(run->resources.cpu_cores), " ",
                            DatNum(mem ? std::optional<double>(*mem / kMiB) : std::nullopt), "\n");
        ++rows;
      }
      if (rows == 0) continue;
      const std::string file = "seed-" + SafeName(mode) + ".dat";
      WEFT_RETURN_IF_ERROR(w.WriteFile(file, dat));
      seed_files.emplace_back(mode, file);
    }
    if (seed_files.empty()) return absl::OkStatus();
    {
      auto plot_lines = [&](const std::vector<std::pair<int, std::string>>& cols) {
        std::vector<std::string> parts;
        for (size_t i = 0; i < seed_files.size(); ++i) {
          const auto& [mode, file] = seed_files[i];
          for (size_t k = 0; k < cols.size(); ++k) {
            std::string t = ModeTitle(results, mode);
            if (!cols[k].second.empty()) t += " " + cols[k].second;
            parts.push_back(absl::StrCat(GpQuote(file), " using 1:", cols[k].first,
                                         " with linespoints linecolor ", i + 1, " dashtype ", k + 1,
                                         " pointtype ", 5 + 2 * k, " title ", GpQuote(t)));
          }
        }
        return absl::StrCat("plot ", absl::StrJoin(parts, ", \\\n     "), "\n");
      };
      absl::StrAppend(
          &gp, "\nset xlabel 'users (", Fmt(results.scenarios.seed->rate_per_user, 0),
          " rps each)'\n", "set output 'seed-latency.png'\n",
          "set title 'seed: latency vs users (p75 solid, p99 dashed)'\n",
          "set ylabel 'latency (ms)'\n", "set yrange [0:*]\n", plot_lines({{3, "p75"}, {5, "p99"}}),
          "set output 'seed-cpu.png'\n", "set title 'seed: CPU vs users (apps + mesh)'\n",
          "set ylabel 'CPU (cores)'\n", plot_lines({{6, ""}}), "set output 'seed-memory.png'\n",
          "set title 'seed: memory vs users (apps + mesh, mean PSS)'\n",
          "set ylabel 'memory (MiB)'\n", plot_lines({{7, ""}}), "unset output\n");
      pngs.insert(pngs.end(), {"seed-latency.png", "seed-cpu.png", "seed-memory.png"});
    }

    return absl::OkStatus();
  }

  // Istio: rows = (connections, percentile), one column per mode: clustered bars.
  absl::Status Istio() {
    if (!results.scenarios.istio) return absl::OkStatus();
    const IstioResult& istio = *results.scenarios.istio;
    {
      std::vector<std::string> imodes;  // run keys: each mode, then its "-l7" run
      for (const std::string& m : modes)
        for (const std::string& key : {m, m + std::string(kL7Suffix)})
          for (const IstioCase& c : istio.cases)
            if (Lat(RunOf(&c, key), &Percentiles::p50)) {
              imodes.push_back(key);
              break;
            }
      if (!imodes.empty()) {
        std::string dat = "# label";
        for (const std::string& m : imodes) dat += " " + SafeName(m) + "_ms";
        dat += "\n";
        const std::pair<const char*, std::optional<double> Percentiles::*> kPercentiles[] = {
            {"p50", &Percentiles::p50}, {"p90", &Percentiles::p90}, {"p99", &Percentiles::p99}};
        for (const IstioCase& c : istio.cases) {
          for (const auto& [name, p] : kPercentiles) {
            dat += absl::StrCat("\"", c.protocol.empty() ? "" : c.protocol + " ",
                                Fmt(c.connections, 0), " conns ", name, "\"");
            for (const std::string& m : imodes) dat += " " + DatNum(Lat(RunOf(&c, m), p));
            dat += "\n";
          }
        }
        WEFT_RETURN_IF_ERROR(w.WriteFile("istio.dat", dat));
        std::vector<std::string> parts;
        for (size_t i = 0; i < imodes.size(); ++i)
          parts.push_back(absl::StrCat(
              i == 0 ? "'istio.dat' using 2:xtic(1)" : absl::StrCat("'' using ", i + 2),
              " linecolor ", i + 1, " title ", GpQuote(ModeTitle(results, imodes[i]))));
        absl::StrAppend(&gp, "\nset output 'istio-latency.png'\n",
                        absl::StrCat("set title 'istio: ", Fmt(istio.payload_bytes, 0),
                                     " B echo at ", Fmt(istio.rps, 0), " rps, latency per mode'\n"),
                        "set xlabel 'connections, percentile'\n", "set ylabel 'latency (ms)'\n",
                        "set yrange [0:*]\n", "set style data histogram\n",
                        "set style histogram clustered gap 1\n",
                        "set style fill solid 0.8 border -1\n", "set xtics rotate by -30\n",
                        "plot ", absl::StrJoin(parts, ", \\\n     "), "\n",
                        "unset output\nset xtics norotate\nset style data points\n");
        pngs.push_back("istio-latency.png");
      }
    }

    return absl::OkStatus();
  }

  // One scale plot: per mode a data file of `row(entry)` lines from the scale list `list`,
  // sorted by their x, plotted with `cols` (column, title suffix).
  template <typename Entry>
  using ScaleRow = std::function<std::optional<std::pair<double, std::string>>(const Entry&)>;
  template <typename Entry>
  absl::Status ScalePlot(const std::vector<Entry>& list, const char* png, const char* dat_prefix,
                         const char* header, const ScaleRow<Entry>& row, const std::string& setup,
                         const std::vector<std::pair<int, std::string>>& cols) {
    std::vector<std::pair<std::string, std::string>> files;
    std::vector<std::string> smodes;
    for (const Entry& e : list)
      if (std::find(smodes.begin(), smodes.end(), e.mode) == smodes.end()) smodes.push_back(e.mode);
    for (const std::string& mode : smodes) {
      std::vector<std::pair<double, std::string>> rows;
      for (const Entry& e : list) {
        if (e.mode != mode || !e.error.empty()) continue;
        auto r = row(e);
        if (r) rows.push_back(*r);
      }
      if (rows.empty()) continue;
      std::sort(rows.begin(), rows.end());
      std::string dat = header;
      for (const auto& [x, line] : rows) dat += line;
      const std::string file = absl::StrCat(dat_prefix, SafeName(mode), ".dat");
      WEFT_RETURN_IF_ERROR(w.WriteFile(file, dat));
      files.emplace_back(mode, file);
    }
    if (files.empty()) return absl::OkStatus();
    std::vector<std::string> parts;
    for (size_t i = 0; i < files.size(); ++i)
      for (size_t k = 0; k < cols.size(); ++k)
        parts.push_back(absl::StrCat(GpQuote(files[i].second), " using 1:", cols[k].first,
                                     " with linespoints linecolor ", i + 1, " dashtype ", k + 1,
                                     " pointtype ", 5 + 2 * k, " title ",
                                     GpQuote(ModeTitle(results, files[i].first) + cols[k].second)));
    absl::StrAppend(&gp, "\nset output '", png, "'\n", setup, "plot ",
                    absl::StrJoin(parts, ", \\\n     "), "\nunset output\n");
    pngs.push_back(png);
    return absl::OkStatus();
  }

  // Scale: per mode, ztunnel/agent RSS vs pods; ztunnel RSS vs idle connections.
  absl::Status Scale() {
    if (!results.scenarios.scale) return absl::OkStatus();
    const ScaleResult& scale = *results.scenarios.scale;
    WEFT_RETURN_IF_ERROR(ScalePlot<ScalePods>(
        scale.pods, "scale-pods.png", "scale-pods-", "# pods ztunnel_rss_mib agent_rss_mib\n",
        [](const ScalePods& e) -> std::optional<std::pair<double, std::string>> {
          const std::optional<double> n = e.pods;
          auto z = D(e.ztunnel_rss_bytes), a = D(e.agent_rss_bytes);
          return std::make_pair(
              *n, absl::StrCat(DatNum(n), " ", DatNum(z ? std::optional<double>(*z / kMiB) : z),
                               " ", DatNum(a ? std::optional<double>(*a / kMiB) : a), "\n"));
        },
        "set title 'scale: RSS vs pods (ztunnel solid, agent dashed)'\n"
        "set xlabel 'pods'\nset ylabel 'RSS (MiB)'\nset yrange [0:*]\n",
        {{2, " ztunnel"}, {3, " agent"}}));
    WEFT_RETURN_IF_ERROR(ScalePlot<ScaleIdle>(
        scale.idle_connections, "scale-idle-connections.png", "scale-idle-",
        "# connections ztunnel_rss_mib (both nodes)\n",
        [](const ScaleIdle& e) -> std::optional<std::pair<double, std::string>> {
          const std::optional<double> n = e.connections;
          auto z = D(e.ztunnel_rss_bytes);
          if (!z) return std::nullopt;
          return std::make_pair(*n, absl::StrCat(DatNum(n), " ", DatNum(*z / kMiB), "\n"));
        },
        "set title 'scale: ztunnel RSS vs open idle tunnelled connections (both nodes)'\n"
        "set xlabel 'idle connections'\nset ylabel 'ztunnel RSS (MiB)'\nset yrange [0:*]\n",
        {{2, ""}}));

    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::vector<std::string>> WritePlots(const SuiteResults& results,
                                                    const std::string& out_dir,
                                                    const std::string& gnuplot) {
  std::error_code ec;
  std::filesystem::create_directories(out_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", out_dir, ": ", ec.message()));
  const std::string dir = std::filesystem::absolute(out_dir).string();
  PlotWriter w(dir);
  Plots p{results,
          w,
          Modes(results),
          absl::StrCat("# Weft benchmark suite plots, written by weft-bench-suite. Re-plot with:\n"
                       "#   cd <this directory> && gnuplot plots.gp\n",
                       kTerminal),
          {}};
  WEFT_RETURN_IF_ERROR(p.Seed());
  WEFT_RETURN_IF_ERROR(p.Istio());
  WEFT_RETURN_IF_ERROR(p.Scale());
  if (p.pngs.empty())
    return absl::InvalidArgumentError(
        "nothing to plot: the results document has no seed, istio or scale data");
  WEFT_RETURN_IF_ERROR(w.WriteFile("plots.gp", p.gp));
  WEFT_RETURN_IF_ERROR(RunGnuplot(gnuplot, dir, "plots.gp"));
  for (const std::string& png : p.pngs) {
    const std::string path = dir + "/" + png;
    if (!std::filesystem::exists(path))
      return absl::InternalError(absl::StrCat("gnuplot ran but did not write ", path));
    w.files().push_back(path);
  }
  std::filesystem::remove(dir + "/gnuplot.log", ec);  // empty on success; errors were reported
  return w.files();
}

}  // namespace weft::bench::suite
