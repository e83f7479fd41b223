// The tea shop's data: a catalogue of teas generated from a seed (every role that needs it builds
// the same one, as TeaStore's services all read one database), text search with pagination, and
// the feature vectors the recommendation service compares.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "nlohmann/json.hpp"

namespace weft::teashop {

struct Tea {
  int id = 0;  // 1..size
  std::string name, category, origin, description;
  std::vector<std::string> notes;  // flavour notes, also in the description
  int64_t price_cents = 0;
};
nlohmann::json TeaJson(const Tea& t);

struct Page {
  int total = 0;  // matches before pagination
  int page = 1, size = 0;
  std::vector<const Tea*> items;
};

// Immutable after construction: safe to share between threads.
class Catalogue {
 public:
  static constexpr int kDefaultSize = 300;
  static constexpr int kMaxSize = 100000;
  // `size` teas (clamped to 1..kMaxSize), identical for identical (size, seed).
  explicit Catalogue(int size = kDefaultSize, uint32_t seed = 7);

  int size() const { return static_cast<int>(teas_.size()); }
  const std::vector<Tea>& teas() const { return teas_; }
  const Tea* Find(int id) const;  // nullptr when unknown
  static const std::vector<std::string>& Categories();
  static const std::vector<std::string>& FlavourNotes();  // words a search will find
  int CategoryCount(std::string_view category) const;

  // Teas whose text (name, category, origin, description) contains every whitespace-separated
  // word of `query` (case-insensitive) and, if `category` is not empty, of that category; in id
  // order, page `page` (1-based) of `size` items. Pages past the end are empty.
  Page Search(std::string_view query, std::string_view category, int page, int size) const;

 private:
  std::vector<Tea> teas_;
  std::vector<std::string> text_;  // lower-cased searchable text per tea
};

// Term vectors over the catalogue's words (hashing trick into `dims` buckets, TF-IDF weighted,
// L2-normalised), the recommendation service's model. Built once; Similar() works per request.
class SimilarityModel {
 public:
  SimilarityModel(const Catalogue& catalogue, int dims = 256);

  struct Scored {
    int id = 0;
    double score = 0;
  };
  // The `n` teas most similar to the set `for_ids` (cosine to their mean vector; with no ids, to
  // the catalogue's centroid, i.e. the most "typical" teas), excluding `for_ids`. Each of
  // `passes` extra passes re-ranks every tea by its similarity to the current top candidates
  // (item-to-item, 2 hops): passes * n * size * dims multiply-adds, the tunable CPU cost.
  std::vector<Scored> Similar(const std::vector<int>& for_ids, int n, int passes) const;
  int dims() const { return dims_; }

 private:
  const Catalogue& catalogue_;
  int dims_;
  std::vector<float> vectors_;  // size * dims, row per tea (id - 1)
  double Dot(const float* a, const float* b) const;
};

}  // namespace weft::teashop
