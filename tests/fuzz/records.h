// Input framing shared by the fuzzers whose parser reads a sequence of messages (handoff
// datagrams, config stream responses): the input is records of [flags:1][length:2 LE][payload],
// the last one cut short if the input ends. Seeds are built by tests/fuzz/make_seeds.sh.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace weft::fuzz {

struct Record {
  uint8_t flags = 0;
  std::string_view payload;
};

inline std::vector<Record> SplitRecords(const uint8_t* data, size_t size, size_t max_records) {
  std::vector<Record> out;
  size_t i = 0;
  while (i < size && out.size() < max_records) {
    Record r;
    r.flags = data[i++];
    size_t len = 0;
    if (i < size) len = data[i++];
    if (i < size) len |= static_cast<size_t>(data[i++]) << 8;
    if (len > size - i) len = size - i;
    r.payload = std::string_view(reinterpret_cast<const char*>(data + i), len);
    i += len;
    out.push_back(r);
  }
  return out;
}

}  // namespace weft::fuzz
