// Where the agent pins Weft's BPF objects (bpffs), and so where ztunnel and a restarted agent
// find them. One directory per node: <bpffs>/weft/<node> (production: /sys/fs/bpf/weft/NODE;
// tests: /sys/fs/bpf/weft/<unique test name>).
//
//   <dir>/maps/<map name>            every map of inbound.bpf.c and outbound.bpf.c, by its name
//                                    in bpf/lib/*_maps.h (weft_listeners, weft_orig_dst_by_peer,
//                                    weft_pod_addrs, weft_enrolled, ...)
//   <dir>/links/connect4|connect6|sockops   the cgroup links
//   <dir>/links/sk_lookup_<netns cookie>   one per enrolled pod netns (decimal cookie)
#pragma once

#include <string>
#include <string_view>

namespace weft::bpf {

inline constexpr std::string_view kBpffsRoot = "/sys/fs/bpf";
inline constexpr std::string_view kMapsSubdir = "maps";
inline constexpr std::string_view kLinksSubdir = "links";

inline std::string DefaultPinDir(std::string_view node) {
  return std::string(kBpffsRoot) + "/weft/" + std::string(node);
}
inline std::string MapPin(std::string_view dir, std::string_view map) {
  return std::string(dir) + "/" + std::string(kMapsSubdir) + "/" + std::string(map);
}
inline std::string LinkPin(std::string_view dir, std::string_view link) {
  return std::string(dir) + "/" + std::string(kLinksSubdir) + "/" + std::string(link);
}

}  // namespace weft::bpf
