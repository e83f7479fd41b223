#include "bpf/connect_deny.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <netinet/in.h>

#include <cerrno>
#include <cstring>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "bpf/map_ops.h"
#include "common/status.h"

namespace weft::bpf {
namespace {

constexpr char kDenyMap[] = "weft_connect_deny";
constexpr char kCountsMap[] = "weft_deny_counts";

weft_deny_key KeyOf(const ConnectDenyEntry& e) {
  weft_deny_key k{};
  k.netns_cookie = e.netns_cookie;
  internal::ToMapped(e.addr, k.addr);
  k.port = htons(e.port);
  return k;
}

weft_deny_value ValueOf(const ConnectDenyEntry& e) {
  return weft_deny_value{
      .verdict = e.deny ? uint32_t{WEFT_DENY_VERDICT_DENY} : uint32_t{WEFT_DENY_VERDICT_PASS},
      .label_id = e.label_id};
}

ConnectDenyEntry EntryOf(const weft_deny_key& k, const weft_deny_value& v) {
  in6_addr a;
  std::memcpy(&a, k.addr, sizeof(a));
  return ConnectDenyEntry{k.netns_cookie, IpAddr::FromIn6(a), ntohs(k.port),
                          v.verdict == WEFT_DENY_VERDICT_DENY, v.label_id};
}

// Keys order as bytes: the struct has no implicit padding (bpf/layout_check.cc).
struct KeyLess {
  bool operator()(const weft_deny_key& a, const weft_deny_key& b) const {
    return std::memcmp(&a, &b, sizeof(a)) < 0;
  }
};

}  // namespace

absl::StatusOr<std::unique_ptr<ConnectDenyMap>> ConnectDenyMap::Open(const std::string& pin_dir) {
  if (pin_dir.empty()) return absl::InvalidArgumentError("ConnectDenyMap::Open: pin_dir is empty");
  WEFT_ASSIGN_OR_RETURN(UniqueFd deny, internal::OpenPinnedMap(pin_dir, kDenyMap, BPF_MAP_TYPE_HASH,
                                                               sizeof(weft_deny_key)));
  WEFT_ASSIGN_OR_RETURN(
      UniqueFd counts,
      internal::OpenPinnedMap(pin_dir, kCountsMap, BPF_MAP_TYPE_PERCPU_ARRAY, sizeof(uint32_t)));
  return std::unique_ptr<ConnectDenyMap>(new ConnectDenyMap(std::move(deny), std::move(counts)));
}

absl::StatusOr<std::vector<ConnectDenyEntry>> ConnectDenyMap::Entries() const {
  // Keys first, values after: deleting while walking with get_next_key restarts the walk.
  std::vector<weft_deny_key> keys;
  weft_deny_key k{}, cursor{};
  bool first = true;
  while (bpf_map_get_next_key(deny_.get(), first ? nullptr : &cursor, &k) == 0) {
    first = false;
    cursor = k;
    keys.push_back(k);
    if (keys.size() > 2 * WEFT_CONNECT_DENY_ENTRIES) break;  // bounded, whatever happens
  }
  std::vector<ConnectDenyEntry> out;
  out.reserve(keys.size());
  for (const weft_deny_key& key : keys) {
    weft_deny_value v{};
    if (bpf_map_lookup_elem(deny_.get(), &key, &v) != 0) {
      if (errno == ENOENT) continue;
      return internal::ErrnoStatus(errno, absl::StrCat("reading ", kDenyMap));
    }
    out.push_back(EntryOf(key, v));
  }
  return out;
}

absl::Status ConnectDenyMap::Clear() {
  WEFT_ASSIGN_OR_RETURN(auto old, Entries());
  for (const ConnectDenyEntry& e : old) {
    weft_deny_key k = KeyOf(e);
    WEFT_RETURN_IF_ERROR(internal::DeleteFromMap(deny_.get(), kDenyMap, &k));
  }
  return absl::OkStatus();
}

absl::Status ConnectDenyMap::Sync(const std::vector<ConnectDenyEntry>& entries) {
  if (entries.size() > WEFT_CONNECT_DENY_ENTRIES) {
    return absl::ResourceExhaustedError(
        absl::StrCat(entries.size(), " deny-at-connect entries do not fit in ", kDenyMap, " (",
                     WEFT_CONNECT_DENY_ENTRIES, " entries); nothing changed"));
  }
  for (const ConnectDenyEntry& e : entries) {
    if (e.label_id >= WEFT_DENY_LABELS) {
      return absl::InvalidArgumentError(
          absl::StrCat("deny-at-connect label id ", e.label_id, " >= ", WEFT_DENY_LABELS));
    }
  }
  WEFT_ASSIGN_OR_RETURN(auto old, Entries());
  std::map<weft_deny_key, weft_deny_value, KeyLess> want, have;
  for (const ConnectDenyEntry& e : entries) want[KeyOf(e)] = ValueOf(e);
  for (const ConnectDenyEntry& e : old) have[KeyOf(e)] = ValueOf(e);

  auto same = [](const weft_deny_value& a, const weft_deny_value& b) {
    return a.verdict == b.verdict && a.label_id == b.label_id;
  };
  absl::Status st;
  // Every entry of `verdict` the map has and `want` lacks goes.
  auto remove = [&](uint32_t verdict) {
    for (const auto& [k, v] : have) {
      if (!st.ok()) return;
      if (v.verdict == verdict && !want.contains(k))
        st = internal::DeleteFromMap(deny_.get(), kDenyMap, &k);
    }
  };
  // Every entry of `verdict` in `want` that the map lacks or holds otherwise is written.
  auto upsert = [&](uint32_t verdict) {
    for (const auto& [k, v] : want) {
      if (!st.ok()) return;
      if (v.verdict != verdict) continue;
      auto it = have.find(k);
      if (it == have.end() || !same(it->second, v))
        st = internal::UpdateMap(deny_.get(), kDenyMap, &k, &v);
    }
  };
  // The order is the guarantee that no step in between denies what neither set denies: a deny
  // goes before the exceptions it had go, a new exception is in before the deny it carves.
  remove(WEFT_DENY_VERDICT_DENY);  // 1. denies that go away,
  upsert(WEFT_DENY_VERDICT_PASS);  //    then every new or changed pass exception;
  upsert(WEFT_DENY_VERDICT_DENY);  // 2. new or changed denies;
  remove(WEFT_DENY_VERDICT_PASS);  // 3. exceptions that go away.
  if (!st.ok()) {
    absl::Status cleared = Clear();
    return absl::Status(
        st.code(), absl::StrCat(st.message(), "; every deny-at-connect entry removed",
                                cleared.ok() ? "" : " (that failed too: ",
                                cleared.ok() ? "" : cleared.message(), cleared.ok() ? "" : ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::map<uint32_t, uint64_t>> ConnectDenyMap::Counts(
    const std::vector<uint32_t>& label_ids) const {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return internal::ErrnoStatus(ncpu, "counting possible CPUs");
  std::vector<uint64_t> per_cpu(static_cast<size_t>(ncpu));
  std::map<uint32_t, uint64_t> out;
  for (uint32_t id : label_ids) {
    if (id >= WEFT_DENY_LABELS) continue;
    if (bpf_map_lookup_elem(counts_.get(), &id, per_cpu.data()) != 0) {
      return internal::ErrnoStatus(errno, absl::StrCat("reading ", kCountsMap));
    }
    uint64_t sum = 0;
    for (uint64_t v : per_cpu) sum += v;
    out[id] = sum;
  }
  return out;
}

absl::Status ConnectDenyMap::ResetCounts() {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return internal::ErrnoStatus(ncpu, "counting possible CPUs");
  std::vector<uint64_t> zeros(static_cast<size_t>(ncpu), 0);
  for (uint32_t id = 0; id < WEFT_DENY_LABELS; ++id)
    WEFT_RETURN_IF_ERROR(internal::UpdateMap(counts_.get(), kCountsMap, &id, zeros.data()));
  return absl::OkStatus();
}

}  // namespace weft::bpf
