// The few kernel types a CO-RE program needs, cut from the running kernel's BTF without loading
// all of it (docs/performance.md, "ztunnel memory").
//
// libbpf resolves a program's CO-RE relocations against the kernel's BTF: it reads all of
// /sys/kernel/btf/vmlinux (5.5 MB on 6.18) into memory, copies it once more, and indexes every
// type, ~11 MB of anonymous memory for a moment per object loaded. In ztunnel that moment was
// most of its peak RSS. libbpf takes the target BTF from `btf_custom_path` instead when it is
// given; KernelBtfSubset streams the kernel's BTF through a 64 KiB buffer (libbpf's parser
// has no streaming mode: it is what costs the memory) and writes, with libbpf's BTF writer
// (btf__add_int/struct/field), a BTF holding just the named struct fields (name, bit offset,
// integer type), which is all a field relocation reads. The result is the same offsets libbpf would have found (the test compares).
//
// Supported: direct members of a named struct whose type, after typedefs and qualifiers, is an
// integer (not a bit-field). Anything else is an error; the caller then lets libbpf read the
// whole BTF as before.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace weft::bpf {

struct KernelField {
  std::string struct_name;  // e.g. "tcp_sock"
  std::string field;        // e.g. "bytes_acked"
};

struct KernelFieldInfo {
  KernelField field;
  uint32_t struct_size = 0;  // bytes
  uint32_t bit_offset = 0;   // of the field in its struct
  uint32_t int_size = 0;     // bytes of the field's integer type
};

struct KernelBtfSubset {
  std::vector<KernelFieldInfo> fields;
  std::string btf;  // raw BTF (a valid `btf_custom_path` file's content)
};

// Reads `path` (the kernel's BTF) and cuts `fields` out of it.
absl::StatusOr<KernelBtfSubset> CutKernelBtf(const std::vector<KernelField>& fields,
                                             const std::string& path = "/sys/kernel/btf/vmlinux");

// The subset written to a sealed memfd held for the life of the process: a path to give libbpf
// as `btf_custom_path` ("/proc/self/fd/N"). Computed once per set of fields' first caller; the
// same fields must be asked every time (one program: the relay).
absl::StatusOr<std::string> KernelBtfSubsetPath(const std::vector<KernelField>& fields);

}  // namespace weft::bpf
