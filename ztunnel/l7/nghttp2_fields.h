// Header fields as nghttp2 takes them: the one conversion the HTTP/2 codec and the mirror
// client share. Internal to ztunnel/l7 (includes nghttp2).
#pragma once

#include <nghttp2/nghttp2.h>

#include <string>
#include <utility>
#include <vector>

namespace weft::ztunnel::l7 {

// nghttp2_nv entries pointing into `f` (which must outlive them), in order, no flags.
inline std::vector<nghttp2_nv> Nv(const std::vector<std::pair<std::string, std::string>>& f) {
  std::vector<nghttp2_nv> nv;
  nv.reserve(f.size());
  for (const auto& [n, v] : f) {
    nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                  reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(),
                  NGHTTP2_NV_FLAG_NONE});
  }
  return nv;
}

}  // namespace weft::ztunnel::l7
