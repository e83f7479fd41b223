// The tea shop's front end: HTML pages rendered from its upstreams (catalogue, cart,
// recommendation, store). Exactly eight request types, the set the load driver and the
// benchmark cycle over:
//
//   name       request                      upstream calls
//   home       GET  /                       recommendation, catalogue x2 (categories, featured)
//   category   GET  /category?name=C&page=N catalogue
//   product    GET  /product?id=N           catalogue, recommendation
//   search     GET  /search?q=WORDS&page=N  catalogue
//   cart_add   POST /cart/add  id=N&qty=M   catalogue (the tea exists?), cart
//   cart       GET  /cart                   cart, catalogue (names and prices)
//   checkout   POST /checkout               cart, store, cart (emptied)
//   recommend  GET  /recommend?for=N[,M]    recommendation, catalogue
//
// Parameters come from the query string or, for POST, an x-www-form-urlencoded body; the user
// from the X-User header or user= (default "guest"). Statuses: 200; 400 for bad parameters,
// 404 for an unknown tea or category, 409 for checkout with an empty cart or too little
// stock (an upstream's 4xx is passed on); 502 when an upstream cannot be reached, times out,
// answers 5xx or unreadable JSON: the body names the upstream and the X-Upstream header carries
// its name. Unknown paths 404, other methods 405.
#pragma once

#include <array>
#include <map>
#include <memory>
#include <string_view>

#include "examples/teashop/http.h"

namespace weft::teashop {

struct RequestType {
  std::string_view name;
  http::verb method;
  std::string_view path;
};
inline constexpr std::array<RequestType, 8> kRequestTypes = {{
    {"home", http::verb::get, "/"},
    {"category", http::verb::get, "/category"},
    {"product", http::verb::get, "/product"},
    {"search", http::verb::get, "/search"},
    {"cart_add", http::verb::post, "/cart/add"},
    {"cart", http::verb::get, "/cart"},
    {"checkout", http::verb::post, "/checkout"},
    {"recommend", http::verb::get, "/recommend"},
}};

struct FrontendOptions {
  Url catalogue, cart, recommendation, store;
  ConnMode conn = ConnMode::kKeepAlive;
  std::chrono::milliseconds timeout{5000};  // per upstream call
};

// Thread-safe; Handle() must run on a single-threaded io_context (a Server worker).
class Frontend {
 public:
  explicit Frontend(const FrontendOptions& opts);
  asio::awaitable<Response> Handle(Request req);

  UpstreamClient& catalogue() { return catalogue_; }
  UpstreamClient& cart() { return cart_; }
  UpstreamClient& recommendation() { return recommendation_; }
  UpstreamClient& store() { return store_; }

 private:
  using ParamMap = std::map<std::string, std::string>;
  // One per request type (see the table above); parameters and user by value (coroutines).
  asio::awaitable<Response> Home(std::string user);
  asio::awaitable<Response> Listing(bool is_cat, std::string path, ParamMap p, std::string user);
  asio::awaitable<Response> Product(ParamMap p, std::string user);
  asio::awaitable<Response> CartAdd(ParamMap p, std::string user);
  asio::awaitable<Response> Cart(std::string user);
  asio::awaitable<Response> Checkout(std::string user);
  asio::awaitable<Response> Recommend(ParamMap p, std::string user);

  UpstreamClient catalogue_, cart_, recommendation_, store_;
};

// The Server handler for a front end (keeps it alive while requests run).
Handler FrontendHandler(std::shared_ptr<Frontend> frontend);

// HTML-escapes text (& < > " ').
std::string HtmlEscape(std::string_view s);

}  // namespace weft::teashop
