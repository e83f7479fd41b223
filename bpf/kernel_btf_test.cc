// The kernel BTF subset (kernel_btf.h) against libbpf's own reading of the whole kernel BTF.
#include "bpf/kernel_btf.h"

#include <bpf/btf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "bpf/relay.h"
#include "common/testing/root.h"
#include "gtest/gtest.h"

namespace weft::bpf {
namespace {

constexpr char kVmlinux[] = "/sys/kernel/btf/vmlinux";

#define SKIP_WITHOUT_KERNEL_BTF()                                                           \
  do {                                                                                      \
    if (::access(kVmlinux, R_OK) != 0)                                                      \
      GTEST_SKIP() << "needs the kernel's BTF (" << kVmlinux << ", CONFIG_DEBUG_INFO_BTF)"; \
  } while (0)

// (struct size, bit offset) of struct `s`'s member `m` in `btf`, found the way libbpf does.
std::pair<uint32_t, uint32_t> LibbpfOffset(const struct btf* btf, const char* s, const char* m) {
  int id = btf__find_by_name_kind(btf, s, BTF_KIND_STRUCT);
  EXPECT_GT(id, 0) << s;
  if (id <= 0) return {0, 0};
  const struct btf_type* t = btf__type_by_id(btf, static_cast<uint32_t>(id));
  const struct btf_member* mem = btf_members(t);
  for (int i = 0; i < btf_vlen(t); i++, mem++) {
    const char* name = btf__name_by_offset(btf, mem->name_off);
    if (name && std::string(name) == m)
      return {t->size, btf_member_bit_offset(t, static_cast<uint32_t>(i))};
  }
  ADD_FAILURE() << s << " has no member " << m;
  return {0, 0};
}

TEST(KernelBtf, SubsetHasLibbpfsOffsets) {
  SKIP_WITHOUT_KERNEL_BTF();
  const std::vector<KernelField> want = {
      {"tcp_sock", "bytes_acked"}, {"tcp_sock", "snd_una"}, {"sock_common", "skc_family"}};
  auto sub = CutKernelBtf(want);
  ASSERT_TRUE(sub.ok()) << sub.status();
  ASSERT_EQ(sub->fields.size(), want.size());

  struct btf* full = btf__load_vmlinux_btf();
  ASSERT_NE(full, nullptr);
  struct btf* mini = btf__new(sub->btf.data(), static_cast<uint32_t>(sub->btf.size()));
  ASSERT_NE(mini, nullptr) << "libbpf rejects the subset";
  for (const auto& f : sub->fields) {
    auto [size, off] = LibbpfOffset(full, f.field.struct_name.c_str(), f.field.field.c_str());
    EXPECT_EQ(f.struct_size, size) << f.field.struct_name;
    EXPECT_EQ(f.bit_offset, off) << f.field.struct_name << "." << f.field.field;
    auto [msize, moff] = LibbpfOffset(mini, f.field.struct_name.c_str(), f.field.field.c_str());
    EXPECT_EQ(msize, size);
    EXPECT_EQ(moff, off);
  }
  EXPECT_EQ(sub->fields[0].int_size, 8u);  // u64
  EXPECT_EQ(sub->fields[2].int_size, 2u);  // unsigned short
  EXPECT_LT(sub->btf.size(), 256u);
  btf__free(mini);
  btf__free(full);
}

TEST(KernelBtf, WhatItCannotCutIsAnError) {
  SKIP_WITHOUT_KERNEL_BTF();
  auto no_struct = CutKernelBtf({{"weft_no_such_struct", "x"}});
  EXPECT_TRUE(absl::IsNotFound(no_struct.status())) << no_struct.status();
  auto no_field = CutKernelBtf({{"tcp_sock", "weft_no_such_field"}});
  EXPECT_TRUE(absl::IsNotFound(no_field.status())) << no_field.status();
  auto not_int = CutKernelBtf({{"tcp_sock", "inet_conn"}});  // a struct member
  EXPECT_TRUE(absl::IsUnimplemented(not_int.status())) << not_int.status();
}

TEST(KernelBtf, NotBtfIsAnError) {
  char path[] = "/tmp/weft-kernel-btf-test-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const char junk[] = "this is not BTF at all, not even the header's magic";
  ASSERT_EQ(write(fd, junk, sizeof junk), static_cast<ssize_t>(sizeof junk));
  close(fd);
  auto r = CutKernelBtf({{"tcp_sock", "bytes_acked"}}, path);
  unlink(path);
  EXPECT_TRUE(absl::IsDataLoss(r.status())) << r.status();
}

int64_t StatusKib(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) return std::stoll(line.substr(line.find(':') + 1));
  return -1;
}

// libbpf reading the whole kernel BTF took ~11 MB for a moment (two copies of 5.5 MB and an
// index) per relay loaded; with the subset a load must not come near that.
TEST(KernelBtf, RelayLoadDoesNotReadTheWholeKernelBtf) {
  WEFT_SKIP_UNLESS_ROOT("loads a BPF program");
  SKIP_WITHOUT_KERNEL_BTF();
  auto path = KernelBtfSubsetPath({{"tcp_sock", "bytes_acked"}});
  ASSERT_TRUE(path.ok()) << path.status();
  const int64_t before = StatusKib("VmHWM:");
  for (int i = 0; i < 3; i++) {
    auto relay = SameNodeRelay::Load();
    ASSERT_TRUE(relay.ok()) << relay.status();
  }
  const int64_t after = StatusKib("VmHWM:");
  ASSERT_GT(before, 0);
  EXPECT_LT(after - before, 2048) << "VmHWM grew by " << (after - before) << " KiB";
}

}  // namespace
}  // namespace weft::bpf
