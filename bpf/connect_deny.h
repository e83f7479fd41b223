// ztunnel's writer of the deny-at-connect map (issue 16 §5, docs/security.md "Deny at
// connect"): weft_connect_deny and its per-label counters weft_deny_counts, pinned by
// weft-agent with the outbound capture maps (bpf/pins.h). ztunnel compiles the entries
// (ztunnel/rbac/connect_deny.h) and Sync()s them on every config or pod change; the connect4/6
// programs read them (bpf/lib/connect.h).
//
// Thread-safety: none; one owner thread. Counts() only reads and may run concurrently with
// Sync().
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/net.h"
#include "common/unique_fd.h"
#include "shared/capture.h"

namespace weft::bpf {

// One entry: connects from the netns `netns_cookie` to `addr`:`port` (host order; 0 = every
// port of `addr` without an entry of its own) fail when `deny`, and bump weft_deny_counts
// at `label_id`. A `deny == false` entry is an exception to that address's port-0 entry.
struct ConnectDenyEntry {
  uint64_t netns_cookie = 0;
  IpAddr addr;
  uint16_t port = 0;
  bool deny = true;
  uint32_t label_id = 0;  // < WEFT_DENY_LABELS

  bool operator==(const ConnectDenyEntry&) const = default;
};

class ConnectDenyMap {
 public:
  // Opens <pin_dir>/maps/weft_connect_deny and weft_deny_counts. Errors as PinnedMaps::Open
  // (NotFound: an agent of an older version, which does not pin them).
  static absl::StatusOr<std::unique_ptr<ConnectDenyMap>> Open(const std::string& pin_dir);
  // Over map fds got another way (OutboundCapture::ConnectDeny for an unpinned object).
  static std::unique_ptr<ConnectDenyMap> FromFds(UniqueFd deny, UniqueFd counts) {
    return std::unique_ptr<ConnectDenyMap>(new ConnectDenyMap(std::move(deny), std::move(counts)));
  }

  // Makes the map hold exactly `entries` (at most WEFT_CONNECT_DENY_ENTRIES; more is
  // ResourceExhausted and nothing changes). Ordered so that no connect is ever denied that
  // neither the old nor the new set denies: removed denies and every pass exception go first,
  // then the new denies, then the removed exceptions. On any failure every deny entry is
  // removed (fall back to not denying: the destination still decides) and the error returned.
  absl::Status Sync(const std::vector<ConnectDenyEntry>& entries);

  // Removes every entry.
  absl::Status Clear();

  // The entries in the map now (for tests and the config dump).
  absl::StatusOr<std::vector<ConnectDenyEntry>> Entries() const;

  // Denied connects counted at each of `label_ids`, summed over CPUs.
  absl::StatusOr<std::map<uint32_t, uint64_t>> Counts(const std::vector<uint32_t>& label_ids) const;
  // Zeroes every counter (a ztunnel that starts assigns label ids afresh).
  absl::Status ResetCounts();

 private:
  ConnectDenyMap(UniqueFd deny, UniqueFd counts)
      : deny_(std::move(deny)), counts_(std::move(counts)) {}
  UniqueFd deny_;
  UniqueFd counts_;
};

}  // namespace weft::bpf
