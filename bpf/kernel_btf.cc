#include "bpf/kernel_btf.h"

#include <bpf/btf.h>
#include <fcntl.h>
#include <linux/btf.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/unique_fd.h"

namespace weft::bpf {
namespace {

absl::Status Errno(int err, std::string_view what) {
  return absl::UnavailableError(absl::StrCat(std::string(what), ": ", strerror(err)));
}

// Sequential reads of a region of a file through a fixed buffer.
class Reader {
 public:
  Reader(int fd, uint64_t begin, uint64_t end) : fd_(fd), pos_(begin), end_(end) {}
  bool done() const { return pos_ >= end_ && off_ == len_; }

  absl::Status Read(void* out, size_t n) {
    auto* p = static_cast<char*>(out);
    while (n > 0) {
      if (off_ == len_) {
        if (auto st = Fill(); !st.ok()) return st;
      }
      size_t k = std::min(n, len_ - off_);
      if (p) {
        memcpy(p, buf_ + off_, k);
        p += k;
      }
      off_ += k;
      n -= k;
    }
    return absl::OkStatus();
  }
  absl::Status Skip(size_t n) { return Read(nullptr, n); }
  // The next chunk of whatever is buffered (refilled when empty); empty at the end.
  absl::StatusOr<std::string_view> Chunk() {
    if (off_ == len_ && pos_ < end_) {
      if (auto st = Fill(); !st.ok()) return st;
    }
    std::string_view v(buf_ + off_, len_ - off_);
    off_ = len_;
    return v;
  }

 private:
  absl::Status Fill() {
    if (pos_ >= end_) return absl::DataLossError("kernel BTF: truncated");
    size_t want = static_cast<size_t>(std::min<uint64_t>(sizeof buf_, end_ - pos_));
    ssize_t k;
    do k = pread(fd_, buf_, want, static_cast<off_t>(pos_));
    while (k < 0 && errno == EINTR);
    if (k < 0) return Errno(errno, "reading the kernel BTF");
    if (k == 0) return absl::DataLossError("kernel BTF: truncated");
    pos_ += static_cast<uint64_t>(k);
    off_ = 0;
    len_ = static_cast<size_t>(k);
    return absl::OkStatus();
  }

  int fd_;
  uint64_t pos_, end_;
  size_t off_ = 0, len_ = 0;
  char buf_[64 << 10];
};

// Bytes after a struct btf_type for its kind (linux/btf.h), or nullopt for a kind this code
// does not know (a newer kernel).
std::optional<size_t> ExtraBytes(uint32_t kind, uint32_t vlen) {
  switch (kind) {
    case BTF_KIND_INT:
    case BTF_KIND_VAR:
    case BTF_KIND_DECL_TAG:
      return 4;
    case BTF_KIND_PTR:
    case BTF_KIND_FWD:
    case BTF_KIND_TYPEDEF:
    case BTF_KIND_VOLATILE:
    case BTF_KIND_CONST:
    case BTF_KIND_RESTRICT:
    case BTF_KIND_FUNC:
    case BTF_KIND_FLOAT:
    case BTF_KIND_TYPE_TAG:
      return 0;
    case BTF_KIND_ARRAY:
      return sizeof(struct btf_array);
    case BTF_KIND_STRUCT:
    case BTF_KIND_UNION:
      return size_t{vlen} * sizeof(struct btf_member);
    case BTF_KIND_ENUM:
      return size_t{vlen} * sizeof(struct btf_enum);
    case BTF_KIND_FUNC_PROTO:
      return size_t{vlen} * sizeof(struct btf_param);
    case BTF_KIND_DATASEC:
      return size_t{vlen} * sizeof(struct btf_var_secinfo);
    case BTF_KIND_ENUM64:
      return size_t{vlen} * 12;  // struct btf_enum64
    default:
      return std::nullopt;
  }
}

uint32_t Kind(uint32_t info) {
  return (info >> 24) & 0x1f;
}
uint32_t Vlen(uint32_t info) {
  return info & 0xffff;
}
bool KindFlag(uint32_t info) {
  return (info >> 31) != 0;
}

struct Header {
  btf_header h;
  uint64_t types_begin, types_end, strs_begin, strs_end;
};

absl::StatusOr<Header> ReadHeader(int fd, uint64_t file_size) {
  Header out{};
  ssize_t k = pread(fd, &out.h, sizeof out.h, 0);
  if (k < 0) return Errno(errno, "reading the kernel BTF");
  if (k != static_cast<ssize_t>(sizeof out.h) || out.h.magic != BTF_MAGIC)
    return absl::DataLossError("kernel BTF: not BTF of this byte order");
  if (out.h.hdr_len < sizeof out.h) return absl::DataLossError("kernel BTF: short header");
  out.types_begin = uint64_t{out.h.hdr_len} + out.h.type_off;
  out.types_end = out.types_begin + out.h.type_len;
  out.strs_begin = uint64_t{out.h.hdr_len} + out.h.str_off;
  out.strs_end = out.strs_begin + out.h.str_len;
  if (out.types_end > file_size || out.strs_end > file_size)
    return absl::DataLossError("kernel BTF: sections past the end of the file");
  return out;
}

// Offsets in the string section of each of `names` (BTF deduplicates strings, but any number is
// handled).
absl::StatusOr<std::map<std::string, std::set<uint32_t>>> FindStrings(
    int fd, const Header& hd, const std::set<std::string>& names) {
  size_t longest = 0;
  for (const auto& n : names) longest = std::max(longest, n.size());
  std::map<std::string, std::set<uint32_t>> out;
  Reader r(fd, hd.strs_begin, hd.strs_end);
  std::string cur;
  bool too_long = false;
  uint32_t start = 0, at = 0;
  while (!r.done()) {
    auto chunk = r.Chunk();
    if (!chunk.ok()) return chunk.status();
    for (char c : *chunk) {
      if (c == '\0') {
        if (!too_long && names.count(cur)) out[cur].insert(start);
        cur.clear();
        too_long = false;
        start = at + 1;
      } else if (!too_long) {
        if (cur.size() == longest)
          too_long = true;
        else
          cur.push_back(c);
      }
      at++;
    }
  }
  return out;
}

absl::StatusOr<std::string> StringAt(int fd, const Header& hd, uint32_t off) {
  char buf[256];
  if (hd.strs_begin + off >= hd.strs_end) return absl::DataLossError("kernel BTF: bad name offset");
  size_t want =
      static_cast<size_t>(std::min<uint64_t>(sizeof buf, hd.strs_end - hd.strs_begin - off));
  ssize_t k = pread(fd, buf, want, static_cast<off_t>(hd.strs_begin + off));
  if (k < 0) return Errno(errno, "reading the kernel BTF");
  const void* nul = memchr(buf, '\0', static_cast<size_t>(k));
  if (!nul) return absl::DataLossError("kernel BTF: name too long");
  return std::string(buf, static_cast<size_t>(static_cast<const char*>(nul) - buf));
}

struct RawType {
  btf_type t;
  uint32_t int_data = 0;  // BTF_KIND_INT only
};

// One pass over the type section: `on_type(id, type, reader)` sees each type; it must consume
// exactly the bytes after the btf_type it is given when it returns true (false: skipped here).
template <typename F>
absl::Status ForEachType(int fd, const Header& hd, F&& on_type) {
  Reader r(fd, hd.types_begin, hd.types_end);
  uint32_t id = 1;
  while (!r.done()) {
    btf_type t;
    if (auto st = r.Read(&t, sizeof t); !st.ok()) return st;
    auto extra = ExtraBytes(Kind(t.info), Vlen(t.info));
    if (!extra)
      return absl::UnimplementedError(
          absl::StrCat("kernel BTF: type ", id, " has kind ", Kind(t.info), ", unknown here"));
    auto handled = on_type(id, t, r);
    if (!handled.ok()) return handled.status();
    if (!*handled) {
      if (auto st = r.Skip(*extra); !st.ok()) return st;
    }
    id++;
  }
  return absl::OkStatus();
}

// Where one asked field is in the kernel's BTF.
struct Found {
  uint32_t struct_id = 0;
  uint32_t struct_size = 0;
  uint32_t type_id = 0;  // the member's type
  uint32_t bit_offset = 0;
  bool member = false;
};

// One pass over the types: each asked struct and its asked members.
absl::StatusOr<std::vector<Found>> FindMembers(
    int fd, const Header& hd, const std::vector<KernelField>& fields,
    const std::map<std::string, std::set<uint32_t>>& offs) {
  auto has = [&](const std::string& n, uint32_t off) {
    auto it = offs.find(n);
    return it != offs.end() && it->second.count(off) > 0;
  };
  std::vector<Found> found(fields.size());
  auto pass =
      ForEachType(fd, hd, [&](uint32_t id, const btf_type& t, Reader& r) -> absl::StatusOr<bool> {
        if (Kind(t.info) != BTF_KIND_STRUCT) return false;
        bool wanted = false;
        for (const auto& f : fields) wanted |= has(f.struct_name, t.name_off);
        if (!wanted) return false;
        for (uint32_t i = 0; i < Vlen(t.info); i++) {
          btf_member m;
          if (auto s = r.Read(&m, sizeof m); !s.ok()) return s;
          for (size_t k = 0; k < fields.size(); k++) {
            if (!has(fields[k].struct_name, t.name_off)) continue;
            Found& f = found[k];
            if (f.struct_id != 0 && f.struct_id != id)
              return absl::FailedPreconditionError(
                  absl::StrCat("kernel BTF: more than one struct ", fields[k].struct_name));
            f.struct_id = id;
            f.struct_size = t.size;
            if (!has(fields[k].field, m.name_off)) continue;
            uint32_t bits = KindFlag(t.info) ? (m.offset >> 24) : 0;
            if (bits != 0)
              return absl::UnimplementedError(absl::StrCat(
                  "kernel BTF: ", fields[k].struct_name, ".", fields[k].field, " is a bit-field"));
            f.member = true;
            f.type_id = m.type;
            f.bit_offset = KindFlag(t.info) ? (m.offset & 0xffffff) : m.offset;
          }
        }
        return true;
      });
  if (!pass.ok()) return pass;
  for (size_t k = 0; k < fields.size(); k++) {
    if (found[k].struct_id == 0)
      return absl::NotFoundError(absl::StrCat("kernel BTF: no struct ", fields[k].struct_name));
    if (!found[k].member)
      return absl::NotFoundError(absl::StrCat("kernel BTF: struct ", fields[k].struct_name,
                                              " has no direct member ", fields[k].field));
  }
  return found;
}

// Follows each member's type through typedefs and qualifiers to an integer, one pass per step
// (a handful: u64 -> __u64 -> unsigned long long).
absl::StatusOr<std::vector<RawType>> ResolveIntegers(int fd, const Header& hd,
                                                     const std::vector<KernelField>& fields,
                                                     const std::vector<Found>& found) {
  auto err = [&](size_t k, const std::string& what) {
    return absl::UnimplementedError(
        absl::StrCat("kernel BTF: ", fields[k].struct_name, ".", fields[k].field, what));
  };
  std::vector<RawType> final_type(fields.size());
  std::vector<uint32_t> want(fields.size());
  for (size_t k = 0; k < fields.size(); k++) want[k] = found[k].type_id;
  for (int step = 0; step < 16; step++) {
    std::map<uint32_t, RawType> got;
    std::set<uint32_t> ids;
    for (size_t k = 0; k < fields.size(); k++)
      if (want[k] != 0) ids.insert(want[k]);
    if (ids.empty()) return final_type;
    auto pass =
        ForEachType(fd, hd, [&](uint32_t id, const btf_type& t, Reader& r) -> absl::StatusOr<bool> {
          if (!ids.count(id)) return false;
          RawType& rt = got[id];
          rt.t = t;
          if (Kind(t.info) != BTF_KIND_INT) return false;
          if (auto s = r.Read(&rt.int_data, 4); !s.ok()) return s;
          return true;
        });
    if (!pass.ok()) return pass;
    for (size_t k = 0; k < fields.size(); k++) {
      if (want[k] == 0) continue;
      auto it = got.find(want[k]);
      if (it == got.end())
        return absl::DataLossError(absl::StrCat("kernel BTF: no type ", want[k]));
      switch (Kind(it->second.t.info)) {
        case BTF_KIND_INT:
          final_type[k] = it->second;
          want[k] = 0;
          break;
        case BTF_KIND_TYPEDEF:
        case BTF_KIND_VOLATILE:
        case BTF_KIND_CONST:
        case BTF_KIND_RESTRICT:
        case BTF_KIND_TYPE_TAG:
          want[k] = it->second.t.type;
          if (want[k] == 0) return err(k, " is void");
          break;
        default:
          return err(k, absl::StrCat(" is not an integer (kind ", Kind(it->second.t.info), ")"));
      }
    }
  }
  for (size_t k = 0; k < fields.size(); k++)
    if (want[k] != 0) return err(k, ": typedef chain too long");
  return final_type;
}

// The subset, written with libbpf's BTF writer: the integer types, then one struct per struct
// name with the fields asked.
absl::StatusOr<std::string> WriteSubset(int fd, const Header& hd,
                                        const std::vector<KernelField>& fields,
                                        const std::vector<Found>& found,
                                        const std::vector<RawType>& ints_of) {
  std::unique_ptr<btf, void (*)(btf*)> b(btf__new_empty(), btf__free);
  if (!b) return Errno(errno, "btf__new_empty");
  std::map<std::tuple<std::string, uint32_t, uint32_t>, int> ints;  // name, size, encoding
  std::vector<int> int_id(fields.size());
  for (size_t k = 0; k < fields.size(); k++) {
    const RawType& it = ints_of[k];
    const uint32_t data = it.int_data;
    if (BTF_INT_OFFSET(data) != 0 || BTF_INT_BITS(data) != it.t.size * 8)
      return absl::UnimplementedError(absl::StrCat("kernel BTF: ", fields[k].struct_name, ".",
                                                   fields[k].field, " is a bit-field integer"));
    auto name = StringAt(fd, hd, it.t.name_off);
    if (!name.ok()) return name.status();
    const uint32_t enc = BTF_INT_ENCODING(data);
    auto [pos, fresh] = ints.emplace(std::make_tuple(*name, it.t.size, enc), 0);
    if (fresh) {
      pos->second = btf__add_int(b.get(), name->c_str(), static_cast<size_t>(it.t.size),
                                 static_cast<int>(enc));
      if (pos->second < 0) return Errno(-pos->second, "btf__add_int");
    }
    int_id[k] = pos->second;
  }
  std::map<std::string, std::vector<size_t>> by_struct;
  for (size_t k = 0; k < fields.size(); k++) by_struct[fields[k].struct_name].push_back(k);
  for (auto& [sname, ks] : by_struct) {
    std::sort(ks.begin(), ks.end(),
              [&](size_t a, size_t c) { return found[a].bit_offset < found[c].bit_offset; });
    if (int id = btf__add_struct(b.get(), sname.c_str(), found[ks[0]].struct_size); id < 0)
      return Errno(-id, "btf__add_struct");
    for (size_t k : ks) {
      if (int e =
              btf__add_field(b.get(), fields[k].field.c_str(), int_id[k], found[k].bit_offset, 0);
          e < 0)
        return Errno(-e, "btf__add_field");
    }
  }
  uint32_t size = 0;
  const void* raw = btf__raw_data(b.get(), &size);
  if (!raw) return Errno(errno, "btf__raw_data");
  return std::string(static_cast<const char*>(raw), size);
}

}  // namespace

absl::StatusOr<KernelBtfSubset> CutKernelBtf(const std::vector<KernelField>& fields,
                                             const std::string& path) {
  if (fields.empty()) return absl::InvalidArgumentError("no kernel fields asked");
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Errno(errno, absl::StrCat("opening ", path));
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno(errno, absl::StrCat("stat ", path));
  auto hd = ReadHeader(fd.get(), static_cast<uint64_t>(st.st_size));
  if (!hd.ok()) return hd.status();
  std::set<std::string> names;
  for (const auto& f : fields) {
    names.insert(f.struct_name);
    names.insert(f.field);
  }
  auto offs = FindStrings(fd.get(), *hd, names);
  if (!offs.ok()) return offs.status();
  auto found = FindMembers(fd.get(), *hd, fields, *offs);
  if (!found.ok()) return found.status();
  auto ints = ResolveIntegers(fd.get(), *hd, fields, *found);
  if (!ints.ok()) return ints.status();
  auto raw = WriteSubset(fd.get(), *hd, fields, *found, *ints);
  if (!raw.ok()) return raw.status();
  KernelBtfSubset out;
  out.btf = std::move(*raw);
  for (size_t k = 0; k < fields.size(); k++) {
    KernelFieldInfo fi;
    fi.field = fields[k];
    fi.struct_size = (*found)[k].struct_size;
    fi.bit_offset = (*found)[k].bit_offset;
    fi.int_size = (*ints)[k].t.size;
    out.fields.push_back(std::move(fi));
  }
  return out;
}

absl::StatusOr<std::string> KernelBtfSubsetPath(const std::vector<KernelField>& fields) {
  static std::mutex mu;
  static std::optional<std::vector<std::pair<std::string, std::string>>> asked;
  static absl::StatusOr<std::string> result = absl::UnknownError("not computed");
  std::vector<std::pair<std::string, std::string>> key;
  for (const auto& f : fields) key.emplace_back(f.struct_name, f.field);
  std::lock_guard<std::mutex> lock(mu);
  if (asked) {
    if (*asked != key)
      return absl::InvalidArgumentError("KernelBtfSubsetPath: asked for other fields than before");
    return result;
  }
  asked = key;
  result = [&]() -> absl::StatusOr<std::string> {
    auto sub = CutKernelBtf(fields);
    if (!sub.ok()) return sub.status();
    int fd = memfd_create("weft-kernel-btf", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return Errno(errno, "memfd_create");
    const std::string& b = sub->btf;
    for (size_t off = 0; off < b.size();) {
      ssize_t k = write(fd, b.data() + off, b.size() - off);
      if (k < 0 && errno == EINTR) continue;
      if (k <= 0) {
        int err = errno;
        close(fd);
        return Errno(err, "writing the kernel BTF subset");
      }
      off += static_cast<size_t>(k);
    }
    (void)fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
    return absl::StrCat("/proc/self/fd/", fd);  // held (not closed) for the process's life
  }();
  return result;
}

}  // namespace weft::bpf
