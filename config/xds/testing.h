// Resources for tests of the config stream (config/xds and its users).
#pragma once

#include <string>

#include "weft/config/v1/config.pb.h"

namespace weft::config::xds::testing {

// A workload resource with only a uid and one address (enough for keys and diffs; ztunnel's
// validation also wants namespace and name).
inline ::weft::config::v1::Resource WorkloadRes(const std::string& uid, const std::string& ip) {
  ::weft::config::v1::Resource r;
  r.mutable_workload()->set_uid(uid);
  r.mutable_workload()->add_addresses(ip);
  return r;
}

}  // namespace weft::config::xds::testing
