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

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "bench/cpscale/manifests.h"
#include "common/file.h"
#include "common/log.h"
#include "common/net.h"
#include "common/scrape/scrape.h"
#include "common/status.h"
#include "ztunnel/xds/client.h"
#include "config/xds/resources.h"
#include "nlohmann/json.hpp"
#include "weft/config/v1/config.grpc.pb.h"
#include "ztunnel/state/snapshot.h"

extern char** environ;

namespace weft::bench::cpscale {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
using ztunnel::ConfigClient;
using ztunnel::ConfigClientOptions;

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

// ---- weftd, the child process

struct ProcStats {
  double cpu_s = 0;     // utime + stime
  int64_t rss_kib = 0;  // VmRSS
  int64_t hwm_kib = 0;  // VmHWM: peak RSS
};

ProcStats ReadProc(pid_t pid) {
  ProcStats s;
  const std::string stat = ReadFile(absl::StrCat("/proc/", pid, "/stat")).value_or("");
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
  std::istringstream status(ReadFile(absl::StrCat("/proc/", pid, "/status")).value_or(""));
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
      std::istringstream in(ReadFile(log_).value_or(""));
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
    std::string text = ReadFile(log_).value_or("");
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
      so.pem_root_certs = ReadFile(opts_.root_ca_file).value_or("");
      if (so.pem_root_certs.empty()) {
        return absl::FailedPreconditionError(absl::StrCat("cannot read ", opts_.root_ca_file));
      }
      creds = grpc::SslCredentials(so);
    }
    std::string token(absl::StripAsciiWhitespace(ReadFile(opts_.bearer_token_file).value_or("")));
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
    config::xds::ResourceSet set;
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
          auto key = config::xds::KeyOf(r);
          if (key.ok()) resources_[*key] = r.SerializeAsString();
        }
        for (const pb::ResourceKey& k : resp.removed()) {
          auto key = config::xds::KeyFromProto(k);
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
  std::map<config::xds::Key, std::string> resources_;
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
  CLI::App app("weft-cp-bench", "weft-cp-bench");
  app.set_help_flag();  // --help prints kUsage
  bool help = false;
  app.add_flag("-h,--help", help);
  for (auto [flag, v] :
       std::vector<std::pair<const char*, int*>>{{"--pods", &f.spec.pods},
                                                 {"--services", &f.spec.services},
                                                 {"--nodes", &f.spec.nodes},
                                                 {"--policies", &f.spec.policies},
                                                 {"--namespaces", &f.spec.namespaces},
                                                 {"--changes", &f.changes},
                                                 {"--debounce-ms", &f.debounce_ms},
                                                 {"--verify", &f.verify},
                                                 {"--timeout-s", &f.timeout_s}}) {
    app.add_option(flag, *v);
  }
  int seed = static_cast<int>(f.spec.seed);
  app.add_option("--seed", seed);
  app.add_option("--out", f.out);
  app.add_option("--weftd", f.weftd);
  app.add_flag("--plaintext", f.plaintext);
  app.add_flag("--keep", f.keep);
  std::string client = "stream";
  app.add_option("--client", client)->check(CLI::IsMember({"stream", "configclient"}));
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return absl::InvalidArgumentError(e.what());
  }
  if (help) {
    std::fputs(kUsage, stdout);
    std::exit(0);
  }
  f.spec.seed = static_cast<uint64_t>(seed);
  f.config_client = client == "configclient";
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
  pb::ConfigSnapshot want = config::xds::Canonicalize(view, "");
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

// One run of the benchmark, phase by phase: each phase appends its figures to `result_` and its
// failures to `problems_`; a phase that cannot go on returns an error that ends the run.
class Run {
 public:
  explicit Run(const Flags& f) : f_(f), timeout_(std::chrono::seconds(f.timeout_s)) {}
  int Main();

 private:
  void Problem(std::string p) {
    std::fprintf(stderr, "weft-cp-bench: %s\n", p.c_str());
    problems_.push_back(std::move(p));
    ok_ = false;
  }
  absl::Status Prepare();
  absl::Status StartWeftd();
  absl::Status Subscribe();
  bool PodChange(int c, std::mt19937_64& rng, json& runs);
  void PodChanges();
  void PolicyChange();
  void ConfigClientCost();
  void VerifyNodes();
  std::string Report() const;

  const Flags& f_;
  const std::chrono::seconds timeout_;
  json result_;
  bool ok_ = true;
  std::vector<std::string> problems_;
  std::string tmp_, manifests_, state_;
  Cluster cluster_;
  Weftd weftd_;
  SockAddr admin_, metrics_;
  int grpc_port_ = 0;
  ProcStats after_load_, end_;
  Nodes nodes_;
  std::vector<size_t> all_;  // every node's index
  Clock::time_point t_spawn_, t_started_, t_subscribe_, t_first_all_;
  json full_, policy_result_ = json::object();
  std::vector<double> all_times_, median_node_times_, delta_bytes_, pod_cpu_;
  size_t verify_ = 0, verified_ = 0;
};

// The work dir and the generated cluster's manifests.
absl::Status Run::Prepare() {
  char tmpl[] = "/tmp/weft-cpscale-XXXXXX";
  if (mkdtemp(tmpl) == nullptr)
    return absl::InternalError(absl::StrCat("mkdtemp: ", std::strerror(errno)));
  tmp_ = tmpl;
  manifests_ = tmp_ + "/manifests";
  state_ = tmp_ + "/state";
  mkdir(manifests_.c_str(), 0755);
  mkdir(state_.c_str(), 0700);
  std::fprintf(stderr, "generating %d pods, %d services, %d policies over %d nodes in %s\n",
               f_.spec.pods, f_.spec.services, f_.spec.policies, f_.spec.nodes, manifests_.c_str());
  cluster_ = Generate(f_.spec);
  WEFT_ASSIGN_OR_RETURN(size_t written, WriteCluster(cluster_, manifests_));
  result_["manifests"] = {{"files", cluster_.files.size()},
                          {"bytes", written},
                          {"pods", cluster_.pods.size()},
                          {"policies", cluster_.policies.size()}};
  return absl::OkStatus();
}

// weftd as a child, until it has loaded every manifest.
absl::Status Run::StartWeftd() {
  std::vector<std::string> args = {"--manifests",   manifests_,
                                   "--state-dir",   state_,
                                   "--grpc",        "127.0.0.1:0",
                                   "--admin",       "127.0.0.1:0",
                                   "--metrics",     "127.0.0.1:0",
                                   "--readiness",   "127.0.0.1:0",
                                   "--debounce-ms", std::to_string(f_.debounce_ms),
                                   "--node-tokens", absl::StrJoin(cluster_.nodes, ",")};
  if (f_.plaintext) args.push_back("--plaintext");
  t_spawn_ = Clock::now();
  WEFT_RETURN_IF_ERROR(weftd_.Start(f_.weftd, args, tmp_ + "/weftd.log"));
  WEFT_ASSIGN_OR_RETURN(json started, weftd_.WaitStarted(timeout_));
  t_started_ = Clock::now();
  grpc_port_ = started["grpc_port"].get<int>();
  auto admin = SockAddr::Parse(started["admin"].get<std::string>());
  auto metrics = SockAddr::Parse(started["metrics"].get<std::string>());
  if (!admin.ok() || !metrics.ok()) {
    return absl::InternalError(absl::StrCat("cannot read weftd's addresses from ", started.dump()));
  }
  admin_ = *admin;
  metrics_ = *metrics;
  after_load_ = ReadProc(weftd_.pid());
  result_["load"] = {{"seconds", Secs(t_started_ - t_spawn_)},
                     {"weftd_cpu_s", after_load_.cpu_s},
                     {"weftd_rss_mib", after_load_.rss_kib / 1024.0}};
  std::fprintf(stderr, "weftd loaded the manifests in %.2f s (CPU %.2f s, RSS %.0f MiB)\n",
               Secs(t_started_ - t_spawn_), after_load_.cpu_s, after_load_.rss_kib / 1024.0);
  return absl::OkStatus();
}

// Every node subscribes; the first (full) snapshot's time and size.
absl::Status Run::Subscribe() {
  for (const std::string& node : cluster_.nodes) {
    ConfigClientOptions o;
    o.target = absl::StrCat("127.0.0.1:", grpc_port_);
    o.node = node;
    o.component = "ztunnel";
    if (!f_.plaintext) {
      o.root_ca_file = state_ + "/ca/root-cert.pem";
      o.tls_server_name = "localhost";
    }
    o.bearer_token_file = absl::StrCat(state_, "/tokens/", node, ".token");
    nodes_.Add(node, std::move(o), f_.config_client);
  }
  t_subscribe_ = Clock::now();
  const double client_cpu0 = SelfCpu();
  WEFT_RETURN_IF_ERROR(nodes_.StartAll());
  all_.resize(nodes_.size());
  for (size_t i = 0; i < all_.size(); ++i) all_[i] = i;
  std::vector<size_t> zero(nodes_.size(), 0);
  auto first = nodes_.WaitNew(zero, all_, Clock::now() + timeout_);
  t_first_all_ = t_subscribe_;
  size_t got_first = 0;
  std::vector<double> full_bytes;
  for (const auto& t : first) {
    if (!t) continue;
    ++got_first;
    t_first_all_ = std::max(t_first_all_, t->at);
    if (t->bytes > 0) full_bytes.push_back(static_cast<double>(t->bytes));
  }
  if (got_first != nodes_.size()) {
    Problem(absl::StrCat("only ", got_first, " of ", nodes_.size(),
                         " nodes received a first snapshot within ", f_.timeout_s, " s"));
  }
  std::this_thread::sleep_for(std::chrono::seconds(1));  // last ACKs reach weftd; settle
  auto m_full = Scrape(metrics_);
  const ProcStats after_full = ReadProc(weftd_.pid());
  full_ = {{"nodes_with_snapshot", got_first},
           {"seconds_after_subscribe", Secs(t_first_all_ - t_subscribe_)},
           {"seconds_after_weftd_start", Secs(t_first_all_ - t_spawn_)},
           {"bench_clients_cpu_s", SelfCpu() - client_cpu0},
           {"weftd_cpu_s", after_full.cpu_s - after_load_.cpu_s},
           {"weftd_rss_mib", after_full.rss_kib / 1024.0}};
  if (!full_bytes.empty()) {  // exact, per node (stream client)
    full_["bytes_per_node"] = Median(full_bytes);
    full_["bytes_per_node_min"] = *std::min_element(full_bytes.begin(), full_bytes.end());
    full_["bytes_per_node_max"] = Max(full_bytes);
  } else if (m_full.ok() && m_full->pushes_full > 0) {  // weftd's average
    full_["bytes_per_node"] = m_full->push_bytes / m_full->pushes_full;
  }
  if (m_full.ok()) {
    full_["weftd_bytes_total"] = m_full->push_bytes;
    full_["weftd_full_pushes"] = m_full->pushes_full;
  }
  result_["full_snapshot"] = full_;
  std::fprintf(stderr, "%zu nodes have their first snapshot %.2f s after subscribing\n", got_first,
               Secs(t_first_all_ - t_subscribe_));
  return absl::OkStatus();
}

// One pod's label rewritten in its manifest file: the time until every node ACKed the new
// version, its delta's size, and (on a few nodes) that the new label arrived. False when the
// manifest could not be written (nothing after it can be timed).
bool Run::PodChange(int c, std::mt19937_64& rng, json& runs) {
  GenPod& pod = cluster_.pods[rng() % cluster_.pods.size()];
  json& obj = cluster_.At(pod.ref);
  const std::string rev = absl::StrCat("r", c + 1);
  obj["metadata"]["labels"]["weft-bench/rev"] = rev;
  const auto before = nodes_.Counts();
  auto m0 = Scrape(metrics_);
  const ProcStats p0 = ReadProc(weftd_.pid());
  const double cc0 = SelfCpu();
  const auto t0 = Clock::now();
  if (absl::Status st = WriteManifestFile(manifests_, pod.ref.file, cluster_.files[pod.ref.file]);
      !st.ok()) {
    Problem(std::string(st.message()));
    return false;
  }
  auto got = nodes_.WaitNew(before, all_, t0 + timeout_);
  std::vector<double> lat;
  std::vector<double> node_bytes;
  for (const auto& t : got) {
    if (t) lat.push_back(Secs(t->at - t0));
    if (t && t->bytes > 0) node_bytes.push_back(static_cast<double>(t->bytes));
  }
  const double cc1 = SelfCpu();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // ACKs and counters settle
  auto m1 = Scrape(metrics_);
  const ProcStats p1 = ReadProc(weftd_.pid());
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
    delta_bytes_.push_back(Median(node_bytes));
  } else if (m0.ok() && m1.ok() && m1->pushes_delta > m0->pushes_delta) {
    const double bytes = (m1->push_bytes - m0->push_bytes) / (m1->pushes_delta - m0->pushes_delta);
    one["delta_bytes_per_node"] = bytes;
    delta_bytes_.push_back(bytes);
  }
  if (m0.ok() && m1.ok()) one["deltas_sent"] = m1->pushes_delta - m0->pushes_delta;
  runs.push_back(one);
  pod_cpu_.push_back(p1.cpu_s - p0.cpu_s);
  if (lat.size() != nodes_.size()) {
    Problem(absl::StrCat("pod change ", c + 1, ": only ", lat.size(), " of ", nodes_.size(),
                         " nodes accepted a new version within ", f_.timeout_s, " s"));
    return true;
  }
  all_times_.push_back(Max(lat));
  median_node_times_.push_back(Median(lat));
  std::fprintf(stderr, "pod change %d (%s/%s): all %zu nodes in %.3f s (median node %.3f s)\n",
               c + 1, pod.ns.c_str(), pod.name.c_str(), lat.size(), Max(lat), Median(lat));
  // Content check on a few nodes: the new label is there.
  for (size_t i = 0; i < nodes_.size(); i += std::max<size_t>(1, nodes_.size() / 4)) {
    pb::ConfigSnapshot snap = nodes_.at(i).Current();
    bool found = false;
    for (const auto& w : snap.workloads()) {
      if (w.namespace_() == pod.ns && w.name() == pod.name) {
        auto it = w.labels().find("weft-bench/rev");
        found = it != w.labels().end() && it->second == rev;
      }
    }
    if (!found) {
      Problem(absl::StrCat("pod change ", c + 1, ": node ", nodes_.at(i).name,
                           " accepted a version without the changed label"));
    }
  }
  return true;
}

void Run::PodChanges() {
  std::mt19937_64 rng(f_.spec.seed * 7919 + 1);
  json runs = json::array();
  for (int c = 0; c < f_.changes && PodChange(c, rng, runs); ++c) {
  }
  result_["pod_change"] = {{"runs", runs},
                           {"seconds_to_all_median", Median(all_times_)},
                           {"seconds_to_all_max", Max(all_times_)},
                           {"seconds_median_node_median", Median(median_node_times_)},
                           {"delta_bytes_per_node_median", Median(delta_bytes_)}};
}

// One policy change: an AuthorizationPolicy with a selector gets one more port; it must reach
// the nodes running its selected pods and no other.
void Run::PolicyChange() {
  const GenPolicy* pol = nullptr;
  for (const GenPolicy& p : cluster_.policies) {
    if (p.kind == "AuthorizationPolicy" && !p.app.empty() &&
        !cluster_.NodesOf(p.ns, p.app).empty()) {
      pol = &p;
      break;
    }
  }
  if (pol == nullptr) {
    result_["policy_change"] = policy_result_;
    return;
  }
  const std::set<std::string> expected = cluster_.NodesOf(pol->ns, pol->app);
  std::vector<size_t> which;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (expected.contains(nodes_.at(i).name)) which.push_back(i);
  }
  json& obj = cluster_.At(pol->ref);
  obj["spec"]["rules"][0]["to"][0]["operation"]["ports"].push_back("8443");
  const auto before = nodes_.Counts();
  auto m0 = Scrape(metrics_);
  const ProcStats p0 = ReadProc(weftd_.pid());
  const auto t0 = Clock::now();
  if (absl::Status st = WriteManifestFile(manifests_, pol->ref.file, cluster_.files[pol->ref.file]);
      !st.ok()) {
    Problem(std::string(st.message()));
  }
  auto got = nodes_.WaitNew(before, which, t0 + timeout_);
  std::vector<double> lat;
  for (size_t i : which) {
    if (got[i]) lat.push_back(Secs(got[i]->at - t0));
  }
  // Nodes the policy does not apply to must not get a version: give them time to show up.
  std::this_thread::sleep_for(std::chrono::milliseconds(std::max(1000, 5 * f_.debounce_ms)));
  const auto after = nodes_.Counts();
  std::vector<std::string> received, unexpected;
  for (size_t i = 0; i < nodes_.size(); ++i) {
    if (after[i] == before[i]) continue;
    received.push_back(nodes_.at(i).name);
    if (!expected.contains(nodes_.at(i).name)) unexpected.push_back(nodes_.at(i).name);
  }
  auto m1 = Scrape(metrics_);
  const ProcStats p1 = ReadProc(weftd_.pid());
  policy_result_ = {{"policy", absl::StrCat(pol->ns, "/", pol->name)},
                    {"affected_nodes", expected.size()},
                    {"nodes_received", received.size()},
                    {"unaffected_nodes_received", unexpected},
                    {"seconds_to_affected", Max(lat)},
                    {"weftd_cpu_s", p1.cpu_s - p0.cpu_s}};
  if (m0.ok() && m1.ok() && m1->pushes_delta > m0->pushes_delta) {
    policy_result_["delta_bytes_per_node"] =
        (m1->push_bytes - m0->push_bytes) / (m1->pushes_delta - m0->pushes_delta);
  }
  if (lat.size() != which.size()) {
    Problem(absl::StrCat("policy change: only ", lat.size(), " of ", which.size(),
                         " affected nodes accepted a new version"));
  }
  if (!unexpected.empty()) {
    Problem(
        absl::StrCat("policy change reached unaffected nodes: ", absl::StrJoin(unexpected, ",")));
  }
  std::fprintf(stderr, "policy change %s: %zu affected nodes in %.3f s; %zu nodes received it\n",
               pol->name.c_str(), expected.size(), Max(lat), received.size());
  result_["policy_change"] = policy_result_;
}

// What a ConfigClient (ztunnel, agent) does per version at this size, on one core: the client's
// own path (xds::SnapshotSet: apply the delta in place with an undo log, validate the whole
// snapshot with FromProto, commit).
void Run::ConfigClientCost() {
  pb::ConfigSnapshot snap = nodes_.at(0).Current();
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  full.set_version("1");
  (void)config::xds::ForEachResource(snap, [&](config::xds::Key, pb::Resource r) {
    *full.add_upserted() = std::move(r);
    return absl::OkStatus();
  });
  config::xds::SnapshotSet set;
  if (!set.Apply(full).ok() || full.upserted_size() == 0) return;
  set.Commit();
  std::vector<double> ms;
  for (int i = 0; i < 3; ++i) {
    pb::ConfigResponse delta;
    delta.set_version(std::to_string(i + 2));
    *delta.add_upserted() = full.upserted(0);
    const auto t = Clock::now();
    if (auto st = set.Apply(delta); !st.ok()) {
      Problem(absl::StrCat("delta does not apply: ", std::string(st.message())));
      break;
    }
    auto built = ztunnel::ConfigSnapshot::FromProto(set.snapshot());
    if (!built.ok()) {
      Problem(
          absl::StrCat("node config fails validation: ", std::string(built.status().message())));
      set.Revert();
      break;
    }
    set.Commit();
    ms.push_back(Secs(Clock::now() - t) * 1000);
  }
  if (!ms.empty()) result_["configclient_ms_per_version_one_core"] = Median(ms);
}

// Correctness: the streamed config equals weftd's own view of the node, no version NACKed.
void Run::VerifyNodes() {
  verify_ = f_.verify < 0 ? nodes_.size() : std::min(nodes_.size(), static_cast<size_t>(f_.verify));
  for (size_t k = 0; k < verify_; ++k) {
    const size_t i = verify_ == nodes_.size() ? k : k * nodes_.size() / verify_;
    if (absl::Status st = VerifyNode(nodes_.at(i), admin_); !st.ok()) {
      Problem(std::string(st.message()));
    } else {
      ++verified_;
    }
  }
  auto m_end = Scrape(metrics_);
  if (m_end.ok() && m_end->nacks > 0) Problem(absl::StrCat(m_end->nacks, " versions were NACKed"));
  result_["verify"] = {{"nodes_compared", verify_}, {"equal", verified_}};
}

std::string Run::Report() const {
  auto fmt = [](double v, const char* unit) { return absl::StrFormat("%.3f %s", v, unit); };
  std::string md = absl::StrFormat(
      "## weftd at scale: %d pods, %d services, %d nodes, %d policies (%s, debounce %d ms, "
      "%s clients)\n\n"
      "| figure | value |\n|---|---|\n",
      f_.spec.pods, f_.spec.services, f_.spec.nodes, f_.spec.policies,
      f_.plaintext ? "plaintext" : "TLS", f_.debounce_ms,
      f_.config_client ? "ConfigClient" : "stream");
  auto row = [&](const std::string& k, const std::string& v) {
    absl::StrAppend(&md, "| ", k, " | ", v, " |\n");
  };
  row("manifest load (weftd start -> started)", fmt(Secs(t_started_ - t_spawn_), "s"));
  row("first snapshot on all nodes (after subscribe)", fmt(Secs(t_first_all_ - t_subscribe_), "s"));
  row("full snapshot bytes per node", absl::StrFormat("%.0f", full_.value("bytes_per_node", 0.0)));
  row(absl::StrCat("one-pod change -> all nodes ACKed (median / max of ", all_times_.size(), ")"),
      absl::StrFormat("%.3f s / %.3f s", Median(all_times_), Max(all_times_)));
  row("one-pod change -> median node", fmt(Median(median_node_times_), "s"));
  row("one-pod delta bytes per node", absl::StrFormat("%.0f", Median(delta_bytes_)));
  row("weftd CPU per one-pod change (median)", fmt(Median(pod_cpu_), "s"));
  if (!policy_result_.empty()) {
    row("one-policy change -> affected nodes ACKed",
        absl::StrFormat("%.3f s (%d affected, %d received)",
                        policy_result_["seconds_to_affected"].get<double>(),
                        policy_result_["affected_nodes"].get<int>(),
                        policy_result_["nodes_received"].get<int>()));
  }
  row("weftd CPU time (whole run)", fmt(end_.cpu_s, "s"));
  if (result_.value("stream_reconnects", 0) > 0) {
    row("node streams re-opened during the run",
        absl::StrCat(result_["stream_reconnects"].get<int>()));
  }
  row("weftd peak RSS (VmHWM)", absl::StrFormat("%.0f MiB", end_.hwm_kib / 1024.0));
  row("nodes verified equal to /config_dump", absl::StrCat(verified_, " / ", verify_));
  if (result_.contains("configclient_ms_per_version_one_core")) {
    row("ConfigClient work per version at this size (one node, one core)",
        absl::StrFormat("%.0f ms", result_["configclient_ms_per_version_one_core"].get<double>()));
  }
  row("result", ok_ ? "ok" : absl::StrCat("FAILED: ", absl::StrJoin(problems_, "; ")));
  return md;
}

int Run::Main() {
  weft::log::SetLevel(weft::log::Level::kWarn);  // 100 clients' info lines are noise here
  result_["params"] = {{"pods", f_.spec.pods},
                       {"services", f_.spec.services},
                       {"nodes", f_.spec.nodes},
                       {"policies", f_.spec.policies},
                       {"namespaces", f_.spec.namespaces},
                       {"changes", f_.changes},
                       {"tls", !f_.plaintext},
                       {"client", f_.config_client ? "configclient" : "stream"},
                       {"debounce_ms", f_.debounce_ms},
                       {"seed", f_.spec.seed}};
  result_["machine"] = {{"nproc", std::thread::hardware_concurrency()},
                        {"loadavg_at_start", ReadFile("/proc/loadavg").value_or("")}};
  absl::Status st = Prepare();
  if (st.ok()) st = StartWeftd();
  if (st.ok()) st = Subscribe();
  if (!st.ok()) {
    std::fprintf(stderr, "weft-cp-bench: %s\n", std::string(st.message()).c_str());
    return 1;
  }
  PodChanges();
  PolicyChange();
  ConfigClientCost();
  VerifyNodes();

  end_ = ReadProc(weftd_.pid());
  result_["weftd"] = {{"cpu_s", end_.cpu_s},
                      {"peak_rss_mib", end_.hwm_kib / 1024.0},
                      {"rss_mib_at_end", end_.rss_kib / 1024.0}};
  weft::log::SetLevel(weft::log::Level::kError);  // the streams' ends are expected now
  nodes_.StopAll();
  weftd_.Stop();
  result_["ok"] = ok_;
  result_["problems"] = problems_;
  result_["targets"] = {
      {"pod_change_to_all_under_1s", !all_times_.empty() && Max(all_times_) < 1.0},
      {"weftd_peak_rss_under_300mib", end_.hwm_kib / 1024.0 < 300}};
  result_["stream_reconnects"] = nodes_.Reconnects();
  const std::string md = Report();

  std::error_code ec;
  std::filesystem::create_directories(f_.out, ec);
  std::ofstream(f_.out + "/results.json") << result_.dump() << "\n";
  std::ofstream(f_.out + "/report.md") << md;
  std::printf("%s\nresults: %s/results.json\n", md.c_str(), f_.out.c_str());
  if (f_.keep || !ok_) {
    std::fprintf(stderr, "kept %s (manifests, weftd.log)\n", tmp_.c_str());
  } else {
    std::filesystem::remove_all(tmp_, ec);
  }
  return ok_ ? 0 : 1;
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
  return weft::bench::cpscale::Run(*flags).Main();
}
