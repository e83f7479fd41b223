#include "examples/teashop/backends.h"

#include <openssl/evp.h>

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/status.h"

namespace weft::teashop {
namespace {

using json = nlohmann::json;

Response Error(http::status status, std::string_view msg) {
  return JsonResponse(status, json{{"error", msg}}.dump());
}
Response Ok(const json& j) {
  return JsonResponse(http::status::ok, j.dump());
}
Response MethodNotAllowed(const Request& req) {
  return Error(
      http::status::method_not_allowed,
      absl::StrCat("method ",
                   Av(std::string_view(req.method_string().data(), req.method_string().size())),
                   " not allowed on ",
                   Av(TargetPath(std::string_view(req.target().data(), req.target().size())))));
}

std::string_view Target(const Request& req) {
  return std::string_view(req.target().data(), req.target().size());
}

// An integer parameter: `def` when absent, an error naming it when not a number in range.
absl::StatusOr<int> IntParam(const std::map<std::string, std::string>& p, const std::string& name,
                             int def, int lo, int hi) {
  auto it = p.find(name);
  if (it == p.end() || it->second.empty()) return def;
  int v = 0;
  if (!absl::SimpleAtoi(it->second, &v) || v < lo || v > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat(name, "=\"", it->second, "\": expected an integer from ", lo, " to ", hi));
  }
  return v;
}

absl::StatusOr<std::vector<int>> IdList(std::string_view s, size_t max) {
  std::vector<int> ids;
  for (absl::string_view part : absl::StrSplit(Av(s), ',', absl::SkipEmpty())) {
    int id = 0;
    if (!absl::SimpleAtoi(part, &id)) {
      return absl::InvalidArgumentError(absl::StrCat("\"", part, "\" is not a tea id"));
    }
    ids.push_back(id);
    if (ids.size() > max) {
      return absl::InvalidArgumentError(absl::StrCat("more than ", max, " ids"));
    }
  }
  return ids;
}

Response StatusError(const absl::Status& s) {
  return Error(
      s.code() == absl::StatusCode::kNotFound ? http::status::not_found : http::status::bad_request,
      std::string(s.message()));
}

}  // namespace

absl::StatusOr<std::string> RequestUser(const Request& req) {
  std::string user;
  if (auto h = req.find("X-User"); h != req.end()) {
    user = std::string(h->value());
  } else {
    auto q = QueryParams(Target(req));
    user = q.count("user") ? q["user"] : "guest";
  }
  const bool valid =
      !user.empty() && user.size() <= 64 && std::all_of(user.begin(), user.end(), [](char c) {
        return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
               c == '-';
      });
  if (!valid) {
    return absl::InvalidArgumentError(
        absl::StrCat("user \"", user, "\": use 1 to 64 characters of A-Z a-z 0-9 . _ -"));
  }
  return user;
}

std::string OrderChecksum(std::string_view user, const std::vector<std::array<int64_t, 3>>& lines) {
  std::string text = absl::StrCat(Av(user), "\n");
  for (const auto& l : lines) absl::StrAppend(&text, l[0], ":", l[1], ":", l[2], "\n");
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(text.data(), text.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 15]);
  }
  return hex;
}

// ---------------------------------------------------------------------------------------------

CatalogueService::CatalogueService(std::shared_ptr<const Catalogue> catalogue)
    : catalogue_(std::move(catalogue)) {}

Response CatalogueService::Handle(const Request& req) const {
  const std::string_view path = TargetPath(Target(req));
  const auto params = QueryParams(Target(req));
  if (path == "/categories") {
    if (req.method() != http::verb::get) return MethodNotAllowed(req);
    json cats = json::array();
    for (const std::string& c : Catalogue::Categories()) {
      cats.push_back({{"name", c}, {"count", catalogue_->CategoryCount(c)}});
    }
    return Ok({{"categories", cats}});
  }
  if (path == "/teas") {
    if (req.method() != http::verb::get) return MethodNotAllowed(req);
    if (auto it = params.find("ids"); it != params.end()) {
      auto ids = IdList(it->second, 1000);
      if (!ids.ok()) return StatusError(ids.status());
      json items = json::array();
      for (int id : *ids) {
        if (const Tea* t = catalogue_->Find(id)) items.push_back(TeaJson(*t));
      }
      return Ok({{"items", items}});
    }
    auto page = IntParam(params, "page", 1, 1, 1000000);
    if (!page.ok()) return StatusError(page.status());
    auto size = IntParam(params, "size", 12, 1, kMaxPageSize);
    if (!size.ok()) return StatusError(size.status());
    std::string category;
    if (auto it = params.find("category"); it != params.end() && !it->second.empty()) {
      category = it->second;
      const auto& cats = Catalogue::Categories();
      if (std::find(cats.begin(), cats.end(), category) == cats.end()) {
        return Error(http::status::not_found, absl::StrCat("no category \"", category, "\""));
      }
    }
    const std::string q = params.count("q") ? params.at("q") : "";
    const Page p = catalogue_->Search(q, category, *page, *size);
    json items = json::array();
    for (const Tea* t : p.items) items.push_back(TeaJson(*t));
    return Ok({{"total", p.total}, {"page", p.page}, {"size", p.size}, {"items", items}});
  }
  if (path.starts_with("/teas/")) {
    if (req.method() != http::verb::get) return MethodNotAllowed(req);
    int id = 0;
    if (!absl::SimpleAtoi(Av(path.substr(6)), &id)) {
      return Error(http::status::bad_request,
                   absl::StrCat("\"", Av(path.substr(6)), "\" is not a tea id"));
    }
    const Tea* t = catalogue_->Find(id);
    if (t == nullptr) return Error(http::status::not_found, absl::StrCat("no tea ", id));
    return Ok(TeaJson(*t));
  }
  return Error(http::status::not_found, absl::StrCat("catalogue has no ", Av(path)));
}

// ---------------------------------------------------------------------------------------------

Response CartService::Handle(const Request& req) {
  const std::string_view path = TargetPath(Target(req));
  if (path != "/cart" && path != "/cart/items") {
    return Error(http::status::not_found, absl::StrCat("cart has no ", Av(path)));
  }
  auto user = RequestUser(req);
  if (!user.ok()) return StatusError(user.status());
  const bool items = path == "/cart/items";
  int add_id = 0, add_qty = 0, remove_id = 0;
  if (items && req.method() == http::verb::post) {
    json body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
    if (!body.is_object() || !body.contains("id") || !body["id"].is_number_integer()) {
      return Error(http::status::bad_request, "body: expected {\"id\": N, \"qty\": M}");
    }
    add_id = body["id"].get<int>();
    add_qty = body.value("qty", json(1)).is_number_integer() ? body.value("qty", 1) : 0;
    if (add_id < 1 || add_qty < 1 || add_qty > kMaxQty) {
      return Error(http::status::bad_request,
                   absl::StrCat("id must be positive and qty 1 to ", kMaxQty));
    }
  } else if (items && req.method() == http::verb::delete_) {
    auto p = QueryParams(Target(req));
    if (!absl::SimpleAtoi(p["id"], &remove_id)) {
      return Error(http::status::bad_request, "DELETE /cart/items needs ?id=N");
    }
  } else if (items || (req.method() != http::verb::get && req.method() != http::verb::delete_)) {
    return MethodNotAllowed(req);
  }

  std::lock_guard<std::mutex> l(mu_);
  auto it = carts_.find(*user);
  if (it == carts_.end()) {
    if (carts_.size() >= max_users_ && !order_.empty()) {
      // Oldest cart first: bounded memory however many users a load test invents.
      carts_.erase(order_.front());
      order_.pop_front();
    }
    it = carts_.emplace(*user, Cart{}).first;
    order_.push_back(*user);
  }
  Cart& cart = it->second;
  if (add_id != 0) {
    cart[add_id] = std::min(cart[add_id] + add_qty, kMaxQty);
  } else if (remove_id != 0) {
    cart.erase(remove_id);
  } else if (req.method() == http::verb::delete_) {
    cart.clear();
  }
  json list = json::array();
  int count = 0;
  for (const auto& [id, qty] : cart) {
    list.push_back({{"id", id}, {"qty", qty}});
    count += qty;
  }
  return Ok({{"user", *user}, {"items", list}, {"count", count}});
}

// ---------------------------------------------------------------------------------------------

RecommendationService::RecommendationService(std::shared_ptr<const Catalogue> catalogue, int dims,
                                             int passes)
    : catalogue_(std::move(catalogue)), model_(*catalogue_, dims), passes_(passes) {}

Response RecommendationService::Handle(const Request& req) const {
  const std::string_view path = TargetPath(Target(req));
  if (path != "/recommendations") {
    return Error(http::status::not_found, absl::StrCat("recommendation has no ", Av(path)));
  }
  if (req.method() != http::verb::get) return MethodNotAllowed(req);
  const auto params = QueryParams(Target(req));
  auto n = IntParam(params, "n", 4, 1, 50);
  if (!n.ok()) return StatusError(n.status());
  std::vector<int> ids;
  if (auto it = params.find("for"); it != params.end()) {
    auto parsed = IdList(it->second, 100);
    if (!parsed.ok()) return StatusError(parsed.status());
    for (int id : *parsed) {
      if (catalogue_->Find(id) == nullptr) {
        return Error(http::status::not_found, absl::StrCat("no tea ", id));
      }
    }
    ids = *parsed;
  }
  json items = json::array();
  for (const auto& s : model_.Similar(ids, *n, passes_)) {
    items.push_back({{"id", s.id}, {"name", catalogue_->Find(s.id)->name}, {"score", s.score}});
  }
  return Ok({{"for", ids}, {"items", items}});
}

// ---------------------------------------------------------------------------------------------

StoreService::StoreService(std::shared_ptr<const Catalogue> catalogue, int64_t initial_stock)
    : catalogue_(std::move(catalogue)),
      stock_(catalogue_->size(), std::max<int64_t>(initial_stock, 0)) {}

Response StoreService::Handle(const Request& req) {
  const std::string_view path = TargetPath(Target(req));
  if (path == "/orders") {
    if (req.method() != http::verb::post) return MethodNotAllowed(req);
    return PlaceOrder(req);
  }
  if (path.starts_with("/orders/")) {
    if (req.method() != http::verb::get) return MethodNotAllowed(req);
    int64_t id = 0;
    if (!absl::SimpleAtoi(Av(path.substr(8)), &id)) {
      return Error(http::status::bad_request, "order ids are numbers");
    }
    std::lock_guard<std::mutex> l(mu_);
    auto it = orders_.find(id);
    if (it == orders_.end()) {
      return Error(http::status::not_found, absl::StrCat("no order ", id, " (or too old)"));
    }
    return JsonResponse(http::status::ok, it->second);
  }
  if (path == "/stock") {
    if (req.method() != http::verb::get) return MethodNotAllowed(req);
    auto p = QueryParams(Target(req));
    int id = 0;
    if (!absl::SimpleAtoi(p["id"], &id) || catalogue_->Find(id) == nullptr) {
      return Error(http::status::not_found, absl::StrCat("no tea \"", p["id"], "\""));
    }
    std::lock_guard<std::mutex> l(mu_);
    return Ok({{"id", id}, {"stock", stock_[id - 1]}});
  }
  return Error(http::status::not_found, absl::StrCat("store has no ", Av(path)));
}

Response StoreService::PlaceOrder(const Request& req) {
  const json body = json::parse(req.body(), nullptr, /*allow_exceptions=*/false);
  if (!body.is_object() || !body.contains("user") || !body["user"].is_string() ||
      !body.contains("lines") || !body["lines"].is_array() || body["lines"].empty()) {
    return Error(http::status::bad_request,
                 "body: expected {\"user\": U, \"lines\": [{\"id\": N, \"qty\": M}, ...]} with at "
                 "least one line");
  }
  const std::string user = body["user"].get<std::string>();
  std::map<int, int64_t> wanted;  // merged by id: one stock check per tea
  for (const json& line : body["lines"]) {
    if (!line.is_object() || !line.contains("id") || !line["id"].is_number_integer() ||
        !line.contains("qty") || !line["qty"].is_number_integer()) {
      return Error(http::status::bad_request, "each line needs integer id and qty");
    }
    const int id = line["id"].get<int>();
    const int64_t qty = line["qty"].get<int64_t>();
    if (catalogue_->Find(id) == nullptr) {
      return Error(http::status::bad_request, absl::StrCat("line for unknown tea ", id));
    }
    if (qty < 1 || qty > 1000000) {
      return Error(http::status::bad_request,
                   absl::StrCat("tea ", id, ": qty ", qty, " out of range"));
    }
    wanted[id] += qty;
  }
  std::vector<std::array<int64_t, 3>> lines;
  int64_t total = 0;
  for (const auto& [id, qty] : wanted) {
    const int64_t price = catalogue_->Find(id)->price_cents;
    lines.push_back({id, qty, price});
    total += qty * price;
  }
  const std::string checksum = OrderChecksum(user, lines);
  std::lock_guard<std::mutex> l(mu_);
  for (const auto& [id, qty] : wanted) {
    if (stock_[id - 1] < qty) {
      return Error(http::status::conflict, absl::StrCat("not enough stock of tea ", id, ": ",
                                                        stock_[id - 1], " left, ", qty, " wanted"));
    }
  }
  for (const auto& [id, qty] : wanted) stock_[id - 1] -= qty;
  const int64_t order_id = next_order_++;
  json jl = json::array();
  for (const auto& line : lines) {
    jl.push_back({{"id", line[0]}, {"qty", line[1]}, {"price_cents", line[2]}});
  }
  const std::string text = json{
      {"order_id", order_id},
      {"user", user},
      {"lines", jl},
      {"total_cents", total},
      {"checksum", checksum}}.dump();
  orders_[order_id] = text;
  if (orders_.size() > kKeptOrders) orders_.erase(orders_.begin());
  return JsonResponse(http::status::ok, text);
}

}  // namespace weft::teashop
