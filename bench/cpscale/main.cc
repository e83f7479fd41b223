// weft-cp-bench: the control plane at scale. Generates the manifests of a large cluster, runs
// the real weftd on them (local source, TLS on loopback with bootstrap node tokens), opens one
// real config stream per node (ConfigClient, all in this process), and measures: manifest load
// time, time until every node has its first snapshot, full-snapshot bytes per node, the time
// from rewriting one pod's manifest until every node accepted (and ACKed) the new version and
// the delta bytes per node (repeated --changes times), one policy change (time to the affected
// nodes, how many nodes received it), weftd's CPU time and peak RSS. Finally compares the
// config of --verify nodes with weftd's /config_dump?node= view (exit 1 on any mismatch or when
// a change does not converge). See bench/README.md ("Control plane at scale").
#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/cpscale/manifests.h"
#include "common/log.h"
#include "common/net.h"
#include "common/scrape/scrape.h"
#include "common/status.h"
#include "controlplane/xds/client.h"
#include "controlplane/xds/resources.h"
#include "nlohmann/json.hpp"
#include "weft/config/v1/config.grpc.pb.h"
#include "ztunnel/state/snapshot.h"

extern char** environ;

namespace weft::bench::cpscale {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using cp::ConfigClient;
using cp::ConfigClientOptions;

const char kUsage[] =
    "usage: weft-cp-bench [--pods N] [--services N] [--nodes N] [--policies N] [--namespaces N]\n"
    "                     [--changes N] [--out DIR] [--weftd PATH] [--plaintext]\n"
    "                     [--debounce-ms N] [--verify N] [--timeout-s N] [--seed N] [--keep]\n"
    "                     [--client stream|configclient]\n"
    "  --pods/--services/--nodes/--policies  cluster size (default 10000/1000/100/500)\n"
    "  --namespaces N    namespaces the objects are spread over (default 50)\n"
    "  --changes N       one-pod changes to time (default 5; median and max reported)\n"
    "  --out DIR         results.json and report.md (default bench/results/<UTC>-cpscale)\n"
    "  --weftd PATH      the weftd binary (default: the build tree's, next to this program)\n"
    "  --plaintext       gRPC without TLS (default: TLS with weftd's CA, bootstrap tokens)\n"
    "  --debounce-ms N   weftd's push debounce (default 100, weftd's default)\n"
    "  --verify N        nodes whose final config is compared with weftd's /config_dump\n"
    "                    (default 3; -1: every node)\n"
    "  --timeout-s N     give up on a phase after N seconds (default 180)\n"
    "  --keep            keep the temporary directory (manifests, weftd.log)\n"
    "  --client KIND     stream (default): each node applies the stream's snapshots and deltas\n"
    "                    to its resource set and ACKs at once, so timings are weftd's;\n"
    "                    configclient: the real ConfigClient (builds and validates a\n"
    "                    ztunnel::ConfigSnapshot per version: 100 of those share this machine)\n";

struct Flags {
  ClusterSpec spec;
  int changes = 5;
  std::string out;
  std::string weftd;
  bool plaintext = false;
  int debounce_ms = 100;
  int verify = 3;
  int timeout_s = 180;
  bool keep = false;
  bool config_client = false;  // --client configclient
};

double Secs(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ---- weftd, the child process

struct ProcStats {
  double cpu_s = 0;     // utime + stime
  int64_t rss_kib = 0;  // VmRSS
  int64_t hwm_kib = 0;  // VmHWM: peak RSS
};

ProcStats ReadProc(pid_t pid) {
  ProcStats s;
  const std::string stat = ReadText(absl::StrCat("/proc/", pid, "/stat"));
  // Fields after the ")" of comm: state is field 3; utime, stime are fields 14, 15.
  auto close = stat.rfind(')');
  if (close != std::string::npos) {
    std::istringstream in(stat.substr(close + 2));
    std::string field;
    std::vector<std::string> f;
    while (in >> field) f.push_back(field);
    if (f.size() > 12) {
      const double tick = static_cast<double>(sysconf(_SC_CLK_TCK));
      s.cpu_s = (std::stod(f[11]) + std::stod(f[12])) / tick;
    }
  }
  std::istringstream status(ReadText(absl::StrCat("/proc/", pid, "/status")));
  std::string line;
  while (std::getline(status, line)) {
    int64_t v = 0;
    auto value = [&](const char* key) {
      if (line.rfind(key, 0) != 0) return false;
      std::istringstream ls(line.substr(std::strlen(key)));
      ls >> v;
      return true;
    };
    if (value("VmRSS:")) s.rss_kib = v;
    if (value("VmHWM:")) s.hwm_kib = v;
  }
  return s;
}

double SelfCpu() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

class Weftd {
 public:
  ~Weftd() { Stop(); }

  absl::Status Start(const std::string& binary, std::vector<std::string> args,
                     const std::string& log) {
    log_ = log;
    std::vector<char*> argv;
    args.insert(args.begin(), binary);
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    int rc = posix_spawn(&pid_, binary.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      pid_ = -1;
      return absl::InternalError(absl::StrCat("cannot start ", binary, ": ", std::strerror(rc)));
    }
    return absl::OkStatus();
  }

  // The "weftd started" log line (with the ports), or an error when weftd exits or times out.
  absl::StatusOr<json> WaitStarted(Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      std::istringstream in(ReadText(log_));
      std::string line;
      while (std::getline(in, line)) {
        if (line.find("\"weftd started\"") == std::string::npos) continue;
        json j = json::parse(line, nullptr, false);
        if (j.is_object()) return j;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return absl::FailedPreconditionError(
            absl::StrCat("weftd exited before it started; its log:\n", Tail()));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return absl::DeadlineExceededError(absl::StrCat("weftd did not start; its log:\n", Tail()));
  }

  std::string Tail() const {
    std::string text = ReadText(log_);
    return text.size() > 4000 ? text.substr(text.size() - 4000) : text;
  }

  void Stop() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    int status = 0;
    for (int i = 0; i < 500; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
  }

  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  std::string log_;
};

// ---- the nodes: one config stream each, every accepted version timestamped

// A node that speaks the stream protocol and nothing more: applies full snapshots and deltas to
// its keyed resource set and ACKs each version at once. It does not build or validate a
// ztunnel::ConfigSnapshot (ConfigClient does, see --client), so with 100 nodes in one process
// the timings are weftd's, not those of 100 ztunnels' validation sharing this machine's cores.
class StreamNode {
 public:
  using OnVersion = std::function<void(const std::string& version, size_t bytes)>;
  StreamNode(ConfigClientOptions o, OnVersion cb) : opts_(std::move(o)), cb_(std::move(cb)) {}
  ~StreamNode() { Stop(); }

  absl::Status Start() {
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (!opts_.root_ca_file.empty()) {
      grpc::SslCredentialsOptions so;
      so.pem_root_certs = ReadText(opts_.root_ca_file);
      if (so.pem_root_certs.empty()) {
        return absl::FailedPreconditionError(absl::StrCat("cannot read ", opts_.root_ca_file));
      }
      creds = grpc::SslCredentials(so);
    }
    std::string token(absl::StripAsciiWhitespace(ReadText(opts_.bearer_token_file)));
    if (token.empty()) {
      return absl::FailedPreconditionError(absl::StrCat("no token in ", opts_.bearer_token_file));
    }
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetMaxReceiveMessageSize(-1);
    if (!opts_.tls_server_name.empty()) args.SetSslTargetNameOverride(opts_.tls_server_name);
    stub_ = pb::ConfigDiscovery::NewStub(grpc::CreateCustomChannel(opts_.target, creds, args));
    token_ = std::move(token);
    thread_ = std::thread([this] { Run(); });
    return absl::OkStatus();
  }

  void Stop() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> l(ctx_mu_);
      stopping_ = true;
      if (ctx_) ctx_->TryCancel();
    }
    thread_.join();
  }

  // Streams that ended (or never opened) and were opened again.
  int reconnects() const { return reconnects_.load(); }

  // The config this node runs, in the stream's canonical form.
  pb::ConfigSnapshot Current() {
    std::lock_guard<std::mutex> l(mu_);
    pb::ConfigResponse full = globals_;
    full.set_full_snapshot(true);
    for (const auto& [key, bytes] : resources_) {
      if (!full.add_upserted()->ParseFromString(bytes)) ADD_PROBLEM("bad resource bytes");
    }
    cp::xds::ResourceSet set;
    (void)set.Apply(full);
    return set.ToSnapshot(version_);
  }

 private:
  static void ADD_PROBLEM(const char* what) { std::fprintf(stderr, "weft-cp-bench: %s\n", what); }

  // Like a real node: a stream that fails to open or ends is opened again (after 200 ms), so one
  // refused connection among 100 simultaneous ones cannot stall a whole run.
  void Run() {
    for (int attempt = 0;; ++attempt) {
      auto ctx = std::make_unique<grpc::ClientContext>();
      ctx->AddMetadata("authorization", absl::StrCat("Bearer ", token_));
      {
        std::lock_guard<std::mutex> l(ctx_mu_);
        if (stopping_) return;
        ctx_ = ctx.get();
      }
      if (attempt > 0) reconnects_++;
      RunOnce(ctx.get());
      {
        std::lock_guard<std::mutex> l(ctx_mu_);
        ctx_ = nullptr;
        if (stopping_) return;
      }
      std::fprintf(stderr, "weft-cp-bench: node %s: stream ended; reconnecting\n",
                   opts_.node.c_str());
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  }

  void RunOnce(grpc::ClientContext* ctx) {
    auto stream = stub_->Stream(ctx);
    pb::ConfigRequest hello;
    hello.set_node(opts_.node);
    hello.set_component(opts_.component);
    if (!stream->Write(hello)) {
      (void)stream->Finish();
      return;
    }
    pb::ConfigResponse resp;
    while (stream->Read(&resp)) {
      const size_t bytes = resp.ByteSizeLong();
      {
        std::lock_guard<std::mutex> l(mu_);
        if (resp.full_snapshot()) resources_.clear();
        for (const pb::Resource& r : resp.upserted()) {
          auto key = cp::xds::KeyOf(r);
          if (key.ok()) resources_[*key] = r.SerializeAsString();
        }
        for (const pb::ResourceKey& k : resp.removed()) {
          auto key = cp::xds::KeyFromProto(k);
          if (key.ok()) resources_.erase(*key);
        }
        globals_ = resp;
        globals_.clear_upserted();
        globals_.clear_removed();
        version_ = resp.version();
      }
      cb_(resp.version(), bytes);
      pb::ConfigRequest ack;
      ack.set_nonce(resp.nonce());
      ack.set_version_acked(resp.version());
      // Free a full snapshot's 11,000 messages now, not when the next (timed) delta arrives.
      pb::ConfigResponse().Swap(&resp);
      if (!stream->Write(ack)) break;
    }
    (void)stream->Finish();
  }

  const ConfigClientOptions opts_;
  const OnVersion cb_;
  std::unique_ptr<pb::ConfigDiscovery::Stub> stub_;
  std::string token_;
  std::mutex ctx_mu_;
  grpc::ClientContext* ctx_ = nullptr;  // the open stream's, guarded by ctx_mu_
  bool stopping_ = false;               // guarded by ctx_mu_
  std::atomic<int> reconnects_{0};
  std::thread thread_;
  std::mutex mu_;
  std::map<cp::xds::Key, std::string> resources_;
  pb::ConfigResponse globals_;
  std::string version_;
};

class Nodes {
 public:
  struct Version {
    std::string version;
    Clock::time_point at;
    size_t bytes = 0;  // the response's size (stream client); 0 with ConfigClient
  };
  struct Node {
    std::string name;
    std::unique_ptr<ConfigClient> client;  // --client configclient
    std::unique_ptr<StreamNode> stream;    // --client stream
    std::vector<Version> versions;         // accepted, in order
    pb::ConfigSnapshot Current() { return client ? client->CurrentProto() : stream->Current(); }
  };

  void Add(const std::string& name, ConfigClientOptions o, bool config_client) {
    auto n = std::make_unique<Node>();
    n->name = name;
    Node* raw = n.get();
    auto record = [this, raw](const std::string& version, size_t bytes) {
      std::lock_guard<std::mutex> l(mu_);
      raw->versions.push_back({version, Clock::now(), bytes});
      cv_.notify_all();
    };
    if (config_client) {
      n->client = std::make_unique<ConfigClient>(
          std::move(o), [record](const ztunnel::SnapshotPtr& snap) { record(snap->version(), 0); });
    } else {
      n->stream = std::make_unique<StreamNode>(std::move(o), record);
    }
    nodes_.push_back(std::move(n));
  }

  absl::Status StartAll() {
    for (auto& n : nodes_) {
      absl::Status st = n->client ? n->client->Start() : n->stream->Start();
      if (!st.ok()) return st;
    }
    return absl::OkStatus();
  }
  void StopAll() {
    for (auto& n : nodes_) {
      if (n->client) n->client->Stop();
      if (n->stream) n->stream->Stop();
    }
  }

  // Versions accepted so far, per node.
  std::vector<size_t> Counts() const {
    std::lock_guard<std::mutex> l(mu_);
    std::vector<size_t> out;
    for (const auto& n : nodes_) out.push_back(n->versions.size());
    return out;
  }

  // Waits until every node in `which` (indices) accepted a version beyond `before[i]`; returns
  // that version per node (nullopt for nodes that did not get one in time).
  std::vector<std::optional<Version>> WaitNew(const std::vector<size_t>& before,
                                              const std::vector<size_t>& which,
                                              Clock::time_point deadline) {
    std::unique_lock<std::mutex> l(mu_);
    auto done = [&] {
      for (size_t i : which) {
        if (nodes_[i]->versions.size() <= before[i]) return false;
      }
      return true;
    };
    cv_.wait_until(l, deadline, done);
    std::vector<std::optional<Version>> out(nodes_.size());
    for (size_t i = 0; i < nodes_.size(); ++i) {
      if (nodes_[i]->versions.size() > before[i]) out[i] = nodes_[i]->versions[before[i]];
    }
    return out;
  }

  size_t size() const { return nodes_.size(); }

  // Streams re-opened by the stream nodes (a re-opened stream starts with a full snapshot, so a
  // non-zero count means a timed phase may include one; the report shows it).
  int Reconnects() const {
    int n = 0;
    for (const auto& node : nodes_) n += node->stream ? node->stream->reconnects() : 0;
    return n;
  }
  Node& at(size_t i) { return *nodes_[i]; }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Node>> nodes_;
};

// ---- figures

struct Metrics {
  double push_bytes = 0, pushes_full = 0, pushes_delta = 0, acks = 0, nacks = 0;
};

absl::StatusOr<Metrics> Scrape(const SockAddr& metrics) {
  auto text = HttpGet(metrics, "/metrics");
  if (!text.ok()) return text.status();
  Metrics m;
  m.push_bytes = MetricSum(*text, "weft_xds_push_bytes_total");
  m.pushes_full = MetricSum(*text, "weft_xds_pushes_total", {{"type", "full"}});
  m.pushes_delta = MetricSum(*text, "weft_xds_pushes_total", {{"type", "delta"}});
  m.acks = MetricSum(*text, "weft_xds_acks_total");
  m.nacks = MetricSum(*text, "weft_xds_nacks_total");
  return m;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

double Max(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

std::string UtcStamp() {
  time_t now = time(nullptr);
  tm u{};
  gmtime_r(&now, &u);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%dT%H%M%SZ", &u);
  return buf;
}

std::string DefaultWeftd() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "weftd";
  return (self.parent_path().parent_path().parent_path() / "controlplane/weftd/weftd").string();
}

absl::StatusOr<Flags> ParseFlags(int argc, char** argv) {
  Flags f;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto next = [&]() -> const char* { return i + 1 < argc ? argv[++i] : nullptr; };
    auto number = [&](int* out) -> absl::Status {
      const char* v = next();
      if (v == nullptr || !absl::SimpleAtoi(v, out)) {
        return absl::InvalidArgumentError(absl::StrCat(Av(a), " needs a number"));
      }
      return absl::OkStatus();
    };
    absl::Status st;
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    } else if (a == "--pods") {
      st = number(&f.spec.pods);
    } else if (a == "--services") {
      st = number(&f.spec.services);
    } else if (a == "--nodes") {
      st = number(&f.spec.nodes);
    } else if (a == "--policies") {
      st = number(&f.spec.policies);
    } else if (a == "--namespaces") {
      st = number(&f.spec.namespaces);
    } else if (a == "--changes") {
      st = number(&f.changes);
    } else if (a == "--debounce-ms") {
      st = number(&f.debounce_ms);
    } else if (a == "--verify") {
      st = number(&f.verify);
    } else if (a == "--timeout-s") {
      st = number(&f.timeout_s);
    } else if (a == "--seed") {
      int seed = 0;
      st = number(&seed);
      f.spec.seed = static_cast<uint64_t>(seed);
    } else if (a == "--out" || a == "--weftd") {
      const char* v = next();
      if (v == nullptr) return absl::InvalidArgumentError(absl::StrCat(Av(a), " needs a path"));
      (a == "--out" ? f.out : f.weftd) = v;
    } else if (a == "--plaintext") {
      f.plaintext = true;
    } else if (a == "--client") {
      const char* v = next();
      if (v == nullptr ||
          (std::string_view(v) != "stream" && std::string_view(v) != "configclient")) {
        return absl::InvalidArgumentError("--client needs stream or configclient");
      }
      f.config_client = std::string_view(v) == "configclient";
    } else if (a == "--keep") {
      f.keep = true;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument \"", Av(a), "\""));
    }
    if (!st.ok()) return st;
  }
  if (f.spec.pods < 1 || f.spec.nodes < 1 || f.spec.namespaces < 1 || f.spec.services < 0 ||
      f.spec.policies < 0 || f.changes < 1) {
    return absl::InvalidArgumentError(
        "--pods, --nodes, --namespaces and --changes must be at least 1; --services and "
        "--policies at least 0");
  }
  if (f.spec.namespaces > f.spec.pods) f.spec.namespaces = f.spec.pods;
  if (f.weftd.empty()) f.weftd = DefaultWeftd();
  if (f.out.empty()) f.out = absl::StrCat("bench/results/", UtcStamp(), "-cpscale");
  return f;
}

// The node's accepted config against weftd's view of it (/config_dump?node=, i.e.
// Model::NodeView): equal once both are in the stream's canonical order, versions aside.
absl::Status VerifyNode(Nodes::Node& n, const SockAddr& admin) {
  auto body = HttpGet(admin, absl::StrCat("/config_dump?node=", n.name), -1, nullptr, 60000);
  if (!body.ok()) return body.status();
  pb::ConfigSnapshot view;
  auto st = google::protobuf::util::JsonStringToMessage(*body, &view);
  if (!st.ok()) {
    return absl::InternalError(
        absl::StrCat("config_dump of ", n.name, ": ", std::string(st.message())));
  }
  pb::ConfigSnapshot want = cp::xds::Canonicalize(view, "");
  pb::ConfigSnapshot got = n.Current();
  got.clear_version();
  want.clear_version();
  // The stream does not carry outbound_traffic_policy when it is the default.
  if (!google::protobuf::util::MessageDifferencer::Equals(got, want)) {
    return absl::InternalError(absl::StrCat(
        "node ", n.name, ": the streamed config differs from weftd's /config_dump view (",
        got.workloads_size(), "/", want.workloads_size(), " workloads, ", got.services_size(), "/",
        want.services_size(), " services, ", got.authorization_policies_size(), "/",
        want.authorization_policies_size(), " authorization policies)"));
  }
  return absl::OkStatus();
}

int Run(const Flags& f) {
  weft::log::SetLevel(weft::log::Level::kWarn);  // 100 clients' info lines are noise here
  json result;
  result["params"] = {{"pods", f.spec.pods},
                      {"services", f.spec.services},
                      {"nodes", f.spec.nodes},
                      {"policies", f.spec.policies},
                      {"namespaces", f.spec.namespaces},
                      {"changes", f.changes},
                      {"tls", !f.plaintext},
                      {"client", f.config_client ? "configclient" : "stream"},
                      {"debounce_ms", f.debounce_ms},
                      {"seed", f.spec.seed}};
  result["machine"] = {{"nproc", std::thread::hardware_concurrency()},
                       {"loadavg_at_start", ReadText("/proc/loadavg")}};
  bool ok = true;
  std::vector<std::string> problems;
  auto problem = [&](std::string p) {
    std::fprintf(stderr, "weft-cp-bench: %s\n", p.c_str());
    problems.push_back(std::move(p));
    ok = false;
  };

  char tmpl[] = "/tmp/weft-cpscale-XXXXXX";
  if (mkdtemp(tmpl) == nullptr) {
    std::fprintf(stderr, "weft-cp-bench: mkdtemp: %s\n", std::strerror(errno));
    return 1;
  }
  const std::string tmp = tmpl, manifests = tmp + "/manifests", state = tmp + "/state";
  mkdir(manifests.c_str(), 0755);
  mkdir(state.c_str(), 0700);

  std::fprintf(stderr, "generating %d pods, %d services, %d policies over %d nodes in %s\n",
               f.spec.pods, f.spec.services, f.spec.policies, f.spec.nodes, manifests.c_str());
  Cluster cluster = Generate(f.spec);
  auto written = WriteCluster(cluster, manifests);
  if (!written.ok()) {
    std::fprintf(stderr, "weft-cp-bench: %s\n", std::string(written.status().message()).c_str());
    return 1;
  }
  result["manifests"] = {{"files", cluster.files.size()},
                         {"bytes", *written},
                         {"pods", cluster.pods.size()},
                         {"policies", cluster.policies.size()}};

  Weftd weftd;
  std::vector<std::string> args = {"--manifests",   manifests,
                                   "--state-dir",   state,
                                   "--grpc",        "127.0.0.1:0",
                                   "--admin",       "127.0.0.1:0",
                                   "--metrics",     "127.0.0.1:0",
                                   "--readiness",   "127.0.0.1:0",
                                   "--debounce-ms", std::to_string(f.debounce_ms),
                                   "--node-tokens", absl::StrJoin(cluster.nodes, ",")};
  if (f.plaintext) args.push_back("--plaintext");
  const auto timeout = std::chrono::seconds(f.timeout_s);
  const auto t_spawn = Clock::now();
  if (absl::Status st = weftd.Start(f.weftd, args, tmp + "/weftd.log"); !st.ok()) {
    std::fprintf(stderr, "weft-cp-bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  auto started = weftd.WaitStarted(timeout);
  if (!started.ok()) {
    std::fprintf(stderr, "weft-cp-bench: %s\n", std::string(started.status().message()).c_str());
    return 1;
  }
  const auto t_started = Clock::now();
  const int grpc_port = (*started)["grpc_port"].get<int>();
  auto admin = SockAddr::Parse((*started)["admin"].get<std::string>());
  auto metrics = SockAddr::Parse((*started)["metrics"].get<std::string>());
  if (!admin.ok() || !metrics.ok()) {
    std::fprintf(stderr, "weft-cp-bench: cannot read weftd's addresses from %s\n",
                 started->dump().c_str());
    return 1;
  }
  const ProcStats after_load = ReadProc(weftd.pid());
  result["load"] = {{"seconds", Secs(t_started - t_spawn)},
                    {"weftd_cpu_s", after_load.cpu_s},
                    {"weftd_rss_mib", after_load.rss_kib / 1024.0}};
  std::fprintf(stderr, "weftd loaded the manifests in %.2f s (CPU %.2f s, RSS %.0f MiB)\n",
               Secs(t_started - t_spawn), after_load.cpu_s, after_load.rss_kib / 1024.0);

  // ---- every node subscribes
  Nodes nodes;
  for (const std::string& node : cluster.nodes) {
    ConfigClientOptions o;
    o.target = absl::StrCat("127.0.0.1:", grpc_port);
    o.node = node;
    o.component = "ztunnel";
    if (!f.plaintext) {
      o.root_ca_file = state + "/ca/root-cert.pem";
      o.tls_server_name = "localhost";
    }
    o.bearer_token_file = absl::StrCat(state, "/tokens/", node, ".token");
    nodes.Add(node, std::move(o), f.config_client);
  }
  const auto t_subscribe = Clock::now();
  const double client_cpu0 = SelfCpu();
  if (absl::Status st = nodes.StartAll(); !st.ok()) {
    std::fprintf(stderr, "weft-cp-bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  std::vector<size_t> all(nodes.size());
  for (size_t i = 0; i < all.size(); ++i) all[i] = i;
  std::vector<size_t> zero(nodes.size(), 0);
  auto first = nodes.WaitNew(zero, all, Clock::now() + timeout);
  Clock::time_point t_first_all = t_subscribe;
  size_t got_first = 0;
  std::vector<double> full_bytes;
  for (const auto& t : first) {
    if (!t) continue;
    ++got_first;
    t_first_all = std::max(t_first_all, t->at);
    if (t->bytes > 0) full_bytes.push_back(static_cast<double>(t->bytes));
  }
  if (got_first != nodes.size()) {
    problem(absl::StrCat("only ", got_first, " of ", nodes.size(),
                         " nodes received a first snapshot within ", f.timeout_s, " s"));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // last ACKs reach weftd; settle
  auto m_full = Scrape(*metrics);
  const ProcStats after_full = ReadProc(weftd.pid());
  json full = {{"nodes_with_snapshot", got_first},
               {"seconds_after_subscribe", Secs(t_first_all - t_subscribe)},
               {"seconds_after_weftd_start", Secs(t_first_all - t_spawn)},
               {"bench_clients_cpu_s", SelfCpu() - client_cpu0},
               {"weftd_cpu_s", after_full.cpu_s - after_load.cpu_s},
               {"weftd_rss_mib", after_full.rss_kib / 1024.0}};
  if (!full_bytes.empty()) {  // exact, per node (stream client)
    full["bytes_per_node"] = Median(full_bytes);
    full["bytes_per_node_min"] = *std::min_element(full_bytes.begin(), full_bytes.end());
    full["bytes_per_node_max"] = Max(full_bytes);
  } else if (m_full.ok() && m_full->pushes_full > 0) {  // weftd's average
    full["bytes_per_node"] = m_full->push_bytes / m_full->pushes_full;
  }
  if (m_full.ok()) {
    full["weftd_bytes_total"] = m_full->push_bytes;
    full["weftd_full_pushes"] = m_full->pushes_full;
  }
  result["full_snapshot"] = full;
  std::fprintf(stderr, "%zu nodes have their first snapshot %.2f s after subscribing\n", got_first,
               Secs(t_first_all - t_subscribe));

  // ---- one-pod changes
  std::mt19937_64 rng(f.spec.seed * 7919 + 1);
  json pod_changes = json::array();
  std::vector<double> all_times, median_node_times;
  std::vector<double> delta_bytes, pod_cpu;
  for (int c = 0; c < f.changes; ++c) {
    GenPod& pod = cluster.pods[rng() % cluster.pods.size()];
    json& obj = cluster.At(pod.ref);
    const std::string rev = absl::StrCat("r", c + 1);
    obj["metadata"]["labels"]["weft-bench/rev"] = rev;
    const auto before = nodes.Counts();
    auto m0 = Scrape(*metrics);
    const ProcStats p0 = ReadProc(weftd.pid());
    const double cc0 = SelfCpu();
    const auto t0 = Clock::now();
    if (absl::Status st = WriteManifestFile(manifests, pod.ref.file, cluster.files[pod.ref.file]);
        !st.ok()) {
      problem(std::string(st.message()));
      break;
    }
    auto got = nodes.WaitNew(before, all, t0 + timeout);
    std::vector<double> lat;
    std::vector<double> node_bytes;
    for (const auto& t : got) {
      if (t) lat.push_back(Secs(t->at - t0));
      if (t && t->bytes > 0) node_bytes.push_back(static_cast<double>(t->bytes));
    }
    const double cc1 = SelfCpu();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // ACKs and counters settle
    auto m1 = Scrape(*metrics);
    const ProcStats p1 = ReadProc(weftd.pid());
    json one = {{"pod", absl::StrCat(pod.ns, "/", pod.name)},
                {"file", pod.ref.file},
                {"nodes_updated", lat.size()},
                {"seconds_to_all", Max(lat)},
                {"seconds_median_node", Median(lat)},
                {"weftd_cpu_s", p1.cpu_s - p0.cpu_s},
                {"bench_clients_cpu_s", cc1 - cc0}};
    if (!node_bytes.empty()) {
      one["delta_bytes_per_node"] = Median(node_bytes);
      one["delta_bytes_per_node_max"] = Max(node_bytes);
      delta_bytes.push_back(Median(node_bytes));
    } else if (m0.ok() && m1.ok() && m1->pushes_delta > m0->pushes_delta) {
      const double bytes =
          (m1->push_bytes - m0->push_bytes) / (m1->pushes_delta - m0->pushes_delta);
      one["delta_bytes_per_node"] = bytes;
      delta_bytes.push_back(bytes);
    }
    if (m0.ok() && m1.ok()) one["deltas_sent"] = m1->pushes_delta - m0->pushes_delta;
    pod_changes.push_back(one);
    pod_cpu.push_back(p1.cpu_s - p0.cpu_s);
    if (lat.size() != nodes.size()) {
      problem(absl::StrCat("pod change ", c + 1, ": only ", lat.size(), " of ", nodes.size(),
                           " nodes accepted a new version within ", f.timeout_s, " s"));
      continue;
    }
    all_times.push_back(Max(lat));
    median_node_times.push_back(Median(lat));
    std::fprintf(stderr, "pod change %d (%s/%s): all %zu nodes in %.3f s (median node %.3f s)\n",
                 c + 1, pod.ns.c_str(), pod.name.c_str(), lat.size(), Max(lat), Median(lat));
    // Content check on a few nodes: the new label is there.
    for (size_t i = 0; i < nodes.size(); i += std::max<size_t>(1, nodes.size() / 4)) {
      pb::ConfigSnapshot snap = nodes.at(i).Current();
      bool found = false;
      for (const auto& w : snap.workloads()) {
        if (w.namespace_() == pod.ns && w.name() == pod.name) {
          auto it = w.labels().find("weft-bench/rev");
          found = it != w.labels().end() && it->second == rev;
        }
      }
      if (!found) {
        problem(absl::StrCat("pod change ", c + 1, ": node ", nodes.at(i).name,
                             " accepted a version without the changed label"));
      }
    }
  }
  result["pod_change"] = {{"runs", pod_changes},
                          {"seconds_to_all_median", Median(all_times)},
                          {"seconds_to_all_max", Max(all_times)},
                          {"seconds_median_node_median", Median(median_node_times)},
                          {"delta_bytes_per_node_median", Median(delta_bytes)}};

  // ---- one policy change: an AuthorizationPolicy with a selector gets one more port
  json policy_result;
  const GenPolicy* pol = nullptr;
  for (const GenPolicy& p : cluster.policies) {
    if (p.kind == "AuthorizationPolicy" && !p.app.empty() &&
        !cluster.NodesOf(p.ns, p.app).empty()) {
      pol = &p;
      break;
    }
  }
  if (pol != nullptr) {
    const std::set<std::string> expected = cluster.NodesOf(pol->ns, pol->app);
    std::vector<size_t> which;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (expected.contains(nodes.at(i).name)) which.push_back(i);
    }
    json& obj = cluster.At(pol->ref);
    obj["spec"]["rules"][0]["to"][0]["operation"]["ports"].push_back("8443");
    const auto before = nodes.Counts();
    auto m0 = Scrape(*metrics);
    const ProcStats p0 = ReadProc(weftd.pid());
    const auto t0 = Clock::now();
    if (absl::Status st = WriteManifestFile(manifests, pol->ref.file, cluster.files[pol->ref.file]);
        !st.ok()) {
      problem(std::string(st.message()));
    }
    auto got = nodes.WaitNew(before, which, t0 + timeout);
    std::vector<double> lat;
    for (size_t i : which) {
      if (got[i]) lat.push_back(Secs(got[i]->at - t0));
    }
    // Nodes the policy does not apply to must not get a version: give them time to show up.
    std::this_thread::sleep_for(std::chrono::milliseconds(std::max(1000, 5 * f.debounce_ms)));
    const auto after = nodes.Counts();
    std::vector<std::string> received, unexpected;
    for (size_t i = 0; i < nodes.size(); ++i) {
      if (after[i] == before[i]) continue;
      received.push_back(nodes.at(i).name);
      if (!expected.contains(nodes.at(i).name)) unexpected.push_back(nodes.at(i).name);
    }
    auto m1 = Scrape(*metrics);
    const ProcStats p1 = ReadProc(weftd.pid());
    policy_result = {{"policy", absl::StrCat(pol->ns, "/", pol->name)},
                     {"affected_nodes", expected.size()},
                     {"nodes_received", received.size()},
                     {"unaffected_nodes_received", unexpected},
                     {"seconds_to_affected", Max(lat)},
                     {"weftd_cpu_s", p1.cpu_s - p0.cpu_s}};
    if (m0.ok() && m1.ok() && m1->pushes_delta > m0->pushes_delta) {
      policy_result["delta_bytes_per_node"] =
          (m1->push_bytes - m0->push_bytes) / (m1->pushes_delta - m0->pushes_delta);
    }
    if (lat.size() != which.size()) {
      problem(absl::StrCat("policy change: only ", lat.size(), " of ", which.size(),
                           " affected nodes accepted a new version"));
    }
    if (!unexpected.empty()) {
      problem(
          absl::StrCat("policy change reached unaffected nodes: ", absl::StrJoin(unexpected, ",")));
    }
    std::fprintf(stderr, "policy change %s: %zu affected nodes in %.3f s; %zu nodes received it\n",
                 pol->name.c_str(), expected.size(), Max(lat), received.size());
  }
  result["policy_change"] = policy_result;

  // ---- what a ConfigClient (ztunnel, agent) does per version at this size, on one core: the
  // client's own path (xds::SnapshotSet: apply the delta in place with an undo log, validate the
  // whole snapshot with FromProto, commit).
  {
    pb::ConfigSnapshot snap = nodes.at(0).Current();
    pb::ConfigResponse full;
    full.set_full_snapshot(true);
    full.set_version("1");
    (void)cp::xds::ForEachResource(snap, [&](cp::xds::Key, pb::Resource r) {
      *full.add_upserted() = std::move(r);
      return absl::OkStatus();
    });
    cp::xds::SnapshotSet set;
    if (set.Apply(full).ok() && full.upserted_size() > 0) {
      set.Commit();
      std::vector<double> ms;
      for (int i = 0; i < 3; ++i) {
        pb::ConfigResponse delta;
        delta.set_version(std::to_string(i + 2));
        *delta.add_upserted() = full.upserted(0);
        const auto t = Clock::now();
        if (auto st = set.Apply(delta); !st.ok()) {
          problem(absl::StrCat("delta does not apply: ", std::string(st.message())));
          break;
        }
        auto built = ztunnel::ConfigSnapshot::FromProto(set.snapshot());
        if (!built.ok()) {
          problem(absl::StrCat("node config fails validation: ",
                               std::string(built.status().message())));
          set.Revert();
          break;
        }
        set.Commit();
        ms.push_back(Secs(Clock::now() - t) * 1000);
      }
      if (!ms.empty()) result["configclient_ms_per_version_one_core"] = Median(ms);
    }
  }

  // ---- correctness: streamed config == weftd's own view of the node
  const size_t verify =
      f.verify < 0 ? nodes.size() : std::min(nodes.size(), static_cast<size_t>(f.verify));
  size_t verified = 0;
  for (size_t k = 0; k < verify; ++k) {
    const size_t i = verify == nodes.size() ? k : k * nodes.size() / verify;
    if (absl::Status st = VerifyNode(nodes.at(i), *admin); !st.ok()) {
      problem(std::string(st.message()));
    } else {
      ++verified;
    }
  }
  auto m_end = Scrape(*metrics);
  if (m_end.ok() && m_end->nacks > 0) problem(absl::StrCat(m_end->nacks, " versions were NACKed"));
  result["verify"] = {{"nodes_compared", verify}, {"equal", verified}};

  const ProcStats end = ReadProc(weftd.pid());
  result["weftd"] = {{"cpu_s", end.cpu_s},
                     {"peak_rss_mib", end.hwm_kib / 1024.0},
                     {"rss_mib_at_end", end.rss_kib / 1024.0}};
  weft::log::SetLevel(weft::log::Level::kError);  // the streams' ends are expected now
  nodes.StopAll();
  weftd.Stop();
  result["ok"] = ok;
  result["problems"] = problems;
  result["targets"] = {{"pod_change_to_all_under_1s", !all_times.empty() && Max(all_times) < 1.0},
                       {"weftd_peak_rss_under_300mib", end.hwm_kib / 1024.0 < 300}};

  // ---- report
  auto fmt = [](double v, const char* unit) { return absl::StrFormat("%.3f %s", v, unit); };
  std::string md = absl::StrFormat(
      "## weftd at scale: %d pods, %d services, %d nodes, %d policies (%s, debounce %d ms, "
      "%s clients)\n\n"
      "| figure | value |\n|---|---|\n",
      f.spec.pods, f.spec.services, f.spec.nodes, f.spec.policies,
      f.plaintext ? "plaintext" : "TLS", f.debounce_ms,
      f.config_client ? "ConfigClient" : "stream");
  auto row = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(&md, "| ", k, " | ", v, " |\n");
  };
  row("manifest load (weftd start -> started)", fmt(Secs(t_started - t_spawn), "s"));
  row("first snapshot on all nodes (after subscribe)", fmt(Secs(t_first_all - t_subscribe), "s"));
  row("full snapshot bytes per node", absl::StrFormat("%.0f", full.value("bytes_per_node", 0.0)));
  row(absl::StrCat("one-pod change -> all nodes ACKed (median / max of ", all_times.size(), ")"),
      absl::StrFormat("%.3f s / %.3f s", Median(all_times), Max(all_times)));
  row("one-pod change -> median node", fmt(Median(median_node_times), "s"));
  row("one-pod delta bytes per node", absl::StrFormat("%.0f", Median(delta_bytes)));
  row("weftd CPU per one-pod change (median)", fmt(Median(pod_cpu), "s"));
  if (!policy_result.empty()) {
    row("one-policy change -> affected nodes ACKed",
        absl::StrFormat("%.3f s (%d affected, %d received)",
                        policy_result["seconds_to_affected"].get<double>(),
                        policy_result["affected_nodes"].get<int>(),
                        policy_result["nodes_received"].get<int>()));
  }
  row("weftd CPU time (whole run)", fmt(end.cpu_s, "s"));
  result["stream_reconnects"] = nodes.Reconnects();
  if (nodes.Reconnects() > 0) {
    row("node streams re-opened during the run", absl::StrCat(nodes.Reconnects()));
  }
  row("weftd peak RSS (VmHWM)", absl::StrFormat("%.0f MiB", end.hwm_kib / 1024.0));
  row("nodes verified equal to /config_dump", absl::StrCat(verified, " / ", verify));
  if (result.contains("configclient_ms_per_version_one_core")) {
    row("ConfigClient work per version at this size (one node, one core)",
        absl::StrFormat("%.0f ms", result["configclient_ms_per_version_one_core"].get<double>()));
  }
  row("result", ok ? "ok" : absl::StrCat("FAILED: ", absl::StrJoin(problems, "; ")));

  std::error_code ec;
  std::filesystem::create_directories(f.out, ec);
  std::ofstream(f.out + "/results.json") << result.dump() << "\n";
  std::ofstream(f.out + "/report.md") << md;
  std::printf("%s\nresults: %s/results.json\n", md.c_str(), f.out.c_str());
  if (f.keep || !ok) {
    std::fprintf(stderr, "kept %s (manifests, weftd.log)\n", tmp.c_str());
  } else {
    std::filesystem::remove_all(tmp, ec);
  }
  return ok ? 0 : 1;
}

}  // namespace
}  // namespace weft::bench::cpscale

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  auto flags = weft::bench::cpscale::ParseFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "weft-cp-bench: %s\n\n%s", std::string(flags.status().message()).c_str(),
                 weft::bench::cpscale::kUsage);
    return 2;
  }
  return weft::bench::cpscale::Run(*flags);
}
