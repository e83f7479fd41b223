// The tea shop's upstream services. Each Handle() is synchronous, thread-safe and answers JSON;
// errors are JSON {"error": "..."} with 400 (bad input), 404 (unknown path or item), 405 (known
// path, other method) or 409 (a conflict: not enough stock).
//
// catalogue
//   GET /teas?q=WORDS&category=C&page=N&size=M  search/browse: {"total","page","size","items"}
//   GET /teas?ids=1,2,3                          batch lookup: {"items"} (unknown ids left out)
//   GET /teas/ID                                 one tea
//   GET /categories                              {"categories":[{"name","count"}]}
// cart (the user comes from the X-User header or the user= query parameter)
//   GET /cart                                    {"user","items":[{"id","qty"}],"count"}
//   POST /cart/items   body {"id":N,"qty":M}     adds M (default 1); answers the cart
//   DELETE /cart/items?id=N                      removes the item; answers the cart
//   DELETE /cart                                 empties the cart; answers it
// recommendation
//   GET /recommendations?for=1,2&n=N             {"for","items":[{"id","name","score"}]}, the
//                                                n teas most similar to `for` (none: the most
//                                                typical), computed on each request
// store
//   POST /orders  body {"user":U,"lines":[{"id","qty"}]}  prices the lines from the catalogue,
//                checks and takes stock, answers {"order_id","user","lines":[{"id","qty",
//                "price_cents"}],"total_cents","checksum"} (checksum: SHA-256 over the lines)
//   GET /orders/ID                               a recent order (the last 10000 are kept)
//   GET /stock?id=N                              {"id","stock"}
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "examples/teashop/catalogue.h"
#include "examples/teashop/http.h"

namespace weft::teashop {

class CatalogueService {
 public:
  explicit CatalogueService(std::shared_ptr<const Catalogue> catalogue);
  Response Handle(const Request& req) const;

  static constexpr int kMaxPageSize = 100;

 private:
  std::shared_ptr<const Catalogue> catalogue_;
};

class CartService {
 public:
  explicit CartService(size_t max_users = 100000) : max_users_(max_users) {}
  Response Handle(const Request& req);

  static constexpr int kMaxQty = 1000;

 private:
  using Cart = std::map<int, int>;  // tea id -> quantity
  std::mutex mu_;
  std::unordered_map<std::string, Cart> carts_;  // guarded by mu_
  std::deque<std::string> order_;                // users by first use, for eviction
  size_t max_users_;
};

class RecommendationService {
 public:
  // `passes`: extra item-to-item passes per request (see SimilarityModel::Similar).
  RecommendationService(std::shared_ptr<const Catalogue> catalogue, int dims, int passes);
  Response Handle(const Request& req) const;

 private:
  std::shared_ptr<const Catalogue> catalogue_;
  SimilarityModel model_;
  int passes_;
};

class StoreService {
 public:
  StoreService(std::shared_ptr<const Catalogue> catalogue, int64_t initial_stock);
  Response Handle(const Request& req);

  static constexpr size_t kKeptOrders = 10000;

 private:
  Response PlaceOrder(const Request& req);

  std::shared_ptr<const Catalogue> catalogue_;
  std::mutex mu_;
  std::vector<int64_t> stock_;             // by id - 1; guarded by mu_
  std::map<int64_t, std::string> orders_;  // order id -> JSON; guarded by mu_
  int64_t next_order_ = 1;                 // guarded by mu_
};

// A Server handler for one of the services above (keeps it alive while requests run).
template <typename Svc>
asio::awaitable<Response> RunService(std::shared_ptr<Svc> svc, Request req) {
  co_return svc->Handle(req);
}
template <typename Svc>
Handler ServiceHandler(std::shared_ptr<Svc> svc) {
  return [svc](Request req) { return RunService(svc, std::move(req)); };
}

// The user a cart request is for: header X-User, else query user=, else "guest". Users are
// 1..64 characters of [A-Za-z0-9._-]; anything else is an error.
absl::StatusOr<std::string> RequestUser(const Request& req);

// The order checksum: hex SHA-256 of "id:qty:price_cents\n" per line, in order, prefixed by
// "user\n" (OpenSSL).
std::string OrderChecksum(std::string_view user, const std::vector<std::array<int64_t, 3>>& lines);

}  // namespace weft::teashop
