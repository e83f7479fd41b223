#include "bench/accounting.h"

#include <dirent.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace weft::bench {

namespace {

std::optional<std::string> Slurp(const std::string& path) {
  std::ifstream f(path);
  if (!f) return std::nullopt;
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return std::nullopt;
  return ss.str();
}

double ClkTck() {
  static const double tck = [] {
    long v = sysconf(_SC_CLK_TCK);
    return v > 0 ? static_cast<double>(v) : 100.0;
  }();
  return tck;
}

// "<key>:   1234 kB" -> bytes; 0 if absent (kernel threads and zombies have no Vm* lines).
int64_t StatusKib(const std::string& text, absl::string_view key) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (!absl::ConsumePrefix(&line, key) || !absl::ConsumePrefix(&line, ":")) continue;
    line = absl::StripAsciiWhitespace(line);
    line = absl::StripSuffix(line, " kB");
    int64_t kib = 0;
    if (absl::SimpleAtoi(line, &kib)) return kib * 1024;
  }
  return 0;
}

std::string Comm(pid_t pid) {
  auto c = Slurp(absl::StrCat("/proc/", pid, "/comm"));
  return c ? std::string(absl::StripAsciiWhitespace(*c)) : "";
}

absl::StatusOr<ProcSample> ReadStat(pid_t pid, bool with_status);

// ppid -> pid for every process, to find descendants.
std::multimap<pid_t, pid_t> ChildrenByParent() {
  std::multimap<pid_t, pid_t> out;
  DIR* d = opendir("/proc");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid)) continue;
    auto s = ReadStat(pid, /*with_status=*/false);
    if (s.ok()) out.emplace(s->ppid, pid);
  }
  closedir(d);
  return out;
}

}  // namespace

absl::StatusOr<HostCpu> ReadHostCpu() {
  auto text = Slurp("/proc/stat");
  if (!text) return absl::UnavailableError("cannot read /proc/stat (is /proc mounted?)");
  absl::string_view first = absl::string_view(*text).substr(0, text->find('\n'));
  std::vector<absl::string_view> f = absl::StrSplit(first, ' ', absl::SkipEmpty());
  // cpu user nice system idle iowait irq softirq steal [guest guest_nice]
  if (f.size() < 9 || f[0] != "cpu")
    return absl::InternalError(absl::StrCat("unexpected first line of /proc/stat: ", first));
  uint64_t v[8] = {};
  for (int i = 0; i < 8; ++i) {
    if (!absl::SimpleAtoi(f[i + 1], &v[i]))
      return absl::InternalError(absl::StrCat("bad number in /proc/stat: ", first));
  }
  const double t = ClkTck();
  HostCpu h;
  h.user = (v[0] + v[1]) / t;  // guest time is already included in user/nice
  h.system = v[2] / t;
  h.idle = v[3] / t;
  h.iowait = v[4] / t;
  h.irq = v[5] / t;
  h.softirq = v[6] / t;
  h.steal = v[7] / t;
  return h;
}

namespace {
absl::StatusOr<ProcSample> ReadStat(pid_t pid, bool with_status) {
  if (pid <= 0) return absl::InvalidArgumentError(absl::StrCat("pid ", pid, " is not valid"));
  auto stat = Slurp(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat || stat->empty())
    return absl::NotFoundError(absl::StrCat("process ", pid, " not found (exited?)"));
  // The command name may contain spaces and ')': count fields from after its last ')'.
  size_t close = stat->rfind(')');
  if (close == std::string::npos)
    return absl::InternalError(absl::StrCat("malformed /proc/", pid, "/stat"));
  std::vector<absl::string_view> f =
      absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipEmpty());
  // After ')': [0]=state [1]=ppid ... [11]=utime [12]=stime ... [19]=starttime.
  ProcSample s;
  s.pid = pid;
  uint64_t ut = 0, st = 0;
  if (f.size() < 20 || !absl::SimpleAtoi(f[1], &s.ppid) || !absl::SimpleAtoi(f[11], &ut) ||
      !absl::SimpleAtoi(f[12], &st) || !absl::SimpleAtoi(f[19], &s.start_ticks))
    return absl::InternalError(absl::StrCat("malformed /proc/", pid, "/stat"));
  s.cpu_seconds = (ut + st) / ClkTck();
  if (!with_status) return s;
  if (auto status = Slurp(absl::StrCat("/proc/", pid, "/status"))) {
    s.rss_bytes = StatusKib(*status, "VmRSS");
    s.hwm_bytes = StatusKib(*status, "VmHWM");
  }
  if (auto rollup = Slurp(absl::StrCat("/proc/", pid, "/smaps_rollup"))) {
    s.pss_bytes = StatusKib(*rollup, "Pss");
    s.anon_bytes = StatusKib(*rollup, "Anonymous");
  }
  return s;
}
}  // namespace

absl::StatusOr<ProcSample> ReadProcSample(pid_t pid) {
  return ReadStat(pid, /*with_status=*/true);
}

struct ResourceSampler::Proc {
  pid_t pid = 0;
  uint64_t start_ticks = 0;
  std::string comm;
  double cpu_base = 0;
  double cpu_last = 0;
  bool seen_this_round = false;
  bool exited = false;
  int64_t peak_rss = 0;
  double rss_sum = 0;
  int64_t peak_pss = 0;
  double pss_sum = 0;
  int64_t peak_anon = 0;
  int samples = 0;
};

struct ResourceSampler::Group {
  GroupSpec spec;
  // Keyed by (pid, start time) so a reused pid is a new process.
  std::map<std::pair<pid_t, uint64_t>, Proc> procs;
  int64_t peak_sum = 0;
  double rss_sum_total = 0;
  int64_t peak_pss_sum = 0;
  double pss_sum_total = 0;
  int samples = 0;
};

ResourceSampler::ResourceSampler(std::vector<GroupSpec> groups, std::chrono::milliseconds period)
    : period_(std::clamp(period, std::chrono::milliseconds(10), std::chrono::milliseconds(10000))) {
  for (auto& g : groups) {
    auto p = std::make_unique<Group>();
    p->spec = std::move(g);
    groups_.push_back(std::move(p));
  }
}

ResourceSampler::~ResourceSampler() {
  {
    std::lock_guard<std::mutex> l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

absl::Status ResourceSampler::Start() {
  std::lock_guard<std::mutex> l(mu_);
  if (running_ || thread_.joinable())
    return absl::FailedPreconditionError("ResourceSampler::Start called twice; use a new sampler");
  auto host = ReadHostCpu();
  if (!host.ok()) return absl::FailedPreconditionError(host.status().message());
  host_start_ = *host;
  start_time_ = std::chrono::steady_clock::now();
  // Caller-given pids that cannot be read are reported once, here.
  for (auto& g : groups_) {
    for (pid_t pid : g->spec.pids) {
      auto s = ReadProcSample(pid);
      if (!s.ok())
        errors_.push_back(absl::StrCat("group ", g->spec.name, ": ", s.status().message()));
    }
    if (!g->spec.cgroup_dir.empty() && !Slurp(g->spec.cgroup_dir + "/cgroup.procs"))
      errors_.push_back(absl::StrCat("group ", g->spec.name, ": cannot read ", g->spec.cgroup_dir,
                                     "/cgroup.procs (not a cgroup v2 directory?)"));
  }
  SampleLocked(/*final_sample=*/false);
  // Everything seen in the baseline sample counts from here, not from its birth.
  for (auto& g : groups_)
    for (auto& [key, p] : g->procs) p.cpu_base = p.cpu_last;
  running_ = true;
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void ResourceSampler::Loop() {
  std::unique_lock<std::mutex> l(mu_);
  while (!stop_) {
    if (cv_.wait_for(l, period_, [this] { return stop_; })) break;
    SampleLocked(/*final_sample=*/false);
  }
}

void ResourceSampler::SampleLocked(bool final_sample) {
  ++samples_;
  std::multimap<pid_t, pid_t> children;
  bool have_children = false;
  for (auto& g : groups_) {
    std::set<pid_t> pids;
    // pid 0 would make every process a descendant (init and kthreadd have ppid 0).
    for (pid_t pid : g->spec.pids)
      if (pid > 0) pids.insert(pid);
    if (!g->spec.cgroup_dir.empty()) {
      if (auto text = Slurp(g->spec.cgroup_dir + "/cgroup.procs")) {
        for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
          pid_t pid = 0;
          if (absl::SimpleAtoi(line, &pid)) pids.insert(pid);
        }
      }
    }
    if (g->spec.include_descendants) {
      if (!have_children) {
        children = ChildrenByParent();
        have_children = true;
      }
      std::vector<pid_t> todo(pids.begin(), pids.end());
      while (!todo.empty()) {
        pid_t p = todo.back();
        todo.pop_back();
        auto [b, e] = children.equal_range(p);
        for (auto it = b; it != e; ++it)
          if (pids.insert(it->second).second) todo.push_back(it->second);
      }
    }
    for (auto& [key, p] : g->procs) p.seen_this_round = false;
    int64_t sum = 0, pss = 0;
    for (pid_t pid : pids) {
      auto s = ReadProcSample(pid);
      if (!s.ok()) continue;
      auto [it, inserted] = g->procs.try_emplace({pid, s->start_ticks});
      Proc& p = it->second;
      if (inserted) {
        p.pid = pid;
        p.start_ticks = s->start_ticks;
        p.comm = Comm(pid);
      }
      p.seen_this_round = true;
      p.exited = false;
      p.cpu_last = s->cpu_seconds;
      p.peak_rss = std::max(p.peak_rss, s->rss_bytes);
      if (final_sample) p.peak_rss = std::max(p.peak_rss, s->hwm_bytes);
      p.rss_sum += static_cast<double>(s->rss_bytes);
      p.peak_pss = std::max(p.peak_pss, s->pss_bytes);
      p.pss_sum += static_cast<double>(s->pss_bytes);
      p.peak_anon = std::max(p.peak_anon, s->anon_bytes);
      ++p.samples;
      sum += s->rss_bytes;
      pss += s->pss_bytes;
    }
    for (auto& [key, p] : g->procs)
      if (!p.seen_this_round) p.exited = true;
    g->peak_sum = std::max(g->peak_sum, sum);
    g->rss_sum_total += static_cast<double>(sum);
    g->peak_pss_sum = std::max(g->peak_pss_sum, pss);
    g->pss_sum_total += static_cast<double>(pss);
    ++g->samples;
  }
}

absl::StatusOr<RunUsage> ResourceSampler::Stop() {
  {
    std::lock_guard<std::mutex> l(mu_);
    if (!running_) return absl::FailedPreconditionError("ResourceSampler::Stop without Start");
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  std::lock_guard<std::mutex> l(mu_);
  running_ = false;
  SampleLocked(/*final_sample=*/true);
  RunUsage u;
  u.elapsed_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time_).count();
  u.nproc = static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN));
  u.samples = samples_;
  u.errors = errors_;
  auto host = ReadHostCpu();
  if (!host.ok()) {
    u.errors.push_back(std::string(host.status().message()));
  } else {
    u.host.user = host->user - host_start_.user;
    u.host.system = host->system - host_start_.system;
    u.host.idle = host->idle - host_start_.idle;
    u.host.iowait = host->iowait - host_start_.iowait;
    u.host.irq = host->irq - host_start_.irq;
    u.host.softirq = host->softirq - host_start_.softirq;
    u.host.steal = host->steal - host_start_.steal;
    const double total = u.host.Total();
    if (total > 0) {
      u.host_fraction = {u.host.user / total,   u.host.system / total, u.host.idle / total,
                         u.host.iowait / total, u.host.irq / total,    u.host.softirq / total,
                         u.host.steal / total};
    }
  }
  for (auto& g : groups_) {
    GroupUsage gu;
    gu.name = g->spec.name;
    gu.peak_rss_bytes = g->peak_sum;
    gu.mean_rss_bytes = g->samples > 0 ? g->rss_sum_total / g->samples : 0;
    gu.peak_pss_bytes = g->peak_pss_sum;
    gu.mean_pss_bytes = g->samples > 0 ? g->pss_sum_total / g->samples : 0;
    for (auto& [key, p] : g->procs) {
      ProcessUsage pu;
      pu.pid = p.pid;
      pu.comm = p.comm;
      pu.cpu_seconds = std::max(0.0, p.cpu_last - p.cpu_base);
      pu.exited = p.exited;
      pu.peak_rss_bytes = p.peak_rss;
      pu.mean_rss_bytes = p.samples > 0 ? p.rss_sum / p.samples : 0;
      pu.peak_pss_bytes = p.peak_pss;
      pu.mean_pss_bytes = p.samples > 0 ? p.pss_sum / p.samples : 0;
      pu.peak_anon_bytes = p.peak_anon;
      pu.samples = p.samples;
      gu.cpu_seconds += pu.cpu_seconds;
      gu.peak_rss_bytes = std::max(gu.peak_rss_bytes, pu.peak_rss_bytes);
      gu.processes.push_back(std::move(pu));
    }
    u.groups.push_back(std::move(gu));
  }
  return u;
}

namespace {
nlohmann::json HostJson(const HostCpu& h) {
  return {{"user", h.user}, {"system", h.system},   {"idle", h.idle},  {"iowait", h.iowait},
          {"irq", h.irq},   {"softirq", h.softirq}, {"steal", h.steal}};
}
}  // namespace

nlohmann::json ToJson(const RunUsage& u) {
  nlohmann::json groups = nlohmann::json::array();
  for (const auto& g : u.groups) {
    nlohmann::json procs = nlohmann::json::array();
    for (const auto& p : g.processes) {
      procs.push_back({{"pid", p.pid},
                       {"comm", p.comm},
                       {"cpu_seconds", p.cpu_seconds},
                       {"exited", p.exited},
                       {"peak_rss_bytes", p.peak_rss_bytes},
                       {"mean_rss_bytes", p.mean_rss_bytes},
                       {"peak_pss_bytes", p.peak_pss_bytes},
                       {"mean_pss_bytes", p.mean_pss_bytes},
                       {"peak_anon_bytes", p.peak_anon_bytes},
                       {"samples", p.samples}});
    }
    groups.push_back({{"name", g.name},
                      {"cpu_seconds", g.cpu_seconds},
                      {"peak_rss_bytes", g.peak_rss_bytes},
                      {"mean_rss_bytes", g.mean_rss_bytes},
                      {"peak_pss_bytes", g.peak_pss_bytes},
                      {"mean_pss_bytes", g.mean_pss_bytes},
                      {"processes", std::move(procs)}});
  }
  return {{"elapsed_seconds", u.elapsed_seconds},
          {"nproc", u.nproc},
          {"samples", u.samples},
          {"host_cpu_seconds", HostJson(u.host)},
          {"host_cpu_fraction", HostJson(u.host_fraction)},
          {"groups", std::move(groups)},
          {"errors", u.errors}};
}

}  // namespace weft::bench
