#include "ztunnel/proxy/pool.h"

#include <algorithm>

#include "common/log.h"
#include "ztunnel/proxy/worker.h"

namespace weft::ztunnel {

HboneConn* Pool::Get(const std::shared_ptr<Pod>& pod, const PoolKey& key, const SockAddr& dial,
                     const IpAddr* src_ip) {
  auto& v = pools_[pod->uid][key];
  for (HboneConn* c : v)
    if (c->CanTakeStream()) return c;
  auto ctx = w_->shared().tls->ClientContext(key.src);
  if (!ctx.ok()) {
    LOG_ERROR("outbound", "no certificate for the source identity",
              {{"identity", key.src.ToString()}, {"error", ctx.status().ToString()}});
    return nullptr;
  }
  auto fd = StartConnect(pod->netns_fd(), dial, w_->opts().mark, src_ip);
  if (!fd.ok()) {
    LOG_WARN("outbound", "cannot open HBONE connection",
             {{"dst", dial.ToString()}, {"error", fd.status().ToString()}});
    return nullptr;
  }
  HboneConn* c = w_->NewConn(HboneConn::Role::kClient, pod, std::move(*fd), *ctx, dial);
  c->key = key;
  if (!c->Start(true).ok()) {
    c->Close("cannot register socket");
    return nullptr;
  }
  v.push_back(c);
  return c;
}

void Pool::Remove(HboneConn* c) {
  for (auto& [uid, pool] : pools_) {
    auto it = pool.find(c->key);
    if (it == pool.end()) continue;
    auto& v = it->second;
    v.erase(std::remove(v.begin(), v.end(), c), v.end());
    if (v.empty()) pool.erase(it);
  }
}

}  // namespace weft::ztunnel
