#include "controlplane/xds/server.h"

#include <grpcpp/grpcpp.h>
#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <mutex>
#include <random>
#include <thread>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "common/status.h"
#include "config/xds/resources.h"
#include "weft/config/v1/config.grpc.pb.h"

namespace weft::cp {
namespace xds = ::weft::config::xds;
namespace {

namespace pb = ::weft::config::v1;
using xds::Key;
using Clock = std::chrono::steady_clock;
constexpr const char* kScope = "xds";

// weft_xds_push_ack_seconds: from a millisecond on loopback to the 30 s a slow node may need.
const prometheus::Histogram::BucketBoundaries& PushAckBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};
  return kBuckets;
}

// One resource as the server sends it: key and deterministic bytes, computed once and shared
// by every node view that holds the resource (a view is then one pointer per resource, which
// is what keeps 100 views of 11,000 resources small).
struct Entry {
  Key key;
  std::string bytes;
};
using EntryPtr = std::shared_ptr<const Entry>;

// A node's view as the server diffs it: entries plus the globals.
struct View {
  pb::ConfigResponse globals;
  std::string globals_bytes;
  std::vector<EntryPtr> resources;  // sorted by key, unique keys
};
using ViewPtr = std::shared_ptr<const View>;

bool SameBytes(const EntryPtr& a, const EntryPtr& b) {
  return a == b || a->bytes == b->bytes;
}

bool SameContent(const View& a, const View& b) {
  if (a.globals_bytes != b.globals_bytes || a.resources.size() != b.resources.size()) return false;
  for (size_t i = 0; i < a.resources.size(); ++i) {
    if (a.resources[i]->key != b.resources[i]->key || !SameBytes(a.resources[i], b.resources[i])) {
      return false;
    }
  }
  return true;
}

// ConfigResponse.upserted from an entry's bytes without parsing them: a repeated message field
// on the wire is (tag, length, bytes) per element, which is exactly how an unknown
// length-delimited field with the same number is written. The client parses them as upserted
// Resources. Saves a parse per resource per node and keeps the pending response compact.
void AddUpserted(pb::ConfigResponse* out, const Entry& e) {
  out->GetReflection()->MutableUnknownFields(out)->AddLengthDelimited(
      pb::ConfigResponse::kUpsertedFieldNumber, e.bytes);
}

std::string NewNonce() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return absl::StrFormat("%016x", rng());
}

}  // namespace

class XdsStream;

struct ConfigDiscoveryServer::Core : std::enable_shared_from_this<Core> {
  Core(Authenticator a, XdsServerOptions o);

  // Push thread.
  void Run();
  ViewPtr BuildView(const std::string& node);
  // Drops cached bytes that no view references any more.
  void SweepInterned() {
    absl::erase_if(interned, [](const auto& kv) { return kv.second.use_count() == 1; });
    absl::erase_if(by_ptr, [](const auto& kv) { return kv.second.owner.expired(); });
  }

  // Full snapshots are the big responses (the whole view, megabytes at scale); when many nodes
  // (re)connect at once, writing them all at the same time would hold every one in memory
  // together. At most kFullSlots are built and written at a time; the rest wait in order.
  static constexpr int kFullSlots = 8;
  bool AcquireFullSlot(const std::shared_ptr<XdsStream>& s) {
    std::lock_guard<std::mutex> l(full_mu);
    if (full_in_flight < kFullSlots) {
      ++full_in_flight;
      return true;
    }
    full_waiting.push_back(s);
    return false;
  }
  void ReleaseFullSlot();  // wakes the next waiting stream (call without any stream lock)

  void Subscribe(const std::shared_ptr<XdsStream>& s, const std::string& node);
  void Unregister(uint64_t id, const std::string& node, bool subscribed);
  template <typename F>
  void UpdateStatus(const std::string& node, const std::string& component, F&& f) {
    std::lock_guard<std::mutex> l(status_mu);
    f(status[{node, component}]);
  }

  ViewProvider views;
  SharedViewProvider shared_views;  // exactly one of the two is set
  Authenticator auth;
  XdsServerOptions opts;
  std::shared_ptr<prometheus::Registry> registry;
  prometheus::Gauge* connected_nodes;
  prometheus::Gauge* connected_streams;
  prometheus::Counter* pushes_full;
  prometheus::Counter* pushes_delta;
  prometheus::Counter* acks;
  prometheus::Counter* nacks;
  prometheus::Counter* push_bytes;
  prometheus::Family<prometheus::Counter>* auth_failures;
  prometheus::Family<prometheus::Counter>* bad_requests;
  prometheus::Counter* view_errors;
  prometheus::Family<prometheus::Histogram>* push_ack_seconds;

  std::atomic<uint64_t> version_counter{0};
  std::atomic<uint64_t> next_stream_id{1};

  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  std::map<uint64_t, std::shared_ptr<XdsStream>> streams;  // all open streams
  std::map<std::string, std::set<uint64_t>> by_node;       // subscribed streams per node
  // Subscribed streams waiting for their first view, with their node.
  std::vector<std::pair<std::string, std::shared_ptr<XdsStream>>> fresh;
  std::set<std::string> dirty;
  bool dirty_all = false;
  Clock::time_point first_dirty, last_notify;
  std::thread pusher;

  mutable std::mutex status_mu;
  std::map<std::pair<std::string, std::string>, StreamStatus> status;

  // Leaf lock: never held while calling into a stream.
  std::mutex full_mu;
  int full_in_flight = 0;
  std::deque<std::weak_ptr<XdsStream>> full_waiting;

  // Push thread only. `interned` keys are views of the entries' own bytes.
  absl::flat_hash_map<std::string_view, EntryPtr> interned;
  struct CachedResource {
    std::weak_ptr<const pb::Resource> owner;
    EntryPtr entry;
    absl::Status error;  // no key: dropped from every view
  };
  absl::flat_hash_map<const pb::Resource*, CachedResource> by_ptr;
  // The previous shared view's input and its entries (same positions), of which the first
  // prev_ordered are in strict key order with none dropped: consecutive nodes' views mostly
  // start with the same objects (every workload and service), reused with a pointer compare.
  std::vector<std::shared_ptr<const pb::Resource>> prev_input;
  std::vector<EntryPtr> prev_entries;
  size_t prev_ordered = 0;
  std::set<std::string> warned_uncarried;
};

// One Stream RPC. Owned by itself (self_) from creation until OnDone; the push thread holds
// extra references while it updates the stream.
class XdsStream : public grpc::ServerBidiReactor<pb::ConfigRequest, pb::ConfigResponse> {
 public:
  XdsStream(std::shared_ptr<ConfigDiscoveryServer::Core> core, grpc::CallbackServerContext* ctx)
      : core_(std::move(core)), id_(core_->next_stream_id++), peer_(ctx->peer()) {}

  uint64_t id() const { return id_; }

  void Start(std::shared_ptr<XdsStream> self, grpc::CallbackServerContext* ctx) {
    self_ = std::move(self);
    if (core_->auth) {
      Metadata md;
      for (const auto& [k, v] : ctx->client_metadata()) {
        md.emplace(std::string(k.data(), k.size()), std::string(v.data(), v.size()));
      }
      md.emplace(":peer", peer_);  // the caller's address (clients cannot send ':' keys)
      absl::StatusOr<std::string> node;
      try {
        node = core_->auth(md);
      } catch (const std::exception& e) {
        node = absl::InternalError(absl::StrCat("authenticator threw: ", e.what()));
      }
      if (!node.ok()) {
        core_->auth_failures->Add({{"reason", "unauthenticated"}}).Increment();
        LOG_WARN(kScope, "config stream refused: authentication failed",
                 {{"peer", peer_}, {"error", std::string(node.status().message())}});
        std::unique_lock<std::mutex> l(mu_);
        FinishLocked(
            grpc::Status(grpc::StatusCode::UNAUTHENTICATED, std::string(node.status().message())),
            l);
        return;
      }
      authed_node_ = *node;
    }
    std::lock_guard<std::mutex> l(mu_);
    StartRead(&in_);
  }

  void Reject(std::shared_ptr<XdsStream> self, grpc::Status st) {
    self_ = std::move(self);
    End(std::move(st));
  }

  // A full-snapshot slot may be free now.
  void Kick() {
    std::lock_guard<std::mutex> l(mu_);
    waiting_full_ = false;
    MaybeSendLocked();
  }

  // A new view for this node (push thread).
  void Update(ViewPtr v) {
    std::lock_guard<std::mutex> l(mu_);
    latest_ = std::move(v);
    ++latest_gen_;
    MaybeSendLocked();
  }

  void End(grpc::Status st) {
    std::unique_lock<std::mutex> l(mu_);
    FinishLocked(std::move(st), l);
  }

  void OnReadDone(bool ok) override {
    std::unique_lock<std::mutex> l(mu_);
    if (!ok) {
      if (subscribed_) {
        LOG_INFO(kScope, "config stream closed",
                 {{"node", node_}, {"component", component_}, {"peer", peer_}});
      }
      FinishLocked(grpc::Status::OK, l);
      return;
    }
    if (!subscribed_) {
      if (!HandleSubscribe(l)) return;
    } else {
      HandleAck();
    }
    if (!finished_ && !finish_pending_) StartRead(&in_);
  }

  void OnWriteDone(bool ok) override {
    std::unique_lock<std::mutex> l(mu_);
    write_in_flight_ = false;
    // The response is on its way; don't keep megabytes of it per stream until the next one.
    pb::ConfigResponse().Swap(&out_);
    // Given back once this stream's lock is released (Finish may end the stream, so keep core).
    std::shared_ptr<ConfigDiscoveryServer::Core> release_to;
    if (holds_full_slot_) {
      holds_full_slot_ = false;
      release_to = core_;
    }
    if (!ok) {
      // The client went away; the pending read fails too and ends the stream. Nothing more to
      // write.
      finish_pending_ = finish_pending_ || !finished_;
      if (!finished_) finish_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE, "write failed");
    }
    if (finish_pending_ && !finished_) {
      finished_ = true;
      grpc::Status st = finish_status_;
      l.unlock();
      Finish(st);
      if (release_to) release_to->ReleaseFullSlot();
      return;
    }
    MaybeSendLocked();
    l.unlock();
    if (release_to) release_to->ReleaseFullSlot();
  }

  void OnDone() override {
    std::shared_ptr<XdsStream> keep = std::move(self_);
    bool subscribed;
    {
      std::lock_guard<std::mutex> l(mu_);
      subscribed = subscribed_;
    }
    if (subscribed) {
      core_->UpdateStatus(node_, component_, [&](StreamStatus& s) {
        if (s.peer == peer_) s.connected = false;
      });
    }
    core_->Unregister(id_, node_, subscribed);
  }

 private:
  // Called with mu_ held through `l`; may release it (Finish may run OnDone inline).
  void FinishLocked(grpc::Status st, std::unique_lock<std::mutex>& l) {
    if (finished_ || finish_pending_) return;
    if (write_in_flight_) {
      finish_pending_ = true;
      finish_status_ = std::move(st);
      return;
    }
    finished_ = true;
    l.unlock();
    Finish(st);
    l.lock();
  }

  bool HandleSubscribe(std::unique_lock<std::mutex>& l) {
    const pb::ConfigRequest& r = in_;
    auto refuse = [&](grpc::StatusCode code, std::string reason, std::string msg) {
      if (code == grpc::StatusCode::PERMISSION_DENIED) {
        core_->auth_failures->Add({{"reason", reason}}).Increment();
      } else {
        core_->bad_requests->Add({{"reason", reason}}).Increment();
      }
      LOG_WARN(kScope, "config stream refused",
               {{"peer", peer_}, {"node", r.node()}, {"reason", reason}, {"error", msg}});
      FinishLocked(grpc::Status(code, msg), l);
      return false;
    };
    if (r.node().empty() || r.component().empty()) {
      return refuse(grpc::StatusCode::INVALID_ARGUMENT, "missing_node",
                    "the first ConfigRequest must name the node and the component (\"ztunnel\" "
                    "or \"agent\")");
    }
    if (core_->auth && r.node() != authed_node_) {
      return refuse(grpc::StatusCode::PERMISSION_DENIED, "node_mismatch",
                    absl::StrCat("credential belongs to node \"", authed_node_,
                                 "\", not to the requested node \"", r.node(), "\""));
    }
    node_ = r.node();
    component_ = r.component();
    subscribed_ = true;
    LOG_INFO(kScope, "config stream opened",
             {{"node", node_},
              {"component", component_},
              {"peer", peer_},
              {"client_version", r.version_acked()}});
    core_->UpdateStatus(node_, component_, [&](StreamStatus& s) {
      s = StreamStatus{};
      s.node = node_;
      s.component = component_;
      s.peer = peer_;
      s.connected = true;
      s.connected_at = std::chrono::system_clock::now();
    });
    l.unlock();
    core_->Subscribe(self_, node_);
    l.lock();
    return true;
  }

  void HandleAck() {
    const pb::ConfigRequest& r = in_;
    if ((!r.node().empty() && r.node() != node_) ||
        (!r.component().empty() && r.component() != component_)) {
      core_->bad_requests->Add({{"reason", "identity_changed"}}).Increment();
      LOG_WARN(kScope, "ignoring a ConfigRequest that names another node/component",
               {{"node", node_}, {"component", component_}, {"request_node", r.node()}});
      return;
    }
    if (!awaiting_ack_ || r.nonce() != in_flight_nonce_) {
      // Only one version is ever outstanding, so anything else is a confused client.
      core_->bad_requests->Add({{"reason", "stale_nonce"}}).Increment();
      LOG_WARN(kScope, "ignoring an ACK/NACK with an unknown nonce",
               {{"node", node_}, {"component", component_}, {"nonce", r.nonce()}});
      return;
    }
    awaiting_ack_ = false;
    core_->push_ack_seconds->Add({{"result", r.error().empty() ? "ack" : "nack"}}, PushAckBuckets())
        .Observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - in_flight_since_)
                     .count());
    if (r.error().empty()) {
      if (r.version_acked() != in_flight_version_) {
        core_->bad_requests->Add({{"reason", "version_mismatch"}}).Increment();
        LOG_WARN(kScope, "ACK names another version than the one sent with its nonce",
                 {{"node", node_},
                  {"component", component_},
                  {"sent", in_flight_version_},
                  {"acked", r.version_acked()}});
      }
      base_ = std::move(in_flight_view_);
      core_->acks->Increment();
      LOG_DEBUG(kScope, "config ACK",
                {{"node", node_}, {"component", component_}, {"version", in_flight_version_}});
      core_->UpdateStatus(node_, component_, [&](StreamStatus& s) {
        if (s.peer != peer_) return;
        s.version_acked = in_flight_version_;
        s.acks++;
        s.last_ack_at = std::chrono::system_clock::now();
      });
    } else {
      // The client keeps its last good config, which is base_ (or, if base_ is null, a config
      // we never saw: then the next push is a full snapshot again).
      nacked_view_ = std::move(in_flight_view_);
      core_->nacks->Increment();
      LOG_WARN(kScope, "config NACK: the node rejected a version and keeps its last good one",
               {{"node", node_},
                {"component", component_},
                {"version", in_flight_version_},
                {"error", r.error()}});
      core_->UpdateStatus(node_, component_, [&](StreamStatus& s) {
        if (s.peer != peer_) return;
        s.nacks++;
        s.last_nack_version = in_flight_version_;
        s.last_nack_error = r.error();
      });
    }
    MaybeSendLocked();
  }

  void MaybeSendLocked() {
    if (finished_ || finish_pending_ || write_in_flight_ || awaiting_ack_ || !subscribed_ ||
        latest_ == nullptr || sent_gen_ == latest_gen_) {
      return;
    }
    sent_gen_ = latest_gen_;
    // The client validates whole snapshots, so content it rejected once is rejected again:
    // never resend it (the next real change goes out as a delta against base_).
    if (nacked_view_ != nullptr && SameContent(*nacked_view_, *latest_)) return;
    if (base_ == nullptr && !holds_full_slot_) {
      if (waiting_full_) {
        sent_gen_ = 0;  // still waiting; the newest view goes out when the slot comes
        return;
      }
      if (!core_->AcquireFullSlot(self_)) {
        waiting_full_ = true;
        sent_gen_ = 0;  // not sent: Kick() retries with whatever view is newest then
        return;
      }
      holds_full_slot_ = true;
    }
    out_ = latest_->globals;
    size_t upserted = 0;
    if (base_ == nullptr) {
      out_.set_full_snapshot(true);
      for (const EntryPtr& e : latest_->resources) AddUpserted(&out_, *e);
      upserted = latest_->resources.size();
    } else {
      auto a = base_->resources.begin(), ae = base_->resources.end();
      auto b = latest_->resources.begin(), be = latest_->resources.end();
      while (a != ae || b != be) {
        if (a != ae && b != be && *a == *b) {  // the same object: nothing to send
          ++a;
          ++b;
          continue;
        }
        if (b == be || (a != ae && (*a)->key < (*b)->key)) {
          *out_.add_removed() = xds::ToProto((*a)->key);
          ++a;
        } else if (a == ae || (*b)->key < (*a)->key) {
          AddUpserted(&out_, **b);
          ++upserted;
          ++b;
        } else {
          if (!SameBytes(*a, *b)) {
            AddUpserted(&out_, **b);
            ++upserted;
          }
          ++a;
          ++b;
        }
      }
      if (upserted == 0 && out_.removed_size() == 0 &&
          base_->globals_bytes == latest_->globals_bytes) {
        pb::ConfigResponse().Swap(&out_);
        return;  // nothing this node can see changed
      }
    }
    in_flight_version_ = std::to_string(++core_->version_counter);
    in_flight_nonce_ = NewNonce();
    out_.set_version(in_flight_version_);
    out_.set_nonce(in_flight_nonce_);
    in_flight_view_ = latest_;
    write_in_flight_ = awaiting_ack_ = true;
    in_flight_since_ = std::chrono::steady_clock::now();
    size_t bytes = out_.ByteSizeLong();
    (out_.full_snapshot() ? core_->pushes_full : core_->pushes_delta)->Increment();
    core_->push_bytes->Increment(static_cast<double>(bytes));
    LOG_DEBUG(kScope, "config push",
              {{"node", node_},
               {"component", component_},
               {"version", in_flight_version_},
               {"full", out_.full_snapshot()},
               {"upserted", upserted},
               {"removed", out_.removed_size()},
               {"bytes", bytes}});
    core_->UpdateStatus(node_, component_, [&](StreamStatus& s) {
      if (s.peer != peer_) return;
      s.version_sent = in_flight_version_;
      s.pushes++;
    });
    StartWrite(&out_);
  }

  std::shared_ptr<ConfigDiscoveryServer::Core> core_;
  const uint64_t id_;
  const std::string peer_;
  std::string authed_node_;
  std::shared_ptr<XdsStream> self_;

  std::mutex mu_;
  bool subscribed_ = false;
  std::string node_, component_;  // set once, when subscribed_ becomes true
  ViewPtr base_;  // what the client runs, as of its last ACK on this stream; null: unknown
  ViewPtr latest_;
  ViewPtr in_flight_view_;
  ViewPtr nacked_view_;  // content of the last NACKed version
  uint64_t latest_gen_ = 0, sent_gen_ = 0;
  bool write_in_flight_ = false, awaiting_ack_ = false;
  bool holds_full_slot_ = false;  // the full snapshot being built/written has a slot
  bool waiting_full_ = false;     // queued for a full-snapshot slot
  bool finished_ = false, finish_pending_ = false;
  grpc::Status finish_status_;
  std::string in_flight_version_, in_flight_nonce_;
  std::chrono::steady_clock::time_point in_flight_since_;  // when the version was pushed
  pb::ConfigRequest in_;
  pb::ConfigResponse out_;
};

namespace {

class Service final : public pb::ConfigDiscovery::CallbackService {
 public:
  // Owned by the ConfigDiscoveryServer, whose core therefore outlives it.
  explicit Service(std::shared_ptr<ConfigDiscoveryServer::Core> core) : core_(std::move(core)) {}

  grpc::ServerBidiReactor<pb::ConfigRequest, pb::ConfigResponse>* Stream(
      grpc::CallbackServerContext* ctx) override {
    auto s = std::make_shared<XdsStream>(core_, ctx);
    bool accept = false;
    {
      std::lock_guard<std::mutex> l(core_->mu);
      if (!core_->stopping) {
        core_->streams[s->id()] = s;
        core_->connected_streams->Set(static_cast<double>(core_->streams.size()));
        accept = true;
      }
    }
    if (accept) {
      s->Start(s, ctx);
    } else {
      s->Reject(s, grpc::Status(grpc::StatusCode::UNAVAILABLE, "weftd is shutting down"));
    }
    return s.get();
  }

 private:
  std::shared_ptr<ConfigDiscoveryServer::Core> core_;
};

}  // namespace

ConfigDiscoveryServer::Core::Core(Authenticator a, XdsServerOptions o)
    : auth(std::move(a)), opts(std::move(o)) {
  registry = opts.registry ? opts.registry : std::make_shared<prometheus::Registry>();
  auto& r = *registry;
  connected_nodes = &prometheus::BuildGauge()
                         .Name("weft_xds_connected_nodes")
                         .Help("Nodes with at least one open config stream")
                         .Register(r)
                         .Add({});
  connected_streams = &prometheus::BuildGauge()
                           .Name("weft_xds_connected_streams")
                           .Help("Open config streams (ztunnel and agent count separately)")
                           .Register(r)
                           .Add({});
  auto& pushes = prometheus::BuildCounter()
                     .Name("weft_xds_pushes_total")
                     .Help("Config versions sent, by type (full snapshot or delta)")
                     .Register(r);
  pushes_full = &pushes.Add({{"type", "full"}});
  pushes_delta = &pushes.Add({{"type", "delta"}});
  acks = &prometheus::BuildCounter()
              .Name("weft_xds_acks_total")
              .Help("Config versions nodes accepted")
              .Register(r)
              .Add({});
  nacks = &prometheus::BuildCounter()
               .Name("weft_xds_nacks_total")
               .Help("Config versions nodes rejected (they keep their last good config)")
               .Register(r)
               .Add({});
  push_bytes = &prometheus::BuildCounter()
                    .Name("weft_xds_push_bytes_total")
                    .Help("Serialized bytes of config responses sent")
                    .Register(r)
                    .Add({});
  auth_failures = &prometheus::BuildCounter()
                       .Name("weft_xds_auth_failures_total")
                       .Help("Config streams refused: bad credential or foreign node name")
                       .Register(r);
  bad_requests = &prometheus::BuildCounter()
                      .Name("weft_xds_bad_requests_total")
                      .Help("Malformed or out-of-protocol ConfigRequests")
                      .Register(r);
  push_ack_seconds = &prometheus::BuildHistogram()
                          .Name("weft_xds_push_ack_seconds")
                          .Help(
                              "Time from pushing a config version to a node until its ACK or "
                              "NACK, by result")
                          .Register(r);
  view_errors = &prometheus::BuildCounter()
                     .Name("weft_xds_view_errors_total")
                     .Help("Resources dropped from a node view: no key, or a duplicate key")
                     .Register(r)
                     .Add({});
}

void ConfigDiscoveryServer::Core::Subscribe(const std::shared_ptr<XdsStream>& s,
                                            const std::string& node) {
  std::lock_guard<std::mutex> l(mu);
  if (stopping) return;
  by_node[node].insert(s->id());
  connected_nodes->Set(static_cast<double>(by_node.size()));
  fresh.emplace_back(node, s);
  cv.notify_all();
}

void ConfigDiscoveryServer::Core::Unregister(uint64_t id, const std::string& node,
                                             bool subscribed) {
  std::lock_guard<std::mutex> l(mu);
  streams.erase(id);
  connected_streams->Set(static_cast<double>(streams.size()));
  if (subscribed) {
    auto it = by_node.find(node);
    if (it != by_node.end()) {
      it->second.erase(id);
      if (it->second.empty()) by_node.erase(it);
    }
    connected_nodes->Set(static_cast<double>(by_node.size()));
  }
  cv.notify_all();
}

ViewPtr ConfigDiscoveryServer::Core::BuildView(const std::string& node) {
  pb::ConfigSnapshot snap;
  SharedView shared;
  try {
    if (shared_views) {
      shared = shared_views(node);
    } else {
      snap = views(node);
    }
  } catch (const std::exception& e) {
    view_errors->Increment();
    LOG_ERROR(kScope, "view provider threw; the node keeps its config",
              {{"node", node}, {"error", e.what()}});
    return nullptr;
  }
  const pb::ConfigSnapshot& globals = shared_views ? shared.globals : snap;
  for (const std::string& f : xds::UncarriedFields(globals)) {
    if (warned_uncarried.insert(f).second) {
      LOG_WARN(kScope, "view sets a field ConfigResponse cannot carry; nodes do not see it",
               {{"field", f}, {"node", node}});
    }
  }
  auto v = std::make_shared<View>();
  xds::CopyGlobals(globals, &v->globals);
  v->globals_bytes = xds::DeterministicBytes(v->globals);
  auto bad = [&](const absl::Status& st) {
    view_errors->Increment();
    LOG_WARN(kScope, "resource without a key dropped from node view",
             {{"node", node}, {"error", std::string(st.message())}});
  };
  if (shared_views) {
    const auto& in = shared.resources;
    v->resources.reserve(in.size());
    size_t same = 0;
    const size_t limit = std::min({in.size(), prev_input.size(), prev_ordered});
    while (same < limit && in[same] == prev_input[same]) ++same;
    std::vector<EntryPtr> entries(in.size());
    for (size_t i = 0; i < same; ++i) {
      entries[i] = prev_entries[i];
      v->resources.push_back(entries[i]);
    }
    size_t ordered = same;
    bool in_order = true;
    for (size_t i = same; i < in.size(); ++i) {
      const auto& r = in[i];
      EntryPtr e;
      if (r != nullptr) {
        auto [it, inserted] = by_ptr.try_emplace(r.get());
        CachedResource& c = it->second;
        // An expired owner means the address was reused by a new object: compute afresh.
        if (!inserted && c.owner.expired()) inserted = true;
        if (inserted) {
          c = CachedResource{r, nullptr, absl::OkStatus()};
          auto key = xds::KeyOf(*r);
          if (key.ok()) {
            c.entry =
                std::make_shared<const Entry>(Entry{std::move(*key), xds::DeterministicBytes(*r)});
          } else {
            c.error = key.status();
          }
        }
        if (c.error.ok()) {
          e = c.entry;
        } else {
          bad(c.error);
        }
      }
      if (e != nullptr) v->resources.push_back(e);
      if (in_order) {
        in_order =
            e != nullptr && (i == 0 || (entries[i - 1] != nullptr && entries[i - 1]->key < e->key));
        if (in_order) ordered = i + 1;
      }
      entries[i] = std::move(e);
    }
    prev_input = in;
    prev_entries = std::move(entries);
    prev_ordered = ordered;
    // weftd's model hands views over in strict key order (sorted, no duplicates, none
    // dropped): nothing more to do.
    if (ordered == in.size()) return v;
  } else {
    v->resources.reserve(static_cast<size_t>(snap.workloads_size() + snap.services_size()));
    (void)xds::ForEachResource(
        snap,
        [&](Key k, pb::Resource r) {
          std::string bytes = xds::DeterministicBytes(r);
          auto it = interned.find(std::string_view(bytes));
          if (it == interned.end()) {
            auto e = std::make_shared<const Entry>(Entry{std::move(k), std::move(bytes)});
            it = interned.emplace(std::string_view(e->bytes), e).first;
          }
          v->resources.push_back(it->second);
          return absl::OkStatus();
        },
        bad);
  }
  auto by_key = [](const EntryPtr& a, const EntryPtr& b) { return a->key < b->key; };
  std::stable_sort(v->resources.begin(), v->resources.end(), by_key);
  auto dup = [](const EntryPtr& a, const EntryPtr& b) { return a->key == b->key; };
  for (auto it = std::adjacent_find(v->resources.begin(), v->resources.end(), dup);
       it != v->resources.end(); it = std::adjacent_find(std::next(it), v->resources.end(), dup)) {
    view_errors->Increment();
    LOG_WARN(kScope, "duplicate resource in node view; keeping the first",
             {{"node", node}, {"key", xds::KeyString((*it)->key)}});
  }
  v->resources.erase(std::unique(v->resources.begin(), v->resources.end(), dup),
                     v->resources.end());
  return v;
}

void ConfigDiscoveryServer::Core::Run() {
  std::unique_lock<std::mutex> l(mu);
  while (!stopping) {
    if (!fresh.empty()) {
      auto batch = std::move(fresh);
      fresh.clear();
      l.unlock();
      // New streams get their first (full) snapshot right away, without the debounce.
      std::map<std::string, ViewPtr> built;
      for (auto& [node, s] : batch) {
        auto it = built.find(node);
        if (it == built.end()) it = built.emplace(node, BuildView(node)).first;
        if (it->second != nullptr) s->Update(it->second);
      }
      batch.clear();
      built.clear();
      SweepInterned();
      l.lock();
      continue;
    }
    if (!dirty_all && dirty.empty()) {
      cv.wait(l);
      continue;
    }
    auto deadline = std::min(last_notify + opts.debounce, first_dirty + opts.max_delay);
    if (Clock::now() < deadline) {
      cv.wait_until(l, deadline);
      continue;
    }
    std::set<std::string> nodes;
    if (dirty_all) {
      for (const auto& [n, ids] : by_node) nodes.insert(n);
    } else {
      for (const auto& n : dirty) {
        if (by_node.count(n) != 0) nodes.insert(n);
      }
    }
    dirty.clear();
    dirty_all = false;
    std::vector<std::pair<std::string, std::vector<std::shared_ptr<XdsStream>>>> work;
    for (const auto& n : nodes) {
      std::vector<std::shared_ptr<XdsStream>> ss;
      for (uint64_t id : by_node[n]) {
        auto it = streams.find(id);
        if (it != streams.end()) ss.push_back(it->second);
      }
      work.emplace_back(n, std::move(ss));
    }
    l.unlock();
    for (auto& [n, ss] : work) {
      ViewPtr v = BuildView(n);
      if (v == nullptr) continue;
      for (auto& s : ss) s->Update(v);
    }
    work.clear();
    SweepInterned();
    l.lock();
  }
}

void ConfigDiscoveryServer::Core::ReleaseFullSlot() {
  {
    std::lock_guard<std::mutex> l(full_mu);
    --full_in_flight;
  }
  // Wake waiters while slots are free. A woken stream takes its slot inside Kick() (or finds
  // it no longer needs one, or re-queues if another stream was faster), so the count is
  // current each time round and the loop ends once the slots are taken or nobody waits.
  for (;;) {
    std::shared_ptr<XdsStream> next;
    {
      std::lock_guard<std::mutex> l(full_mu);
      if (full_in_flight >= kFullSlots || full_waiting.empty()) return;
      next = full_waiting.front().lock();
      full_waiting.pop_front();
    }
    if (next != nullptr) next->Kick();
  }
}

ConfigDiscoveryServer::ConfigDiscoveryServer(ViewProvider views, Authenticator auth,
                                             XdsServerOptions opts)
    : core_(std::make_shared<Core>(std::move(auth), std::move(opts))) {
  WEFT_CHECK(views != nullptr);
  core_->views = std::move(views);
  Init();
}

ConfigDiscoveryServer::ConfigDiscoveryServer(SharedViewProvider views, Authenticator auth,
                                             XdsServerOptions opts)
    : core_(std::make_shared<Core>(std::move(auth), std::move(opts))) {
  WEFT_CHECK(views != nullptr);
  core_->shared_views = std::move(views);
  Init();
}

void ConfigDiscoveryServer::Init() {
  if (!core_->auth) {
    LOG_WARN(kScope,
             "config streams are not authenticated: any client may claim any node name "
             "(configure a node authenticator outside tests and trusted local setups)",
             nullptr);
  }
  core_->pusher = std::thread([c = core_.get()] { c->Run(); });
}

ConfigDiscoveryServer::~ConfigDiscoveryServer() {
  Shutdown();
}

void ConfigDiscoveryServer::Register(grpc::ServerBuilder& b) {
  if (service_ == nullptr) service_ = std::make_unique<Service>(core_);
  b.RegisterService(service_.get());
  // Clients ping every 30 s (also without calls, to notice a dead weftd); allow that, and ping
  // clients ourselves so streams of vanished nodes are closed.
  b.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  b.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 60000);
  b.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 20000);
}

void ConfigDiscoveryServer::Notify(std::set<std::string> nodes) {
  if (nodes.empty()) return;
  std::lock_guard<std::mutex> l(core_->mu);
  auto now = Clock::now();
  if (!core_->dirty_all && core_->dirty.empty()) core_->first_dirty = now;
  core_->last_notify = now;
  core_->dirty.merge(nodes);
  core_->cv.notify_all();
}

void ConfigDiscoveryServer::NotifyAll() {
  std::lock_guard<std::mutex> l(core_->mu);
  auto now = Clock::now();
  if (!core_->dirty_all && core_->dirty.empty()) core_->first_dirty = now;
  core_->last_notify = now;
  core_->dirty_all = true;
  core_->cv.notify_all();
}

void ConfigDiscoveryServer::Shutdown() {
  std::vector<std::shared_ptr<XdsStream>> open;
  {
    std::lock_guard<std::mutex> l(core_->mu);
    if (core_->stopping) return;
    core_->stopping = true;
    for (const auto& [id, s] : core_->streams) open.push_back(s);
    core_->fresh.clear();
    core_->cv.notify_all();
  }
  if (core_->pusher.joinable()) core_->pusher.join();
  for (auto& s : open) {
    s->End(grpc::Status(grpc::StatusCode::UNAVAILABLE, "weftd is shutting down; reconnect"));
  }
  LOG_INFO(kScope, "config discovery stopped", {{"streams_closed", open.size()}});
}

std::vector<StreamStatus> ConfigDiscoveryServer::Status() const {
  std::lock_guard<std::mutex> l(core_->status_mu);
  std::vector<StreamStatus> out;
  out.reserve(core_->status.size());
  for (const auto& [k, s] : core_->status) out.push_back(s);
  return out;
}

std::shared_ptr<prometheus::Registry> ConfigDiscoveryServer::registry() const {
  return core_->registry;
}

}  // namespace weft::cp
