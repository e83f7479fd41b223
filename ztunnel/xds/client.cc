#include "ztunnel/xds/client.h"

#include <fstream>
#include <random>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_client/grpc_call.h"
#include "common/log.h"
#include "common/status.h"

namespace weft::ztunnel {
namespace {

namespace pb = ::weft::config::v1;
constexpr const char* kScope = "xds-client";
constexpr const char* kStreamMethod = "/weft.config.v1.ConfigDiscovery/Stream";

absl::StatusOr<std::string> ReadFile(const std::string& path, std::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read ", Av(what), " ", path, ": check that the file exists and is readable"));
  }
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace

ConfigClient::ConfigClient(ConfigClientOptions opts, Callback on_snapshot)
    : opts_(std::move(opts)), on_snapshot_(std::move(on_snapshot)) {
  if (opts_.registry) {
    auto& r = *opts_.registry;
    m_connected_ = &prometheus::BuildGauge()
                        .Name("weft_xds_client_connected")
                        .Help("1 while the config stream to weftd is open")
                        .Register(r)
                        .Add({});
    m_acks_ = &prometheus::BuildCounter()
                   .Name("weft_xds_client_acks_total")
                   .Help("Config versions from weftd accepted")
                   .Register(r)
                   .Add({});
    m_nacks_ = &prometheus::BuildCounter()
                    .Name("weft_xds_client_nacks_total")
                    .Help("Config versions from weftd rejected (the last good one stays)")
                    .Register(r)
                    .Add({});
    m_stream_errors_ = &prometheus::BuildCounter()
                            .Name("weft_xds_client_stream_errors_total")
                            .Help("Config streams that failed to open or ended")
                            .Register(r)
                            .Add({});
    m_terminations_ = &prometheus::BuildCounter()
                           .Name("istio_xds_connection_terminations_total")
                           .Help("The total number of completed connections to xds server")
                           .Register(r);
    for (const char* reason : {"ConnectionError", "Error", "Complete"})
      m_terminations_->Add({{"reason", reason}});
    const std::string url = "type.googleapis.com/" + pb::ConfigResponse::descriptor()->full_name();
    m_messages_ = &prometheus::BuildCounter()
                       .Name("istio_xds_message_total")
                       .Help("Total number of messages received from the xds server")
                       .Register(r)
                       .Add({{"url", url}});
    m_message_bytes_ = &prometheus::BuildCounter()
                            .Name("istio_xds_message_bytes_total")
                            .Help("Total bytes of messages received from the xds server")
                            .Register(r)
                            .Add({{"url", url}});
  }
}

ConfigClient::~ConfigClient() {
  Stop();
}

absl::Status ConfigClient::Start() {
  std::lock_guard<std::mutex> lc(lifecycle_mu_);
  if (thread_.joinable()) return absl::OkStatus();
  if (opts_.target.empty()) {
    return absl::InvalidArgumentError("config client: no weftd address (target) configured");
  }
  if (opts_.node.empty() || opts_.component.empty()) {
    return absl::InvalidArgumentError(
        "config client: node name and component (\"ztunnel\" or \"agent\") are required");
  }
  if (opts_.initial_backoff.count() <= 0 || opts_.max_backoff < opts_.initial_backoff) {
    return absl::InvalidArgumentError("config client: want 0 < initial_backoff <= max_backoff");
  }
  if (!opts_.root_ca_file.empty()) {
    WEFT_ASSIGN_OR_RETURN(std::string pem, ReadFile(opts_.root_ca_file, "weftd root CA file"));
    if (pem.find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("weftd root CA file ", opts_.root_ca_file, " holds no PEM certificate"));
    }
  }
  if (!opts_.bearer_token_file.empty()) {
    WEFT_RETURN_IF_ERROR(ReadFile(opts_.bearer_token_file, "bearer token file").status());
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = false;
  }
  thread_ = std::thread([this] { Run(); });
  return absl::OkStatus();
}

void ConfigClient::Stop() {
  std::lock_guard<std::mutex> lc(lifecycle_mu_);
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> l(mu_);
    stopping_ = true;
    if (call_) call_->Cancel();
    cv_.notify_all();
  }
  thread_.join();
}

SnapshotPtr ConfigClient::Current() const {
  std::lock_guard<std::mutex> l(mu_);
  return current_;
}

pb::ConfigSnapshot ConfigClient::CurrentProto() const {
  std::lock_guard<std::mutex> l(proto_mu_);
  return set_.snapshot();
}

ConfigClientStatus ConfigClient::Status() const {
  std::lock_guard<std::mutex> l(mu_);
  return status_;
}

void ConfigClient::Run() {
  std::mt19937_64 rng{std::random_device{}()};
  int attempt = 0;
  while (true) {
    {
      std::lock_guard<std::mutex> l(mu_);
      if (stopping_) return;
    }
    if (RunStream()) attempt = 0;
    // Exponential backoff with "equal jitter": half the delay is fixed, half random, so a
    // fleet that lost weftd together does not come back in lockstep.
    auto delay = opts_.initial_backoff * (int64_t{1} << std::min(attempt, 20));
    if (delay > opts_.max_backoff) delay = opts_.max_backoff;
    std::uniform_int_distribution<int64_t> jitter(0, delay.count() / 2);
    auto wait = std::chrono::milliseconds(delay.count() - delay.count() / 2 + jitter(rng));
    ++attempt;
    std::unique_lock<std::mutex> l(mu_);
    LOG_DEBUG(kScope, "reconnecting to weftd",
              {{"target", opts_.target}, {"in_ms", wait.count()}, {"attempt", attempt}});
    cv_.wait_for(l, wait, [this] { return stopping_; });
    if (stopping_) return;
  }
}

void ConfigClient::StreamError(const std::string& err) {
  if (m_stream_errors_) m_stream_errors_->Increment();
  if (m_connected_) m_connected_->Set(0);
  std::lock_guard<std::mutex> l(mu_);
  status_.connected = false;
  status_.last_stream_error = err;
}

bool ConfigClient::RunStream() {
  grpc_client::ChannelOptions co;
  co.target = opts_.target;
  co.tls_server_name = opts_.tls_server_name;
  co.keepalive_time = opts_.keepalive_time;
  co.keepalive_timeout = opts_.keepalive_timeout;
  // A full snapshot of a large mesh is far over gRPC's 4 MB default; 1 GiB bounds a broken peer.
  co.max_message_bytes = size_t{1} << 30;
  auto connect_error = [&](const absl::Status& st) {
    StreamError(std::string(st.message()));
    if (m_terminations_) m_terminations_->Add({{"reason", "ConnectionError"}}).Increment();
    LOG_WARN(kScope, "cannot connect to weftd", {{"error", st.message()}});
    return false;
  };
  if (!opts_.root_ca_file.empty()) {
    auto pem = ReadFile(opts_.root_ca_file, "weftd root CA file");
    if (!pem.ok()) return connect_error(pem.status());
    co.root_pem = std::move(*pem);
  }
  std::string token = opts_.bearer_token;
  if (!opts_.bearer_token_file.empty()) {
    auto t = ReadFile(opts_.bearer_token_file, "bearer token file");
    if (!t.ok()) return connect_error(t.status());
    token = std::string(absl::StripAsciiWhitespace(*t));
  }
  grpc_client::Metadata md;
  if (!token.empty()) md.emplace_back("authorization", absl::StrCat("Bearer ", token));

  // A fresh connection per attempt: our backoff decides when to retry.
  auto call = std::make_shared<grpc_client::Call>();
  std::string have_version;
  {
    std::lock_guard<std::mutex> l(mu_);
    if (stopping_) return false;
    call_ = call;
    status_.streams++;
    have_version = status_.version;
  }
  absl::Status st = call->Start(co, kStreamMethod, md, std::nullopt);
  pb::ConfigRequest hello;
  hello.set_node(opts_.node);
  hello.set_component(opts_.component);
  hello.set_version_acked(have_version);  // informational: what we run now
  bool delivered = false;
  if (st.ok() && call->Write(hello)) {
    pb::ConfigResponse resp;
    size_t bytes = 0;
    while (call->Read(&resp, &bytes)) {
      if (!delivered) {
        delivered = true;
        if (m_connected_) m_connected_->Set(1);
        std::lock_guard<std::mutex> l(mu_);
        status_.connected = true;
        LOG_INFO(kScope, "config stream to weftd open",
                 {{"target", opts_.target}, {"node", opts_.node}, {"component", opts_.component}});
      }
      if (m_messages_) {
        m_messages_->Increment();
        m_message_bytes_->Increment(static_cast<double>(bytes));
      }
      pb::ConfigRequest reply;
      HandleResponse(resp, &reply);
      if (!call->Write(reply)) break;
    }
  }
  if (st.ok()) {
    call->WritesDone();
    st = call->Finish();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    call_.reset();
  }
  std::string err =
      st.ok() ? "weftd closed the stream"
              : absl::StrCat(st.message(), " (gRPC code ", static_cast<int>(st.code()), ")");
  StreamError(err);
  if (m_terminations_) {
    const char* reason = !delivered ? "ConnectionError" : st.ok() ? "Complete" : "Error";
    m_terminations_->Add({{"reason", reason}}).Increment();
  }
  {
    std::lock_guard<std::mutex> l(mu_);
    have_version = status_.version;
  }
  if (st.code() == absl::StatusCode::kUnauthenticated ||
      st.code() == absl::StatusCode::kPermissionDenied) {
    LOG_ERROR(kScope, "weftd refused this node's config stream; check the node credential",
              {{"target", opts_.target}, {"node", opts_.node}, {"error", err}});
  } else {
    LOG_WARN(kScope, "config stream to weftd ended; keeping the last good config",
             {{"target", opts_.target}, {"error", err}, {"version", have_version}});
  }
  return delivered;
}

void ConfigClient::HandleResponse(const pb::ConfigResponse& resp, pb::ConfigRequest* reply) {
  reply->set_nonce(resp.nonce());
  if (resp.full_snapshot()) {
    std::lock_guard<std::mutex> l(mu_);
    status_.full_snapshots++;
  }
  // Applied in place (pointer moves for the changed resources only); a rejected version is
  // undone, so the last good one is exactly what it was. FromProto still converts and checks the
  // whole snapshot: the callback and Current() hand out a complete ztunnel::ConfigSnapshot.
  std::unique_lock<std::mutex> proto_lock(proto_mu_);
  absl::Status st = set_.Apply(resp);
  SnapshotPtr validated;
  if (st.ok()) {
    auto v = ConfigSnapshot::FromProto(set_.snapshot());
    if (v.ok()) {
      validated = *v;
    } else {
      st = v.status();
      set_.Revert();
    }
  }
  if (!st.ok()) {
    std::string err = absl::StrCat("version ", resp.version(), ": ", st.message());
    if (m_nacks_) m_nacks_->Increment();
    std::string keep;
    {
      std::lock_guard<std::mutex> l(mu_);
      status_.nacks++;
      status_.last_nack_error = err;
      keep = status_.version;
    }
    LOG_WARN(kScope, "rejected config from weftd (NACK); keeping the last good version",
             {{"version", resp.version()}, {"keeping", keep}, {"error", err}});
    reply->set_version_acked(keep);
    reply->set_error(err);
    return;
  }
  set_.Commit();
  {
    std::lock_guard<std::mutex> l(mu_);
    current_ = validated;
    status_.version = resp.version();
    status_.acks++;
  }
  if (m_acks_) m_acks_->Increment();
  LOG_DEBUG(kScope, "accepted config from weftd",
            {{"version", resp.version()},
             {"full", resp.full_snapshot()},
             {"upserted", resp.upserted_size()},
             {"removed", resp.removed_size()}});
  // proto_mu_ is held until the callback returns: whoever sees the version in CurrentProto also
  // sees it in Current(), Status() and the callback's effects.
  if (on_snapshot_) on_snapshot_(validated);
  proto_lock.unlock();
  reply->set_version_acked(resp.version());
}

}  // namespace weft::ztunnel
