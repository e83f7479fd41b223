#include "tests/soak/analysis.h"

#include <algorithm>
#include <cmath>
#include <set>

#include "absl/strings/match.h"

namespace weft::soak {

std::optional<Fit> LeastSquares(const std::vector<Point>& points) {
  if (points.size() < 3) return std::nullopt;
  double mt = 0, mv = 0;
  for (const Point& p : points) {
    mt += p.t;
    mv += p.v;
  }
  mt /= points.size();
  mv /= points.size();
  double stt = 0, stv = 0;
  for (const Point& p : points) {
    stt += (p.t - mt) * (p.t - mt);
    stv += (p.t - mt) * (p.v - mv);
  }
  if (stt <= 0) return std::nullopt;
  Fit f;
  f.slope = stv / stt;
  f.intercept = mv - f.slope * mt;
  f.n = static_cast<int>(points.size());
  return f;
}

Trend TrendOf(const std::string& process, const std::vector<ProcSample>& samples, double from,
              double to) {
  Trend tr;
  tr.process = process;
  std::vector<const ProcSample*> window;
  std::set<pid_t> pids;
  for (const ProcSample& s : samples) {
    if (s.t < from || s.t > to || s.pid <= 0) continue;
    window.push_back(&s);
    pids.insert(s.pid);
  }
  tr.pids_after_warmup = static_cast<int>(pids.size());
  if (window.empty()) return tr;
  const pid_t last = window.back()->pid;
  std::vector<Point> rss, fds;
  for (const ProcSample* s : window) {
    if (s->pid != last) continue;
    rss.push_back({s->t, s->rss_kib});
    fds.push_back({s->t, s->fds});
  }
  tr.samples = static_cast<int>(rss.size());
  if (rss.empty()) return tr;
  tr.rss_kib_first = rss.front().v;
  tr.rss_kib_last = rss.back().v;
  tr.fds_first = fds.front().v;
  tr.fds_last = fds.back().v;
  auto r = LeastSquares(rss);
  auto f = LeastSquares(fds);
  if (r && f) {
    tr.fitted = true;
    tr.rss_kib_per_min = r->slope * 60;
    tr.fds_per_min = f->slope * 60;
  }
  return tr;
}

namespace {

bool Affects(const Window& w, const Segment& s) {
  if (!(s.t0 < w.t1 && s.t1 > w.t0)) return false;
  return w.streams.empty() ||
         std::find(w.streams.begin(), w.streams.end(), s.stream) != w.streams.end();
}

}  // namespace

ErrorTally TallyErrors(const std::vector<Segment>& segments, const std::vector<Window>& windows) {
  ErrorTally t;
  for (const Segment& s : segments) {
    t.requests += s.requests;
    t.ok += s.ok;
    t.errors += s.errors;
    t.errors_by_stream[s.stream] += s.errors;
    if (s.errors == 0) continue;
    bool explained = false;
    for (const Window& w : windows) {
      if (!Affects(w, s)) continue;
      t.errors_by_window[w.what] += s.errors;
      explained = explained || w.explains;
    }
    if (explained) {
      t.explained += s.errors;
    } else {
      t.unexplained += s.errors;
      t.unexplained_segments.push_back(s);
    }
  }
  return t;
}

std::optional<Segment> ParseSegmentLine(const std::string& line, const std::string& stream,
                                        double origin_ms) {
  if (!absl::StartsWith(line, "SEGMENT ")) return std::nullopt;
  auto j = nlohmann::json::parse(line.substr(8), nullptr, false);
  if (!j.is_object()) return std::nullopt;
  Segment s;
  s.stream = stream;
  s.t0 = (j.value("t0_ms", 0.0) - origin_ms) / 1000;
  s.t1 = (j.value("t1_ms", 0.0) - origin_ms) / 1000;
  s.requests = j.value("requests", uint64_t{0});
  s.ok = j.value("ok", uint64_t{0});
  s.errors = j.value("errors", uint64_t{0});
  return s;
}

nlohmann::json ToJson(const Trend& t) {
  auto r = [](double v) { return std::round(v * 100) / 100; };
  return {{"process", t.process},
          {"samples", t.samples},
          {"fitted", t.fitted},
          {"incarnations_after_warmup", t.pids_after_warmup},
          {"rss_kib_first", t.rss_kib_first},
          {"rss_kib_last", t.rss_kib_last},
          {"rss_kib_per_min", r(t.rss_kib_per_min)},
          {"fds_first", t.fds_first},
          {"fds_last", t.fds_last},
          {"fds_per_min", r(t.fds_per_min)}};
}

nlohmann::json ToJson(const ErrorTally& t) {
  nlohmann::json segs = nlohmann::json::array();
  for (const Segment& s : t.unexplained_segments) {
    segs.push_back({{"stream", s.stream}, {"t0_s", s.t0}, {"t1_s", s.t1}, {"errors", s.errors}});
  }
  return {{"requests", t.requests},
          {"ok", t.ok},
          {"errors", t.errors},
          {"explained", t.explained},
          {"unexplained", t.unexplained},
          {"errors_by_window", t.errors_by_window},
          {"errors_by_stream", t.errors_by_stream},
          {"unexplained_segments", segs}};
}

nlohmann::json ToJson(const Window& w) {
  return {{"what", w.what},
          {"t0_s", w.t0},
          {"t1_s", w.t1},
          {"streams", w.streams},
          {"explains_errors", w.explains}};
}

}  // namespace weft::soak
