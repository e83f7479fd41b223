#include "ztunnel/app/connect_deny.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace weft::ztunnel {

ConnectDenyInstaller::ConnectDenyInstaller(Metrics* metrics, bool enabled, std::string node)
    : metrics_(metrics), enabled_(enabled), node_(std::move(node)) {}

ConnectDenyInstaller::~ConnectDenyInstaller() {
  Stop();
}

void ConnectDenyInstaller::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConnectDenyInstaller::MarkDirtyLocked() {
  dirty_ = true;
  cv_.notify_one();
}

void ConnectDenyInstaller::Loop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return dirty_ || stopping_; });
    if (stopping_) return;
    dirty_ = false;
    RecompileLocked();
  }
}

void ConnectDenyInstaller::AddPod(const std::string& uid, uint64_t netns_cookie,
                                  const std::string& pin_dir) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pin_dir_.empty()) pin_dir_ = pin_dir;
  if (pin_dir != pin_dir_) {
    LOG_WARN("deny-at-connect", "pod of a second agent pin dir: its connects are not compiled",
             {{"pod", uid}, {"pin_dir", pin_dir}, {"compiling_for", pin_dir_}});
    return;
  }
  if (!map_ && !open_failed_) {
    auto m = bpf::ConnectDenyMap::Open(pin_dir_);
    if (!m.ok()) {
      open_failed_ = true;
      last_error_ = m.status().ToString();
      LOG_WARN("deny-at-connect",
               "deny-at-connect map unavailable; connects the destination's policy denies are "
               "refused there, as without this feature",
               {{"error", last_error_}});
      return;
    }
    map_ = std::move(*m);
    if (absl::Status st = map_->ResetCounts(); !st.ok()) {
      LOG_WARN("deny-at-connect", "cannot zero the deny counters", {{"error", st.ToString()}});
    }
    if (!enabled_) {
      absl::Status st = map_->Clear();
      LOG_INFO("deny-at-connect", "disabled (--no-deny-at-connect): the map is cleared",
               {{"ok", st.ok()}});
      return;
    }
  }
  pods_[uid] = DenySource{uid, netns_cookie};
  // The compile thread starts with the first eBPF-captured pod: iptables mode never has one.
  if (enabled_ && !stopping_ && !thread_.joinable()) thread_ = std::thread([this] { Loop(); });
  MarkDirtyLocked();
}

void ConnectDenyInstaller::RemovePod(const std::string& uid) {
  std::lock_guard<std::mutex> lock(mu_);
  if (pods_.erase(uid) > 0) MarkDirtyLocked();
}

void ConnectDenyInstaller::OnConfig(SnapshotPtr snap) {
  std::lock_guard<std::mutex> lock(mu_);
  snap_ = std::move(snap);
  MarkDirtyLocked();
}

void ConnectDenyInstaller::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  detached_ = true;
}

void ConnectDenyInstaller::RecompileLocked() {
  if (!enabled_ || detached_ || !map_ || !snap_) return;
  std::vector<DenySource> sources;
  std::set<std::string> local;
  for (const auto& [uid, s] : pods_) {
    sources.push_back(s);
    local.insert(uid);
  }
  CompiledDenies c = CompileConnectDenies(*snap_, sources, node_, local, WEFT_CONNECT_DENY_ENTRIES);
  if (c.dropped > 0) {
    metrics_->ConnectDenyError("full", c.dropped);
    LOG_WARN("deny-at-connect",
             "the deny-at-connect map is full: some denied connects go to the destination "
             "to be refused there",
             {{"groups_left_out", c.dropped}, {"entries", c.entries.size()}});
  }
  std::vector<bpf::ConnectDenyEntry> entries;
  entries.reserve(c.entries.size());
  size_t unlabelled = 0;
  for (const DenyEntry& e : c.entries) {
    uint32_t id = 0;
    if (e.deny) {
      auto key = std::make_pair(e.policy, e.reason);
      auto it = label_ids_.find(key);
      if (it == label_ids_.end()) {
        if (labels_.size() >= WEFT_DENY_LABELS) {
          ++unlabelled;
          continue;
        }
        id = static_cast<uint32_t>(labels_.size());
        labels_.push_back(key);
        exported_.push_back(0);
        label_ids_.emplace(key, id);
      } else {
        id = it->second;
      }
    }
    entries.push_back({e.netns_cookie, e.dst, e.port, e.deny, id});
  }
  if (unlabelled > 0) {
    // A pass exception without its deny is harmless; a deny without its label is left out.
    metrics_->ConnectDenyError("labels", unlabelled);
    LOG_WARN("deny-at-connect", "more policy labels than the deny counters hold; entries left out",
             {{"entries_left_out", unlabelled}, {"labels", WEFT_DENY_LABELS}});
  }
  absl::Status st = map_->Sync(entries);
  if (!st.ok()) {
    metrics_->ConnectDenyError("sync");
    last_error_ = st.ToString();
    entries_ = 0;
    metrics_->connect_deny_entries().Set(0);
    LOG_ERROR("deny-at-connect",
              "cannot write the deny-at-connect map; no connect is denied at "
              "the source until the next change",
              {{"error", last_error_}});
    return;
  }
  entries_ = entries.size();
  metrics_->connect_deny_entries().Set(static_cast<double>(entries_));
  LOG_DEBUG("deny-at-connect", "compiled",
            {{"entries", entries_},
             {"workloads_compiled", c.compiled},
             {"workloads_skipped", c.skipped},
             {"service_ports_compiled", c.vip_ports_compiled},
             {"service_ports_skipped", c.vip_ports_skipped},
             {"pods", pods_.size()}});
}

void ConnectDenyInstaller::ExportCounts() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!map_ || labels_.empty()) return;
  std::vector<uint32_t> ids(labels_.size());
  for (uint32_t i = 0; i < ids.size(); ++i) ids[i] = i;
  auto counts = map_->Counts(ids);
  if (!counts.ok()) return;
  for (const auto& [id, n] : *counts) {
    if (n > exported_[id]) {
      metrics_->SourcePolicyDenials(labels_[id].first, labels_[id].second, n - exported_[id]);
      exported_[id] = n;
    }
  }
}

nlohmann::json ConnectDenyInstaller::Dump() const {
  std::lock_guard<std::mutex> lock(mu_);
  nlohmann::json j = {{"enabled", enabled_ && !detached_},
                      {"pin_dir", pin_dir_},
                      {"map_open", map_ != nullptr},
                      {"entries", entries_},
                      {"pods", pods_.size()}};
  if (!last_error_.empty()) j["last_error"] = last_error_;
  for (const auto& [policy, reason] : labels_)
    j["labels"].push_back({{"policy", policy}, {"reason", reason}});
  return j;
}

}  // namespace weft::ztunnel
