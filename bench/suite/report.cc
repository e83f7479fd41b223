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

// ---- Lenient access: the document may lack anything, or hold the wrong type. ----

const json* Child(const json* j, const std::string& key) {
  if (j == nullptr || !j->is_object()) return nullptr;
  auto it = j->find(key);
  return it == j->end() ? nullptr : &*it;
}

const json* Path(const json* j, std::initializer_list<const char*> keys) {
  for (const char* k : keys) j = Child(j, k);
  return j;
}

std::optional<double> Num(const json* j, const std::string& key) {
  const json* v = Child(j, key);
  if (v == nullptr || !v->is_number()) return std::nullopt;
  double d = v->get<double>();
  if (!std::isfinite(d)) return std::nullopt;
  return d;
}

std::optional<double> Num2(const json* j, const char* a, const char* b) {
  return Num(Child(j, a), b);
}

std::string Str(const json* j, const std::string& key, const std::string& fallback = "") {
  const json* v = Child(j, key);
  if (v == nullptr) return fallback;
  if (v->is_string()) return v->get<std::string>();
  if (v->is_null()) return fallback;
  return v->dump();
}

std::optional<std::string> RunError(const json* run) {
  const json* e = Child(run, "error");
  if (e == nullptr || e->is_null()) return std::nullopt;
  return e->is_string() ? e->get<std::string>() : e->dump();
}

std::vector<const json*> Array(const json* j, const char* key) {
  std::vector<const json*> out;
  const json* a = Child(j, key);
  if (a == nullptr || !a->is_array()) return out;
  for (const json& e : *a) out.push_back(&e);
  return out;
}

const json* Scenario(const json& r, const char* name) {
  return Path(&r, {"scenarios", name});
}

const json* SeedStep(const json& r, int users) {
  for (const json* s : Array(Scenario(r, "seed"), "steps"))
    if (Num(s, "users") == users) return s;
  return nullptr;
}

const json* IstioCase(const json& r, int conns) {
  for (const json* c : Array(Scenario(r, "istio"), "cases"))
    if (Num(c, "connections") == conns) return c;
  return nullptr;
}

const json* ThroughputCase(const json& r, const std::string& pair, int streams) {
  for (const json* c : Array(Scenario(r, "throughput"), "cases"))
    if (Str(c, "pair") == pair && Num(c, "streams") == streams) return c;
  return nullptr;
}

const json* RunOf(const json* step_or_case, const std::string& mode) {
  return Child(Child(step_or_case, "runs"), mode);
}

std::vector<std::string> Modes(const json& r) {
  std::vector<std::string> modes;
  if (const json* m = Child(&r, "modes"); m != nullptr && m->is_array())
    for (const json& e : *m)
      if (e.is_string()) modes.push_back(e.get<std::string>());
  if (modes.empty())
    modes = {std::string(kModeBare), std::string(kModeEbpf), std::string(kModeIptables),
             std::string(kModeSidecar)};
  return modes;
}

// The title the document recorded for the mode, else the suite's (results.h).
std::string ModeTitle(const json& r, const std::string& mode) {
  std::string t = Str(Path(&r, {"mode_titles"}), mode);
  return t.empty() ? suite::ModeTitle(mode) : t;
}

// ---- Formatting ----

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

Input Field(const json* run, const std::string& what_run, const std::string& key) {
  if (run == nullptr) return {std::nullopt, what_run + " missing"};
  if (auto e = RunError(run)) return {std::nullopt, absl::StrCat(what_run, " failed: ", *e)};
  std::optional<double> v = Num(run, key);
  if (!v) return {std::nullopt, absl::StrCat(key, " missing from ", what_run)};
  return {v, ""};
}

Input Field2(const json* run, const std::string& what_run, const char* a, const char* b) {
  if (run == nullptr) return {std::nullopt, what_run + " missing"};
  if (auto e = RunError(run)) return {std::nullopt, absl::StrCat(what_run, " failed: ", *e)};
  std::optional<double> v = Num2(run, a, b);
  if (!v) return {std::nullopt, absl::StrCat(a, ".", b, " missing from ", what_run)};
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

void SeedGoals(const json& r, std::vector<GoalRow>& out) {
  const json* seed = Scenario(r, "seed");
  const json* s20 = SeedStep(r, 20);
  const json* bare20 = RunOf(s20, std::string(kModeBare));
  struct RatioGoal {
    const char* key;
    const char* goal;
    double limit;
    int decimals;
    double scale;
    const char* unit;
  };
  const RatioGoal ratio_goals[] = {
      {"latency_ms.p75", "p75 latency at 20 users ≤ 1.10× bare", 1.10, 2, 1, " ms"},
      {"cpu_cores", "CPU (cores) at 20 users ≤ 1.25× bare", 1.25, 3, 1, " cores"},
      {"mem_bytes", "memory at 20 users ≤ 1.05× bare", 1.05, 1, kMiB, " MiB"},
  };
  for (const RatioGoal& rg : ratio_goals) {
    for (const std::string& mode : WeftModes()) {
      if (seed == nullptr) {
        out.push_back(NotMeasured("seed", rg.goal, mode, "scenario seed not run"));
        continue;
      }
      if (s20 == nullptr) {
        out.push_back(NotMeasured("seed", rg.goal, mode, "no 20-user step in scenario seed"));
        continue;
      }
      const json* run = RunOf(s20, mode);
      const std::string key = rg.key;
      Input b, m;
      if (key == "latency_ms.p75") {
        b = Field2(bare20, "the bare run at 20 users", "latency_ms", "p75");
        m = Field2(run, "the " + mode + " run at 20 users", "latency_ms", "p75");
      } else {
        b = Field(bare20, "the bare run at 20 users", key);
        m = Field(run, "the " + mode + " run at 20 users", key);
      }
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
  const json* s40 = SeedStep(r, 40);
  const json* bare40 = RunOf(s40, std::string(kModeBare));
  const double rate = Num(seed, "rate_per_user").value_or(5.0);
  for (const std::string& mode : WeftModes()) {
    if (seed == nullptr) {
      out.push_back(NotMeasured("seed", goal40, mode, "scenario seed not run"));
      continue;
    }
    if (s40 == nullptr) {
      out.push_back(NotMeasured("seed", goal40, mode, "no 40-user step in scenario seed"));
      continue;
    }
    const json* run = RunOf(s40, mode);
    const std::string what = "the " + mode + " run at 40 users";
    Input achieved = Field(run, what, "achieved_rps");
    Input errors = Field(run, what, "errors");
    Input asked = Field(run, what, "asked_rps");
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
    std::optional<double> bare_rps = RunError(bare40) ? std::nullopt : Num(bare40, "achieved_rps");
    if (bare_rps && *bare_rps > 0) {
      std::string b = absl::StrCat("bare ", Fmt(*bare_rps, 1), " rps, ",
                                   Thousands(Num(bare40, "errors").value_or(0)), " errors; ",
                                   Ratio(*achieved.v / *bare_rps), " bare");
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

std::vector<int> IstioConnections(const json& r) {
  std::vector<int> out;
  for (const json* c : Array(Scenario(r, "istio"), "cases"))
    if (auto n = Num(c, "connections")) out.push_back(static_cast<int>(*n));
  return out;
}

void IstioGoals(const json& r, std::vector<GoalRow>& out) {
  const json* istio = Scenario(r, "istio");
  std::vector<int> conns = IstioConnections(r);
  const char* kP99 = "added p99 over bare ≤ ½ the sidecar's added p99";
  const char* kCpu = "CPU per 1,000 rps over bare ≤ 0.06 vCPU";
  const char* kRss = "ztunnel RSS at 1,000 rps ≤ 12 MiB";
  if (istio == nullptr || conns.empty()) {
    const std::string why = istio == nullptr ? "scenario istio not run" : "no istio cases";
    for (const char* goal : {kP99, kCpu, kRss})
      for (const std::string& mode : WeftModes())
        out.push_back(NotMeasured("istio", goal, mode, why));
    return;
  }
  const double scenario_rps = Num(istio, "rps").value_or(1000);
  for (const char* goal : {kP99, kCpu, kRss}) {
    for (int n : conns) {
      const json* c = IstioCase(r, n);
      const std::string goal_text = absl::StrCat(goal, " (", n, " connections)");
      const std::string suffix = absl::StrCat(" run, ", n, " connections");
      const json* bare = RunOf(c, std::string(kModeBare));
      const json* side = RunOf(c, std::string(kModeSidecar));
      for (const std::string& mode : WeftModes()) {
        const json* run = RunOf(c, mode);
        GoalRow g;
        g.scenario = "istio";
        g.goal = goal_text;
        g.mode = mode;
        if (goal == kP99) {
          Input b = Field2(bare, "the bare" + suffix, "latency_ms", "p99");
          Input m = Field2(run, "the " + mode + suffix, "latency_ms", "p99");
          Input s = Field2(side, "the sidecar" + suffix, "latency_ms", "p99");
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
          Input b = Field(bare, "the bare" + suffix, "cpu_cores");
          Input m = Field(run, "the " + mode + suffix, "cpu_cores");
          Input bs = Field(bare, "the bare" + suffix, "host_softirq_cores");
          Input ms = Field(run, "the " + mode + suffix, "host_softirq_cores");
          if (std::string why = Missing({&b, &m, &bs, &ms}); !why.empty()) {
            out.push_back(NotMeasured("istio", goal_text, mode, why));
            continue;
          }
          double rps = Num(run, "achieved_rps").value_or(Num(run, "asked_rps").value_or(0));
          if (rps <= 0) rps = scenario_rps;
          const double per_k = ((*m.v - *b.v) + (*ms.v - *bs.v)) * 1000.0 / rps;
          std::string inputs = absl::StrCat("apps + mesh processes ", Fmt(*m.v, 3), " vs bare ",
                                            Fmt(*b.v, 3), " cores, softirq ", Fmt(*ms.v, 3), " vs ",
                                            Fmt(*bs.v, 3), " cores, at ", Fmt(rps, 0), " rps");
          if (auto mesh = Num(run, "mesh_cpu_cores"))
            inputs += absl::StrCat("; mesh processes alone ", Fmt(*mesh * 1000.0 / rps, 3),
                                   " vCPU per 1,000 rps");
          auto hm = Num(run, "host_cpu_cores"), hb = Num(bare, "host_cpu_cores");
          if (hm && hb)
            inputs += absl::StrCat("; whole host ", Fmt((*hm - *hb) * 1000.0 / rps, 3),
                                   " vCPU per 1,000 rps over bare (includes unrelated work)");
          Judge(g, per_k, 0.06, true, absl::StrCat(Fmt(per_k, 3), " vCPU"), "≤ 0.060 vCPU", inputs);
        } else {
          Input m = Field(run, "the " + mode + suffix, "ztunnel_peak_rss_bytes");
          if (!m.v) {
            out.push_back(NotMeasured("istio", goal_text, mode, m.why));
            continue;
          }
          std::string inputs = "largest ztunnel's peak RSS";
          auto pss = Num(run, "ztunnel_peak_pss_bytes");
          auto anon = Num(run, "ztunnel_peak_anon_bytes");
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

void ThroughputGoals(const json& r, std::vector<GoalRow>& out) {
  const json* tp = Scenario(r, "throughput");
  struct Want {
    std::string pair;
    int streams;
    double limit;
  };
  std::vector<Want> wants = {{"cross-node", 1, 0.5}};
  std::set<int> same_streams;
  for (const json* c : Array(tp, "cases"))
    if (Str(c, "pair") == "same-node")
      if (auto s = Num(c, "streams")) same_streams.insert(static_cast<int>(*s));
  if (same_streams.empty()) same_streams = {1, 8};
  for (int s : same_streams) wants.push_back({"same-node", s, 0.8});
  for (const Want& w : wants) {
    const std::string goal =
        absl::StrCat(w.pair, ", ", w.streams, w.streams == 1 ? " stream" : " streams", " ≥ ",
                     Fmt(w.limit * 100, 0), "% of bare");
    const json* c = ThroughputCase(r, w.pair, w.streams);
    for (const std::string& mode : WeftModes()) {
      if (tp == nullptr) {
        out.push_back(NotMeasured("throughput", goal, mode, "scenario throughput not run"));
        continue;
      }
      if (c == nullptr) {
        out.push_back(NotMeasured("throughput", goal, mode, "case not run"));
        continue;
      }
      Input b = Field(RunOf(c, std::string(kModeBare)), "the bare run", "gbps");
      Input m = Field(RunOf(c, mode), "the " + mode + " run", "gbps");
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
const json* LargestIdle(const json& r, const std::string& mode) {
  const json* best = nullptr;
  double best_n = -1;
  for (const json* e : Array(Scenario(r, "scale"), "idle_connections")) {
    if (Str(e, "mode") != mode) continue;
    double n = Num(e, "connections").value_or(-1);
    if (n > best_n) {
      best = e;
      best_n = n;
    }
  }
  return best;
}

std::optional<double> BytesPerConnection(const json* e) {
  if (auto b = Num(e, "bytes_per_connection")) return b;
  auto rss = Num(e, "ztunnel_rss_bytes"), base = Num(e, "baseline_ztunnel_rss_bytes"),
       n = Num(e, "connections");
  if (rss && base && n && *n > 0) return (*rss - *base) / *n;
  return std::nullopt;
}

void ScaleGoals(const json& r, std::vector<GoalRow>& out) {
  const char* goal = "ztunnel memory per idle tunnelled connection ≤ 4 KiB";
  const json* scale = Scenario(r, "scale");
  for (const std::string& mode : WeftModes()) {
    if (scale == nullptr) {
      out.push_back(NotMeasured("scale", goal, mode, "scenario scale not run"));
      continue;
    }
    const json* e = LargestIdle(r, mode);
    if (e == nullptr) {
      out.push_back(NotMeasured("scale", goal, mode, "no idle-connection measurement"));
      continue;
    }
    if (auto err = RunError(e)) {
      out.push_back(NotMeasured("scale", goal, mode, "idle-connection run failed: " + *err));
      continue;
    }
    std::optional<double> bpc = BytesPerConnection(e);
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
    const double per_zt = Num(e, "bytes_per_connection_per_ztunnel").value_or(*bpc / 2);
    Judge(g, per_zt, 4096, true, absl::StrCat(Thousands(per_zt), " B"), "≤ 4,096 B",
          absl::StrCat("at ", Thousands(Num(e, "connections").value_or(0)),
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

std::string RunFailedCell(const json* run) {
  if (run == nullptr) return "not run";
  if (RunError(run)) return "**failed** (see Errors)";
  return "";
}

// "1.05×" of mode over bare, or "–".
std::string RatioCell(const std::optional<double>& v, const std::optional<double>& bare) {
  auto r = Div(v, bare);
  return r ? Ratio(*r) : "–";
}

std::optional<double> Lat(const json* run, const char* p) {
  if (RunError(run)) return std::nullopt;
  return Num2(run, "latency_ms", p);
}
std::optional<double> RunNum(const json* run, const char* key) {
  if (RunError(run)) return std::nullopt;
  return Num(run, key);
}

// CPU cores a mode adds over bare: its processes (apps + mesh, system time included) and the
// kernel's softirq time, both minus bare's.
std::optional<double> AddedCpu(const json* run, const json* bare) {
  auto m = RunNum(run, "cpu_cores"), b = RunNum(bare, "cpu_cores");
  auto ms = RunNum(run, "host_softirq_cores"), bs = RunNum(bare, "host_softirq_cores");
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

void RenderHeader(const json& r, Md& md) {
  md.Line("# Weft benchmark suite");
  md.Line();
  md.Line(
      absl::StrCat("- Run: ", Str(&r, "started", "?"), " to ", Str(&r, "finished", "?"), " (UTC)"));
  md.Line(absl::StrCat("- Invocation: `", Str(&r, "invocation", "?"), "`"));
  md.Line(absl::StrCat("- Revision: ", Str(&r, "revision", "unknown")));
  const json* quick = Child(&r, "quick");
  const bool is_quick = quick != nullptr && quick->is_boolean() && quick->get<bool>();
  md.Line(absl::StrCat("- Quick run: ",
                       is_quick ? "yes (shorter runs, fewer steps: indicative only)" : "no"));
  const json* m = Child(&r, "machine");
  std::string machine;
  if (auto n = Num(m, "nproc")) machine += absl::StrCat(Fmt(*n, 0), " CPUs");
  if (auto mem = Num(m, "mem_total_bytes"))
    machine += absl::StrCat(machine.empty() ? "" : ", ", Fmt(*mem / (kMiB * 1024), 1), " GiB RAM");
  const std::string kernel = Str(m, "kernel");
  if (!kernel.empty()) machine += absl::StrCat(machine.empty() ? "" : ", ", "kernel ", kernel);
  md.Line(absl::StrCat("- Machine: ", machine.empty() ? "unknown" : machine));
  auto load = [&](const char* key) {
    const json* l = Child(m, key);
    if (l == nullptr) return std::string("?");
    if (l->is_array()) {
      std::vector<std::string> parts;
      for (const json& e : *l) parts.push_back(e.is_number() ? Fmt(e.get<double>(), 2) : e.dump());
      return absl::StrJoin(parts, " / ");
    }
    return l->is_string() ? l->get<std::string>() : l->dump();
  };
  md.Line(absl::StrCat("- Load average (1/5/15 min) before: ", load("load_before"), ", after: ",
                       load("load_after"), " (other work on the machine skews the figures)"));
  std::vector<std::string> titles;
  for (const std::string& mode : Modes(r))
    titles.push_back(absl::StrCat("`", mode, "` = ", ModeTitle(r, mode)));
  md.Line(absl::StrCat("- Modes (run order within each step): ", absl::StrJoin(titles, "; ")));
  md.Line();
}

void RenderGoals(const std::vector<GoalRow>& goals, Md& md) {
  int pass = 0, miss = 0, unmeasured = 0;
  for (const GoalRow& g : goals) (g.measured ? (g.pass ? pass : miss) : unmeasured)++;
  md.Line("## Goals");
  md.Line();
  md.Line(absl::StrCat(
      "Goals, not assertions (issue 6): ", pass, " met, ", miss, " missed, ", unmeasured,
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

void RenderAnchors(const json& r, Md& md) {
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

  const json* s20 = SeedStep(r, 20);
  const json* bare20 = RunOf(s20, std::string(kModeBare));
  auto seed_row = [&](const std::string& figure, const std::string& published,
                      std::function<std::optional<double>(const json*)> get, double scale,
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
      [](const json* run) { return Lat(run, "p75"); }, 1, 2, " ms");
  seed_row(
      "seed CPU, 20 users", "bare 2,226 m; Istio 5,132 m (+131%); Linkerd 4,386 m (+97%)",
      [](const json* run) { return RunNum(run, "cpu_cores"); }, 0.001, 0, " m");
  seed_row(
      "seed memory, 20 users", "bare 9,749 MB; Istio 14,152 MB (+45%); Linkerd 10,947 MB (+11%)",
      [](const json* run) { return RunNum(run, "mem_bytes"); }, kMiB, 0, " MiB");

  std::vector<int> conns = IstioConnections(r);
  auto istio_row = [&](const std::string& figure, const std::string& published,
                       std::function<std::string(const json* c, const std::string& mode)> cell) {
    std::vector<std::string> row = {figure, published};
    for (const std::string& m :
         std::vector<std::string>{std::string(kModeBare), cols[0], cols[1], cols[2]}) {
      std::vector<std::string> parts;
      for (int n : conns) {
        std::string c = cell(IstioCase(r, n), m);
        if (!c.empty()) parts.push_back(absl::StrCat(c, " (", n, " conns)"));
      }
      row.push_back(parts.empty() ? "–" : absl::StrJoin(parts, "; "));
    }
    md.Row(row);
  };
  istio_row("istio added p90 / p99 over bare, 1,000 rps",
            "Istio ambient, two ztunnel hops: +0.17 ms p90 / +0.20 ms p99",
            [](const json* c, const std::string& m) -> std::string {
              const json* b = RunOf(c, std::string(kModeBare));
              const json* run = RunOf(c, m);
              auto b90 = Lat(b, "p90"), b99 = Lat(b, "p99"), v90 = Lat(run, "p90"),
                   v99 = Lat(run, "p99");
              if (!b90 || !b99 || !v90 || !v99) return "";
              if (m == kModeBare) return absl::StrCat(Fmt(*b90, 2), " / ", Fmt(*b99, 2), " ms");
              return absl::StrCat(Signed(*v90 - *b90, 2), " / ", Signed(*v99 - *b99, 2), " ms");
            });
  istio_row("CPU per 1,000 rps over bare (processes + softirq)",
            "ambient ~0.06 vCPU; a sidecar ~0.20 vCPU",
            [&](const json* c, const std::string& m) -> std::string {
              if (m == kModeBare) return "";
              const json* run = RunOf(c, m);
              auto added = AddedCpu(run, RunOf(c, std::string(kModeBare)));
              if (!added) return "";
              double rps = RunNum(run, "achieved_rps").value_or(0);
              if (rps <= 0) rps = Num(Scenario(r, "istio"), "rps").value_or(1000);
              return absl::StrCat(Fmt(*added * 1000 / rps, 3), " vCPU");
            });
  istio_row("mesh memory at 1,000 rps", "ambient ztunnel ~12 MB; a sidecar ~60 MB",
            [](const json* c, const std::string& m) -> std::string {
              const json* run = RunOf(c, m);
              if (m == kModeBare) return "";
              if (m == kModeSidecar) {
                auto v = RunNum(run, "mesh_peak_rss_bytes");
                return v ? absl::StrCat(Fmt(*v / kMiB, 1), " MiB all proxies") : "";
              }
              auto v = RunNum(run, "ztunnel_peak_rss_bytes");
              return v ? absl::StrCat(Fmt(*v / kMiB, 1), " MiB ztunnel") : "";
            });
  md.Line();
}

void RenderSeed(const json& r, const std::vector<std::string>& modes,
                const std::vector<std::string>& plots, Md& md) {
  const json* seed = Scenario(r, "seed");
  if (seed == nullptr) return;
  md.Line("## Seed (TeaStore-like shop)");
  md.Line();
  md.Line(absl::StrCat("Users × ", Opt(Num(seed, "rate_per_user"), 0), " rps each, warm-up ",
                       Opt(Num(seed, "warmup_seconds"), 0), " s, measured ",
                       Opt(Num(seed, "duration_seconds"), 0),
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
  for (const json* step : Array(seed, "steps")) {
    const std::string users = Opt(Num(step, "users"), 0);
    const json* bare = RunOf(step, std::string(kModeBare));
    for (const std::string& mode : modes) {
      const json* run = RunOf(step, mode);
      if (run == nullptr) continue;
      if (RunError(run)) {
        md.Row({users, ModeTitle(r, mode), RunFailedCell(run), "", "", "", "", "", "", "", "", "",
                "", ""});
        continue;
      }
      const bool is_bare = mode == kModeBare;
      auto ratio = [&](std::optional<double> v, std::optional<double> b) {
        return is_bare ? std::string("1.00×") : RatioCell(v, b);
      };
      md.Row({users, ModeTitle(r, mode), Opt(Lat(run, "p50"), 2), Opt(Lat(run, "p75"), 2),
              Opt(Lat(run, "p90"), 2), Opt(Lat(run, "p99"), 2),
              absl::StrCat(Opt(RunNum(run, "achieved_rps"), 1), " / ",
                           Opt(RunNum(run, "asked_rps"), 0)),
              Opt(RunNum(run, "errors"), 0), Opt(RunNum(run, "cpu_cores"), 3),
              Opt(RunNum(run, "mem_bytes"), 1, kMiB), ratio(Lat(run, "p75"), Lat(bare, "p75")),
              ratio(Lat(run, "p99"), Lat(bare, "p99")),
              ratio(RunNum(run, "cpu_cores"), RunNum(bare, "cpu_cores")),
              ratio(RunNum(run, "mem_bytes"), RunNum(bare, "mem_bytes"))});
    }
  }
  md.Line();
}

void RenderIstio(const json& r, const std::vector<std::string>& modes,
                 const std::vector<std::string>& plots, Md& md) {
  const json* istio = Scenario(r, "istio");
  if (istio == nullptr) return;
  md.Line("## Istio-style echo (fortio-like)");
  md.Line();
  md.Line(
      absl::StrCat(Opt(Num(istio, "payload_bytes"), 0), " B echo at ", Opt(Num(istio, "rps"), 0),
                   " rps for ", Opt(Num(istio, "duration_seconds"), 0),
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
  for (const json* c : Array(istio, "cases")) {
    const std::string n = Opt(Num(c, "connections"), 0);
    const json* bare = RunOf(c, std::string(kModeBare));
    for (const std::string& mode : modes) {
      const json* run = RunOf(c, mode);
      if (run == nullptr) continue;
      if (RunError(run)) {
        md.Row({n, ModeTitle(r, mode), RunFailedCell(run), "", "", "", "", "", "", "", ""});
        continue;
      }
      std::string added = "–";
      if (mode != kModeBare) {
        std::vector<std::string> parts;
        for (const char* p : {"p50", "p90", "p99"}) {
          auto v = Lat(run, p), b = Lat(bare, p);
          parts.push_back(v && b ? Signed(*v - *b, 2) : "–");
        }
        added = absl::StrJoin(parts, " / ");
      }
      double rps = RunNum(run, "achieved_rps").value_or(0);
      if (rps <= 0) rps = Num(istio, "rps").value_or(1000);
      std::string host = "–";
      if (auto added = AddedCpu(run, bare); mode != kModeBare && added)
        host = Fmt(*added * 1000 / rps, 3);
      auto mesh = RunNum(run, "mesh_cpu_cores");
      md.Row({n, ModeTitle(r, mode),
              absl::StrCat(Opt(RunNum(run, "achieved_rps"), 1), " / ",
                           Opt(RunNum(run, "asked_rps"), 0)),
              Opt(RunNum(run, "errors"), 0), Opt(Lat(run, "p50"), 2), Opt(Lat(run, "p90"), 2),
              Opt(Lat(run, "p99"), 2), added, host, mesh ? Fmt(*mesh * 1000 / rps, 3) : "–",
              Opt(RunNum(run, "ztunnel_peak_rss_bytes"), 1, kMiB)});
    }
  }
  md.Line();
}

void RenderThroughput(const json& r, const std::vector<std::string>& modes, Md& md) {
  const json* tp = Scenario(r, "throughput");
  if (tp == nullptr) return;
  md.Line("## Throughput (iperf3)");
  md.Line();
  md.Line(absl::StrCat(Opt(Num(tp, "seconds"), 0), " s per run; % of bare in the same case."));
  md.Line();
  md.Head({"pair", "streams", "mode", "Gbit/s", "% of bare"}, 3);
  for (const json* c : Array(tp, "cases")) {
    const json* bare = RunOf(c, std::string(kModeBare));
    for (const std::string& mode : modes) {
      const json* run = RunOf(c, mode);
      if (run == nullptr) continue;
      if (RunError(run)) {
        md.Row({Str(c, "pair"), Opt(Num(c, "streams"), 0), ModeTitle(r, mode), RunFailedCell(run),
                ""});
        continue;
      }
      auto frac = Div(RunNum(run, "gbps"), RunNum(bare, "gbps"));
      md.Row({Str(c, "pair"), Opt(Num(c, "streams"), 0), ModeTitle(r, mode),
              Opt(RunNum(run, "gbps"), 2), frac ? Pct(*frac) : "–"});
    }
  }
  md.Line();
}

void RenderChurn(const json& r, const std::vector<std::string>& modes, Md& md) {
  const json* churn = Scenario(r, "churn");
  if (churn == nullptr) return;
  md.Line("## Connection churn");
  md.Line();
  md.Line(
      "New connections per second, raised step by step until saturation; max sustained = the "
      "highest asked rate the mode kept up with.");
  md.Line();
  const json* runs = Child(churn, "runs");
  const json* bare = Child(runs, std::string(kModeBare));
  md.Row({"mode", "max sustained conn/s", "% of bare", "steps (asked → achieved conn/s, p99 ms)"});
  md.Line("|---|---:|---:|---|");
  for (const std::string& mode : modes) {
    const json* run = Child(runs, mode);
    if (run == nullptr) continue;
    if (RunError(run)) {
      md.Row({ModeTitle(r, mode), RunFailedCell(run), "", ""});
      continue;
    }
    auto frac = Div(RunNum(run, "max_sustained_cps"), RunNum(bare, "max_sustained_cps"));
    std::vector<std::string> steps;
    for (const json* s : Array(run, "steps")) {
      const json* sat = Child(s, "saturated");
      const bool saturated = sat != nullptr && sat->is_boolean() && sat->get<bool>();
      std::string e;
      if (auto errs = Num(s, "errors"); errs && *errs > 0)
        e = absl::StrCat(", ", Thousands(*errs), " errors");
      steps.push_back(absl::StrCat(Opt(Num(s, "asked_cps"), 0), " → ",
                                   Opt(Num(s, "achieved_cps"), 0), " (", Opt(Num(s, "p99_ms"), 1),
                                   e, saturated ? ", saturated" : "", ")"));
    }
    md.Row({ModeTitle(r, mode),
            RunNum(run, "max_sustained_cps") ? Thousands(*RunNum(run, "max_sustained_cps")) : "–",
            frac ? Pct(*frac) : "–", steps.empty() ? "–" : absl::StrJoin(steps, "; ")});
  }
  md.Line();
}

void RenderDataplane(const json& r, const std::vector<std::string>& modes, Md& md) {
  const json* dpj = Scenario(r, "dataplane");
  if (dpj == nullptr) return;
  const DataplaneResult dp = DataplaneResult::FromJson(*dpj);
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

void RenderScale(const json& r, const std::vector<std::string>& plots, Md& md) {
  const json* scale = Scenario(r, "scale");
  if (scale == nullptr) return;
  md.Line("## Scale");
  md.Line();
  PlotLinks(md, plots,
            {{"scale-pods.png", "scale: RSS vs pods"},
             {"scale-idle-connections.png", "scale: ztunnel RSS vs idle connections"}});
  std::vector<const json*> pods = Array(scale, "pods");
  if (!pods.empty()) {
    md.Line("ztunnel and agent RSS vs pods:");
    md.Line();
    md.Head({"mode", "pods", "ztunnel RSS MiB", "agent RSS MiB"}, 1);
    for (const json* p : pods) {
      if (auto e = RunError(p)) {
        md.Row(
            {ModeTitle(r, Str(p, "mode")), Opt(Num(p, "pods"), 0), "**failed** (see Errors)", ""});
        continue;
      }
      md.Row({ModeTitle(r, Str(p, "mode")), Opt(Num(p, "pods"), 0),
              Opt(Num(p, "ztunnel_rss_bytes"), 1, kMiB), Opt(Num(p, "agent_rss_bytes"), 1, kMiB)});
    }
    md.Line();
  }
  std::vector<const json*> idle = Array(scale, "idle_connections");
  if (!idle.empty()) {
    md.Line("ztunnel RSS (both nodes' ztunnels summed) vs open idle tunnelled connections:");
    md.Line();
    md.Head({"mode", "connections", "ztunnel RSS MiB", "with 0 connections MiB",
             "bytes per connection (both ztunnels)", "per ztunnel"},
            1);
    for (const json* e : idle) {
      if (RunError(e)) {
        md.Row({ModeTitle(r, Str(e, "mode")), Opt(Num(e, "connections"), 0),
                "**failed** (see Errors)", "", "", ""});
        continue;
      }
      auto bpc = BytesPerConnection(e);
      md.Row({ModeTitle(r, Str(e, "mode")),
              Num(e, "connections") ? Thousands(*Num(e, "connections")) : "–",
              Opt(Num(e, "ztunnel_rss_bytes"), 1, kMiB),
              Opt(Num(e, "baseline_ztunnel_rss_bytes"), 1, kMiB), bpc ? Thousands(*bpc) : "–",
              Num(e, "bytes_per_connection_per_ztunnel")
                  ? Thousands(*Num(e, "bytes_per_connection_per_ztunnel"))
                  : (bpc ? Thousands(*bpc / 2) : "–")});
    }
    md.Line();
  }
}

// Run-level errors that the document's "errors" list does not already carry.
std::vector<std::string> RunErrors(const json& r) {
  std::vector<std::string> out;
  auto add = [&](const std::string& where, const json* run) {
    if (auto e = RunError(run)) out.push_back(absl::StrCat(where, ": ", *e));
  };
  for (const json* s : Array(Scenario(r, "seed"), "steps"))
    if (const json* runs = Child(s, "runs"); runs && runs->is_object())
      for (const auto& [mode, run] : runs->items())
        add(absl::StrCat("scenario seed, users ", Opt(Num(s, "users"), 0), ", mode ", mode), &run);
  for (const json* c : Array(Scenario(r, "istio"), "cases"))
    if (const json* runs = Child(c, "runs"); runs && runs->is_object())
      for (const auto& [mode, run] : runs->items())
        add(absl::StrCat("scenario istio, ", Opt(Num(c, "connections"), 0), " connections, mode ",
                         mode),
            &run);
  for (const json* c : Array(Scenario(r, "throughput"), "cases"))
    if (const json* runs = Child(c, "runs"); runs && runs->is_object())
      for (const auto& [mode, run] : runs->items())
        add(absl::StrCat("scenario throughput, ", Str(c, "pair"), ", ", Opt(Num(c, "streams"), 0),
                         " streams, mode ", mode),
            &run);
  if (const json* runs = Path(&r, {"scenarios", "churn", "runs"}); runs && runs->is_object())
    for (const auto& [mode, run] : runs->items()) add("scenario churn, mode " + mode, &run);
  for (const char* list : {"pods", "idle_connections"})
    for (const json* e : Array(Scenario(r, "scale"), list))
      add(absl::StrCat("scenario scale (", list, "), mode ", Str(e, "mode")), e);
  return out;
}

void RenderErrors(const json& r, Md& md) {
  std::vector<std::string> listed;
  for (const json* e : Array(&r, "errors"))
    listed.push_back(e->is_string() ? e->get<std::string>() : e->dump());
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

}  // namespace

std::vector<GoalRow> EvaluateGoals(const json& results) {
  std::vector<GoalRow> out;
  SeedGoals(results, out);
  IstioGoals(results, out);
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

std::string RenderSuiteMarkdown(const json& results, const std::vector<std::string>& plot_files) {
  Md md;
  if (!results.is_object()) {
    md.Line("# Weft benchmark suite");
    md.Line();
    md.Line("The results document is not a JSON object: nothing to report.");
    return md.s;
  }
  const std::vector<std::string> modes = Modes(results);
  RenderHeader(results, md);
  RenderGoals(EvaluateGoals(results), md);
  RenderAnchors(results, md);
  RenderSeed(results, modes, plot_files, md);
  RenderIstio(results, modes, plot_files, md);
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
  const json& results;
  PlotWriter& w;
  std::vector<std::string> modes;
  std::string gp;
  std::vector<std::string> pngs;

  // Seed: one data file per mode, rows per users step.
  absl::Status Seed() {
    std::vector<std::pair<std::string, std::string>> seed_files;  // (mode, file)
    for (const std::string& mode : modes) {
      std::string dat = "# users p50_ms p75_ms p90_ms p99_ms cpu_cores mem_mib\n";
      int rows = 0;
      for (const json* step : Array(Scenario(results, "seed"), "steps")) {
        auto users = Num(step, "users");
        const json* run = RunOf(step, mode);
        if (!users || run == nullptr || RunError(run)) continue;
        auto mem = RunNum(run, "mem_bytes");
        dat += absl::StrCat(DatNum(users), " ", DatNum(Lat(run, "p50")), " ",
                            DatNum(Lat(run, "p75")), " ", DatNum(Lat(run, "p90")), " ",
                            DatNum(Lat(run, "p99")), " ", DatNum(RunNum(run, "cpu_cores")), " ",
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
          &gp, "\nset xlabel 'users (", Opt(Num(Scenario(results, "seed"), "rate_per_user"), 0),
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
    {
      std::vector<std::string> imodes;
      for (const std::string& mode : modes)
        for (const json* c : Array(Scenario(results, "istio"), "cases"))
          if (const json* run = RunOf(c, mode); run && !RunError(run) && Lat(run, "p50")) {
            imodes.push_back(mode);
            break;
          }
      if (!imodes.empty()) {
        std::string dat = "# label";
        for (const std::string& m : imodes) dat += " " + SafeName(m) + "_ms";
        dat += "\n";
        for (const json* c : Array(Scenario(results, "istio"), "cases")) {
          for (const char* p : {"p50", "p90", "p99"}) {
            dat += absl::StrCat("\"", Opt(Num(c, "connections"), 0), " conns ", p, "\"");
            for (const std::string& m : imodes) dat += " " + DatNum(Lat(RunOf(c, m), p));
            dat += "\n";
          }
        }
        WEFT_RETURN_IF_ERROR(w.WriteFile("istio.dat", dat));
        std::vector<std::string> parts;
        for (size_t i = 0; i < imodes.size(); ++i)
          parts.push_back(absl::StrCat(
              i == 0 ? "'istio.dat' using 2:xtic(1)" : absl::StrCat("'' using ", i + 2),
              " linecolor ", i + 1, " title ", GpQuote(ModeTitle(results, imodes[i]))));
        absl::StrAppend(
            &gp, "\nset output 'istio-latency.png'\n",
            absl::StrCat(
                "set title 'istio: ", Opt(Num(Scenario(results, "istio"), "payload_bytes"), 0),
                " B echo at ", Opt(Num(Scenario(results, "istio"), "rps"), 0),
                " rps, latency per mode'\n"),
            "set xlabel 'connections, percentile'\n", "set ylabel 'latency (ms)'\n",
            "set yrange [0:*]\n", "set style data histogram\n",
            "set style histogram clustered gap 1\n", "set style fill solid 0.8 border -1\n",
            "set xtics rotate by -30\n", "plot ", absl::StrJoin(parts, ", \\\n     "), "\n",
            "unset output\nset xtics norotate\nset style data points\n");
        pngs.push_back("istio-latency.png");
      }
    }

    return absl::OkStatus();
  }

  // One scale plot: per mode a data file of `row(entry)` lines from the scale list `list`,
  // sorted by their x, plotted with `cols` (column, title suffix).
  using ScaleRow = std::function<std::optional<std::pair<double, std::string>>(const json*)>;
  absl::Status ScalePlot(const char* list, const char* png, const char* dat_prefix,
                         const char* header, const ScaleRow& row, const std::string& setup,
                         const std::vector<std::pair<int, std::string>>& cols) {
    const json* scale = Scenario(results, "scale");

    std::vector<std::pair<std::string, std::string>> files;
    std::vector<std::string> smodes;
    for (const json* e : Array(scale, list))
      if (std::find(smodes.begin(), smodes.end(), Str(e, "mode")) == smodes.end())
        smodes.push_back(Str(e, "mode"));
    for (const std::string& mode : smodes) {
      std::vector<std::pair<double, std::string>> rows;
      for (const json* e : Array(scale, list)) {
        if (Str(e, "mode") != mode || RunError(e)) continue;
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
    WEFT_RETURN_IF_ERROR(ScalePlot(
        "pods", "scale-pods.png", "scale-pods-", "# pods ztunnel_rss_mib agent_rss_mib\n",
        [](const json* e) -> std::optional<std::pair<double, std::string>> {
          auto n = Num(e, "pods");
          if (!n) return std::nullopt;
          auto z = Num(e, "ztunnel_rss_bytes"), a = Num(e, "agent_rss_bytes");
          return std::make_pair(
              *n, absl::StrCat(DatNum(n), " ", DatNum(z ? std::optional<double>(*z / kMiB) : z),
                               " ", DatNum(a ? std::optional<double>(*a / kMiB) : a), "\n"));
        },
        "set title 'scale: RSS vs pods (ztunnel solid, agent dashed)'\n"
        "set xlabel 'pods'\nset ylabel 'RSS (MiB)'\nset yrange [0:*]\n",
        {{2, " ztunnel"}, {3, " agent"}}));
    WEFT_RETURN_IF_ERROR(ScalePlot(
        "idle_connections", "scale-idle-connections.png", "scale-idle-",
        "# connections ztunnel_rss_mib (both nodes)\n",
        [](const json* e) -> std::optional<std::pair<double, std::string>> {
          auto n = Num(e, "connections"), z = Num(e, "ztunnel_rss_bytes");
          if (!n || !z) return std::nullopt;
          return std::make_pair(*n, absl::StrCat(DatNum(n), " ", DatNum(*z / kMiB), "\n"));
        },
        "set title 'scale: ztunnel RSS vs open idle tunnelled connections (both nodes)'\n"
        "set xlabel 'idle connections'\nset ylabel 'ztunnel RSS (MiB)'\nset yrange [0:*]\n",
        {{2, ""}}));

    return absl::OkStatus();
  }
};

}  // namespace

absl::StatusOr<std::vector<std::string>> WritePlots(const json& results, const std::string& out_dir,
                                                    const std::string& gnuplot) {
  if (!results.is_object())
    return absl::InvalidArgumentError("results document is not a JSON object: nothing to plot");
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
