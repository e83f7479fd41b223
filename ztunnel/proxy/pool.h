// The HBONE client pool (ztunnel's proxy/pool.rs): outbound tunnels share HTTP/2 connections
// per pod and PoolKey (source identity, destination identity, destination pod IP:15008), up to
// the streams a connection may carry. One pool per worker; loop thread only.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "common/net.h"
#include "ztunnel/proxy/hbone.h"

namespace weft::ztunnel {

class Worker;
class HboneConn;
struct Pod;

class Pool {
 public:
  explicit Pool(Worker* w) : w_(w) {}

  // A connection of `pod` for `key` that can take one more stream: a pooled one, else a new one
  // dialing `dial` from `src_ip` (null: any source). Null (logged) when the source identity has
  // no certificate or the socket cannot be opened.
  HboneConn* Get(const std::shared_ptr<Pod>& pod, const PoolKey& key, const SockAddr& dial,
                 const IpAddr* src_ip);
  // Forgets a closing connection.
  void Remove(HboneConn* c);

 private:
  Worker* w_;
  // Per pod: pool key -> open client connections.
  std::map<std::string, absl::flat_hash_map<PoolKey, std::vector<HboneConn*>>> pools_;
};

}  // namespace weft::ztunnel
