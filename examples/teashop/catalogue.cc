#include "examples/teashop/catalogue.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <map>
#include <random>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace weft::teashop {
namespace {

struct CategoryInfo {
  const char* name;
  std::vector<const char*> origins;
  std::vector<const char*> styles;
  int64_t base_price_cents;
};

const std::vector<CategoryInfo>& CategoryTable() {
  static const std::vector<CategoryInfo> kTable = {
      {"black",
       {"Assam", "Darjeeling", "Ceylon", "Kenya", "Yunnan", "Nepal"},
       {"Breakfast", "Gold", "Estate", "Tippy", "Orange Pekoe"},
       650},
      {"green",
       {"Uji", "Shizuoka", "Zhejiang", "Anhui", "Kagoshima"},
       {"Sencha", "Gyokuro", "Long Jing", "Mao Feng", "Bancha"},
       800},
      {"white",
       {"Fujian", "Yunnan", "Darjeeling", "Nepal"},
       {"Silver Needle", "White Peony", "Shou Mei", "Moonlight"},
       1200},
      {"oolong",
       {"Taiwan", "Fujian", "Guangdong"},
       {"Tie Guan Yin", "Dong Ding", "Milk Oolong", "Dan Cong", "Oriental Beauty"},
       1100},
      {"puerh", {"Yunnan", "Menghai", "Lincang"}, {"Sheng", "Shou", "Mini Tuo", "Cake"}, 1400},
      {"herbal",
       {"Egypt", "Morocco", "Provence", "Bavaria"},
       {"Chamomile", "Peppermint", "Lemon Verbena", "Hibiscus", "Linden"},
       500},
      {"rooibos", {"Cederberg", "Cape"}, {"Red", "Green Rooibos", "Honeybush", "Chai"}, 550},
      {"matcha",
       {"Uji", "Nishio", "Kagoshima"},
       {"Ceremonial", "Usucha", "Koicha", "Culinary"},
       1800},
  };
  return kTable;
}

const std::vector<const char*>& Adjectives() {
  static const std::vector<const char*> kAdj = {
      "Misty", "Golden",  "Imperial", "Mountain", "Spring", "Autumn", "Velvet", "Old Tree",
      "Wild",  "Morning", "Evening",  "Royal",    "Jade",   "Cloud",  "River",  "Amber",
      "Noble", "Harvest", "Summer",   "Winter",   "Silver", "Dragon", "Lotus",  "Temple"};
  return kAdj;
}

const std::vector<std::string>& Notes() {
  static const std::vector<std::string> kNotes = {
      "malty",  "floral",  "smoky",    "honey",    "citrus",   "grassy",  "nutty",  "earthy",
      "fruity", "cocoa",   "spicy",    "vegetal",  "creamy",   "mineral", "toasty", "jasmine",
      "peach",  "apricot", "caramel",  "woody",    "umami",    "sweet",   "brisk",  "buttery",
      "orchid", "rose",    "mint",     "ginger",   "vanilla",  "berry",   "lychee", "seaweed",
      "pine",   "plum",    "cinnamon", "chestnut", "bergamot", "melon",   "hay",    "molasses"};
  return kNotes;
}

const std::vector<const char*>& Phrases() {
  static const std::vector<const char*> kPhrases = {
      "picked at first light",  "rolled by hand",      "slowly withered",
      "from a family garden",   "aged in bamboo",      "steamed within hours",
      "grown above the clouds", "fired over charcoal", "shaded before harvest",
      "from a single estate",   "best brewed cooler",  "good for several infusions"};
  return kPhrases;
}

std::vector<std::string> Words(std::string_view s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (absl::ascii_isalnum(static_cast<unsigned char>(c))) {
      cur.push_back(absl::ascii_tolower(static_cast<unsigned char>(c)));
    } else if (!cur.empty()) {
      out.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) out.push_back(std::move(cur));
  return out;
}

}  // namespace

nlohmann::json TeaJson(const Tea& t) {
  return {{"id", t.id},
          {"name", t.name},
          {"category", t.category},
          {"origin", t.origin},
          {"description", t.description},
          {"notes", t.notes},
          {"price_cents", t.price_cents}};
}

Catalogue::Catalogue(int size, uint32_t seed) {
  size = std::clamp(size, 1, kMaxSize);
  // Raw engine output (not std::*_distribution, whose results vary between standard libraries),
  // so every role of one build derives the same catalogue.
  std::mt19937 rng(seed);
  auto pick = [&](size_t n) { return static_cast<size_t>(rng() % n); };
  const auto& cats = CategoryTable();
  const auto& notes = Notes();
  teas_.reserve(size);
  text_.reserve(size);
  for (int id = 1; id <= size; ++id) {
    const CategoryInfo& c = cats[(id - 1) % cats.size()];
    Tea t;
    t.id = id;
    t.category = c.name;
    t.origin = c.origins[pick(c.origins.size())];
    t.name = absl::StrCat(Adjectives()[pick(Adjectives().size())], " ", t.origin, " ",
                          c.styles[pick(c.styles.size())], " No. ", id);
    const size_t n_notes = 2 + pick(3);
    while (t.notes.size() < n_notes) {
      const std::string& note = notes[pick(notes.size())];
      if (std::find(t.notes.begin(), t.notes.end(), note) == t.notes.end()) t.notes.push_back(note);
    }
    t.description = absl::StrCat("A ", absl::StrJoin(t.notes, ", "), " ", t.category, " tea from ",
                                 t.origin, ", ", Phrases()[pick(Phrases().size())], ".");
    t.price_cents = c.base_price_cents + static_cast<int64_t>(pick(40)) * 25;
    text_.push_back(absl::AsciiStrToLower(
        absl::StrCat(t.name, " ", t.category, " ", t.origin, " ", t.description)));
    teas_.push_back(std::move(t));
  }
}

const Tea* Catalogue::Find(int id) const {
  if (id < 1 || id > size()) return nullptr;
  return &teas_[id - 1];
}

const std::vector<std::string>& Catalogue::Categories() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& c : CategoryTable()) v.push_back(c.name);
    return v;
  }();
  return kNames;
}

const std::vector<std::string>& Catalogue::FlavourNotes() {
  return Notes();
}

int Catalogue::CategoryCount(std::string_view category) const {
  return static_cast<int>(std::count_if(teas_.begin(), teas_.end(),
                                        [&](const Tea& t) { return t.category == category; }));
}

Page Catalogue::Search(std::string_view query, std::string_view category, int page,
                       int size) const {
  Page out;
  out.page = std::max(page, 1);
  out.size = std::max(size, 1);
  const std::vector<std::string> words = Words(query);
  const int64_t first = static_cast<int64_t>(out.page - 1) * out.size;
  for (size_t i = 0; i < teas_.size(); ++i) {
    if (!category.empty() && teas_[i].category != category) continue;
    bool all = true;
    for (const std::string& w : words) {
      if (text_[i].find(w) == std::string::npos) {
        all = false;
        break;
      }
    }
    if (!all) continue;
    if (out.total >= first && static_cast<int>(out.items.size()) < out.size) {
      out.items.push_back(&teas_[i]);
    }
    ++out.total;
  }
  return out;
}

SimilarityModel::SimilarityModel(const Catalogue& catalogue, int dims)
    : catalogue_(catalogue), dims_(std::clamp(dims, 8, 65536)) {
  const int n = catalogue.size();
  std::vector<std::vector<std::string>> docs(n);
  std::map<std::string, int> df;
  for (int i = 0; i < n; ++i) {
    const Tea& t = catalogue.teas()[i];
    // Category and origin count twice: they say more about a tea than a phrase does.
    docs[i] = Words(absl::StrCat(t.description, " ", t.category, " ", t.origin));
    std::vector<std::string> uniq = docs[i];
    std::sort(uniq.begin(), uniq.end());
    uniq.erase(std::unique(uniq.begin(), uniq.end()), uniq.end());
    for (const std::string& w : uniq) ++df[w];
  }
  vectors_.assign(static_cast<size_t>(n) * dims_, 0.f);
  std::hash<std::string> hash;
  for (int i = 0; i < n; ++i) {
    float* v = &vectors_[static_cast<size_t>(i) * dims_];
    for (const std::string& w : docs[i]) {
      const double idf = std::log(1.0 + static_cast<double>(n) / df[w]);
      v[hash(w) % dims_] += static_cast<float>(idf);
    }
    double norm = 0;
    for (int d = 0; d < dims_; ++d) norm += static_cast<double>(v[d]) * v[d];
    norm = std::sqrt(norm);
    if (norm > 0) {
      for (int d = 0; d < dims_; ++d) v[d] = static_cast<float>(v[d] / norm);
    }
  }
}

double SimilarityModel::Dot(const float* a, const float* b) const {
  double s = 0;
  for (int d = 0; d < dims_; ++d) s += static_cast<double>(a[d]) * b[d];
  return s;
}

std::vector<SimilarityModel::Scored> SimilarityModel::Similar(const std::vector<int>& for_ids,
                                                              int n, int passes) const {
  const int size = catalogue_.size();
  n = std::clamp(n, 1, size);
  passes = std::clamp(passes, 0, 1000);
  std::vector<float> query(dims_, 0.f);
  std::vector<bool> excluded(size, false);
  int used = 0;
  for (int id : for_ids) {
    if (id < 1 || id > size) continue;
    excluded[id - 1] = true;
    const float* v = &vectors_[static_cast<size_t>(id - 1) * dims_];
    for (int d = 0; d < dims_; ++d) query[d] += v[d];
    ++used;
  }
  if (used == 0) {
    for (int i = 0; i < size; ++i) {
      const float* v = &vectors_[static_cast<size_t>(i) * dims_];
      for (int d = 0; d < dims_; ++d) query[d] += v[d];
    }
  }
  std::vector<double> score(size);
  for (int i = 0; i < size; ++i)
    score[i] = Dot(query.data(), &vectors_[static_cast<size_t>(i) * dims_]);

  auto top = [&]() {
    std::vector<int> idx;
    for (int i = 0; i < size; ++i) {
      if (!excluded[i]) idx.push_back(i);
    }
    const size_t k = std::min<size_t>(n, idx.size());
    std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
      return score[a] != score[b] ? score[a] > score[b] : a < b;
    });
    idx.resize(k);
    return idx;
  };
  for (int p = 0; p < passes; ++p) {
    const std::vector<int> cand = top();
    if (cand.empty()) break;
    std::vector<double> next(size, 0);
    for (int i = 0; i < size; ++i) {
      const float* v = &vectors_[static_cast<size_t>(i) * dims_];
      double hop = 0;
      for (int c : cand) hop += Dot(v, &vectors_[static_cast<size_t>(c) * dims_]);
      next[i] = score[i] + 0.5 * hop / static_cast<double>(cand.size());
    }
    score.swap(next);
  }
  std::vector<Scored> out;
  for (int i : top()) out.push_back({i + 1, score[i]});
  return out;
}

}  // namespace weft::teashop
