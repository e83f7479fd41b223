#include "examples/teashop/frontend.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "examples/teashop/backends.h"

namespace weft::teashop {
namespace {

using json = nlohmann::json;

// The outcome of one upstream call: a JSON body or an error that says which upstream failed.
struct Fetched {
  absl::Status status;
  std::string upstream;
  json body;
  bool ok() const { return status.ok(); }
};

asio::awaitable<Fetched> Fetch(UpstreamClient& c, http::verb method, std::string target,
                               const std::string& user, std::string body = {}) {
  Fetched f;
  f.upstream = c.name();
  std::vector<std::pair<std::string, std::string>> headers;
  headers.emplace_back(std::string("X-User"), user);
  auto res = co_await c.Call(method, std::move(target), std::move(body), std::move(headers));
  if (!res.ok()) {
    f.status = res.status();
    co_return f;
  }
  const int code = res->result_int();
  json j = json::parse(res->body(), nullptr, /*allow_exceptions=*/false);
  if (code >= 500 || code < 200 || j.is_discarded()) {
    std::string snippet = res->body().substr(0, 200);
    f.status = absl::UnavailableError(
        absl::StrCat(c.name(), " (", c.url().ToString(), ") answered ", code,
                     j.is_discarded() ? " with a body that is not JSON: " : ": ", snippet));
    co_return f;
  }
  if (code >= 400) {
    const std::string msg =
        absl::StrCat(c.name(), ": ",
                     j.is_object() && j.contains("error") && j["error"].is_string()
                         ? j["error"].get<std::string>()
                         : res->body().substr(0, 200));
    f.status = code == 404   ? absl::NotFoundError(msg)
               : code == 409 ? absl::FailedPreconditionError(msg)
                             : absl::InvalidArgumentError(msg);
    co_return f;
  }
  f.body = std::move(j);
  co_return f;
}

std::string Money(int64_t cents) {
  return absl::StrFormat("%d.%02d", cents / 100, cents % 100);
}

std::string Page(std::string_view title, std::string_view user, std::string_view content) {
  return absl::StrCat("<!doctype html>\n<html><head><title>", Av(HtmlEscape(title)),
                      " - Weft Tea Shop</title></head>\n<body>\n<header><a href=\"/\">Weft Tea "
                      "Shop</a> | <a href=\"/cart\">cart</a> | user ",
                      Av(HtmlEscape(user)), "</header>\n<h1>", Av(HtmlEscape(title)), "</h1>\n",
                      Av(content), "</body></html>\n");
}

Response Html(std::string_view title, std::string_view user, std::string_view content) {
  return MakeResponse(http::status::ok, Page(title, user, content), "text/html; charset=utf-8");
}

Response ErrorPage(http::status status, std::string_view user, std::string_view msg,
                   std::string_view upstream = {}) {
  Response r =
      MakeResponse(status,
                   Page(absl::StrCat(static_cast<int>(status), " ",
                                     Av(std::string_view(http::obsolete_reason(status).data(),
                                                         http::obsolete_reason(status).size()))),
                        user, absl::StrCat("<p class=\"error\">", Av(HtmlEscape(msg)), "</p>\n")),
                   "text/html; charset=utf-8");
  if (!upstream.empty()) r.set("X-Upstream", beast::string_view(upstream.data(), upstream.size()));
  return r;
}

Response FailedPage(const Fetched& f, std::string_view user) {
  switch (f.status.code()) {
    case absl::StatusCode::kNotFound:
      return ErrorPage(http::status::not_found, user, std::string(f.status.message()));
    case absl::StatusCode::kFailedPrecondition:
      return ErrorPage(http::status::conflict, user, std::string(f.status.message()));
    case absl::StatusCode::kInvalidArgument:
      return ErrorPage(http::status::bad_request, user, std::string(f.status.message()));
    default:
      return ErrorPage(http::status::bad_gateway, user,
                       absl::StrCat("upstream ", f.upstream, " failed: ", f.status.message()),
                       f.upstream);
  }
}

std::string TeaItem(const json& t) {
  return absl::StrCat("<li><a href=\"/product?id=", t.value("id", 0), "\">",
                      Av(HtmlEscape(t.value("name", ""))), "</a> (",
                      Av(HtmlEscape(t.value("category", ""))), ") ",
                      Money(t.value("price_cents", int64_t{0})), "</li>\n");
}

std::string TeaList(const json& items) {
  std::string out = "<ul>\n";
  if (items.is_array()) {
    for (const json& t : items) absl::StrAppend(&out, TeaItem(t));
  }
  return out + "</ul>\n";
}

std::string RecList(const json& items) {
  std::string out = "<ul class=\"recommended\">\n";
  if (items.is_array()) {
    for (const json& r : items) {
      absl::StrAppend(&out, "<li><a href=\"/product?id=", r.value("id", 0), "\">",
                      Av(HtmlEscape(r.value("name", ""))), "</a></li>\n");
    }
  }
  return out + "</ul>\n";
}

std::string Pager(const json& page, std::string_view base) {
  const int total = page.value("total", 0), p = page.value("page", 1), size = page.value("size", 1);
  std::string out = absl::StrCat("<p>", total, " teas, page ", p, "</p>\n");
  if (static_cast<int64_t>(p) * size < total) {
    absl::StrAppend(&out, "<a href=\"", Av(base), "&amp;page=", p + 1, "\">next</a>\n");
  }
  return out;
}

// Request parameters: the query string, and for POST a form body on top.
std::map<std::string, std::string> Params(const Request& req) {
  auto p = QueryParams(std::string_view(req.target().data(), req.target().size()));
  if (req.method() == http::verb::post && !req.body().empty()) {
    for (auto& [k, v] : ParseParams(req.body())) p[k] = v;
  }
  return p;
}

bool PositiveInt(const std::map<std::string, std::string>& p, const std::string& key, int* out) {
  auto it = p.find(key);
  return it != p.end() && absl::SimpleAtoi(it->second, out) && *out > 0;
}

}  // namespace

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out.push_back(c);
    }
  }
  return out;
}

Frontend::Frontend(const FrontendOptions& o)
    : catalogue_("catalogue", o.catalogue, o.conn, o.timeout),
      cart_("cart", o.cart, o.conn, o.timeout),
      recommendation_("recommendation", o.recommendation, o.conn, o.timeout),
      store_("store", o.store, o.conn, o.timeout) {}

asio::awaitable<Response> Frontend::Handle(Request req) {
  const std::string target(req.target());
  const std::string_view path = TargetPath(target);
  auto user_or = RequestUser(req);
  if (!user_or.ok()) {
    co_return ErrorPage(http::status::bad_request, "guest",
                        std::string(user_or.status().message()));
  }
  const std::string user = *user_or;
  const RequestType* type = nullptr;
  for (const RequestType& t : kRequestTypes) {
    if (t.path == path) type = &t;
  }
  if (type == nullptr) {
    co_return ErrorPage(http::status::not_found, user, absl::StrCat("no page ", Av(path)));
  }
  if (req.method() != type->method) {
    Response r =
        ErrorPage(http::status::method_not_allowed, user,
                  absl::StrCat(Av(path), " takes ",
                               Av(std::string_view(http::to_string(type->method).data(),
                                                   http::to_string(type->method).size()))));
    r.set(http::field::allow, http::to_string(type->method));
    co_return r;
  }
  const auto p = Params(req);
  const std::string_view name = type->name;
  if (name == "home") co_return co_await Home(user);
  if (name == "category" || name == "search")
    co_return co_await Listing(name == "category", std::string(path), p, user);
  if (name == "product") co_return co_await Product(p, user);
  if (name == "cart_add") co_return co_await CartAdd(p, user);
  if (name == "cart") co_return co_await Cart(user);
  if (name == "checkout") co_return co_await Checkout(user);
  co_return co_await Recommend(p, user);
}

asio::awaitable<Response> Frontend::Home(std::string user) {
  Fetched rec = co_await Fetch(recommendation_, http::verb::get, "/recommendations?n=4", user);
  if (!rec.ok()) co_return FailedPage(rec, user);
  Fetched cats = co_await Fetch(catalogue_, http::verb::get, "/categories", user);
  if (!cats.ok()) co_return FailedPage(cats, user);
  Fetched featured = co_await Fetch(catalogue_, http::verb::get, "/teas?page=1&size=6", user);
  if (!featured.ok()) co_return FailedPage(featured, user);
  std::string nav = "<nav>";
  for (const json& c : cats.body.value("categories", json::array())) {
    const std::string n = c.value("name", "");
    absl::StrAppend(&nav, "<a href=\"/category?name=", UrlEscape(n), "\">", HtmlEscape(n), "</a> (",
                    c.value("count", 0), ") ");
  }
  nav += "</nav>\n";
  co_return Html(
      "Welcome", user,
      absl::StrCat(nav, "<h2>Featured</h2>\n", TeaList(featured.body.value("items", json::array())),
                   "<h2>Recommended</h2>\n", RecList(rec.body.value("items", json::array()))));
}

asio::awaitable<Response> Frontend::Listing(bool is_cat, std::string path, ParamMap p,
                                            std::string user) {
  const std::string key = is_cat ? "name" : "q";
  auto it = p.find(key);
  if (it == p.end() || it->second.empty()) {
    co_return ErrorPage(http::status::bad_request, user,
                        absl::StrCat(Av(path), " needs ?", key, "=..."));
  }
  int page = 1;
  if (p.count("page") && !PositiveInt(p, "page", &page)) {
    co_return ErrorPage(http::status::bad_request, user, "page must be a positive number");
  }
  const std::string arg = UrlEscape(it->second);
  Fetched list = co_await Fetch(
      catalogue_, http::verb::get,
      absl::StrCat("/teas?", is_cat ? "category=" : "q=", arg, "&page=", page, "&size=12"), user);
  if (!list.ok()) co_return FailedPage(list, user);
  co_return Html(
      is_cat ? absl::StrCat("Category ", it->second) : absl::StrCat("Search: ", it->second), user,
      absl::StrCat(Pager(list.body, absl::StrCat(Av(path), "?", key, "=", arg)),
                   TeaList(list.body.value("items", json::array()))));
}

asio::awaitable<Response> Frontend::Product(ParamMap p, std::string user) {
  int id = 0;
  if (!PositiveInt(p, "id", &id)) {
    co_return ErrorPage(http::status::bad_request, user, "/product needs ?id=N (a tea id)");
  }
  Fetched tea = co_await Fetch(catalogue_, http::verb::get, absl::StrCat("/teas/", id), user);
  if (!tea.ok()) co_return FailedPage(tea, user);
  Fetched rec = co_await Fetch(recommendation_, http::verb::get,
                               absl::StrCat("/recommendations?for=", id, "&n=4"), user);
  if (!rec.ok()) co_return FailedPage(rec, user);
  const json& t = tea.body;
  co_return Html(
      t.value("name", ""), user,
      absl::StrCat("<p>", HtmlEscape(t.value("description", "")), "</p>\n<p>Price ",
                   Money(t.value("price_cents", int64_t{0})),
                   "</p>\n<form method=\"post\" action=\"/cart/add\"><input type=\"hidden\" "
                   "name=\"id\" value=\"",
                   id, "\"><button>Add to cart</button></form>\n<h2>You may also like</h2>\n",
                   RecList(rec.body.value("items", json::array()))));
}

asio::awaitable<Response> Frontend::CartAdd(ParamMap p, std::string user) {
  int id = 0, qty = 1;
  if (!PositiveInt(p, "id", &id)) {
    co_return ErrorPage(http::status::bad_request, user, "/cart/add needs id=N (a tea id)");
  }
  if (p.count("qty") && !PositiveInt(p, "qty", &qty)) {
    co_return ErrorPage(http::status::bad_request, user, "qty must be a positive number");
  }
  Fetched tea = co_await Fetch(catalogue_, http::verb::get, absl::StrCat("/teas/", id), user);
  if (!tea.ok()) co_return FailedPage(tea, user);
  // JSON bodies are built outside co_await expressions: GCC 12 rejects braced initialisers
  // there ("array used as initializer").
  const std::string add = json{{"id", id}, {"qty", qty}}.dump();
  Fetched cart = co_await Fetch(cart_, http::verb::post, "/cart/items", user, add);
  if (!cart.ok()) co_return FailedPage(cart, user);
  co_return Html("Added to cart", user,
                 absl::StrCat("<p>Added ", qty, " x ", HtmlEscape(tea.body.value("name", "")),
                              ". Your cart holds ", cart.body.value("count", 0), " items.</p>\n"));
}

asio::awaitable<Response> Frontend::Cart(std::string user) {
  Fetched cart = co_await Fetch(cart_, http::verb::get, "/cart", user);
  if (!cart.ok()) co_return FailedPage(cart, user);
  const json items = cart.body.value("items", json::array());
  if (items.empty()) co_return Html("Your cart", user, "<p>Your cart is empty.</p>\n");
  std::vector<std::string> ids;
  for (const json& i : items) ids.push_back(std::to_string(i.value("id", 0)));
  Fetched teas = co_await Fetch(catalogue_, http::verb::get,
                                absl::StrCat("/teas?ids=", absl::StrJoin(ids, ",")), user);
  if (!teas.ok()) co_return FailedPage(teas, user);
  std::map<int, json> by_id;
  for (const json& t : teas.body.value("items", json::array())) by_id[t.value("id", 0)] = t;
  std::string rows = "<table>\n<tr><th>tea</th><th>qty</th><th>price</th></tr>\n";
  int64_t total = 0;
  for (const json& i : items) {
    const int id = i.value("id", 0), qty = i.value("qty", 0);
    const json t = by_id.count(id) ? by_id[id] : json::object();
    const int64_t price = t.value("price_cents", int64_t{0});
    total += price * qty;
    absl::StrAppend(&rows, "<tr><td>", HtmlEscape(t.value("name", absl::StrCat("tea ", id))),
                    "</td><td>", qty, "</td><td>", Money(price * qty), "</td></tr>\n");
  }
  absl::StrAppend(&rows, "</table>\n<p>Total ", Money(total),
                  "</p>\n<form method=\"post\" action=\"/checkout\"><button>Check "
                  "out</button></form>\n");
  co_return Html("Your cart", user, rows);
}

asio::awaitable<Response> Frontend::Checkout(std::string user) {
  Fetched cart = co_await Fetch(cart_, http::verb::get, "/cart", user);
  if (!cart.ok()) co_return FailedPage(cart, user);
  const json items = cart.body.value("items", json::array());
  if (items.empty()) {
    co_return ErrorPage(http::status::conflict, user,
                        "your cart is empty: add a tea with POST /cart/add first");
  }
  json lines = json::array();
  for (const json& i : items)
    lines.push_back({{"id", i.value("id", 0)}, {"qty", i.value("qty", 0)}});
  const std::string order_body = json{{"user", user}, {"lines", lines}}.dump();
  Fetched order = co_await Fetch(store_, http::verb::post, "/orders", user, order_body);
  if (!order.ok()) co_return FailedPage(order, user);
  Fetched emptied = co_await Fetch(cart_, http::verb::delete_, "/cart", user);
  if (!emptied.ok()) co_return FailedPage(emptied, user);
  const json& o = order.body;
  co_return Html("Thank you", user,
                 absl::StrCat("<p>Order ", o.value("order_id", int64_t{0}), ": ",
                              o.value("lines", json::array()).size(), " lines, total ",
                              Money(o.value("total_cents", int64_t{0})), ", checksum ",
                              HtmlEscape(o.value("checksum", "")), "</p>\n"));
}

asio::awaitable<Response> Frontend::Recommend(ParamMap p, std::string user) {
  auto it = p.find("for");
  if (it == p.end() || it->second.empty()) {
    co_return ErrorPage(http::status::bad_request, user, "/recommend needs ?for=N[,M...]");
  }
  Fetched rec =
      co_await Fetch(recommendation_, http::verb::get,
                     absl::StrCat("/recommendations?n=8&for=", UrlEscape(it->second)), user);
  if (!rec.ok()) co_return FailedPage(rec, user);
  std::vector<std::string> ids;
  for (const json& r : rec.body.value("items", json::array())) {
    ids.push_back(std::to_string(r.value("id", 0)));
  }
  json teas = json::array();
  if (!ids.empty()) {
    Fetched got = co_await Fetch(catalogue_, http::verb::get,
                                 absl::StrCat("/teas?ids=", absl::StrJoin(ids, ",")), user);
    if (!got.ok()) co_return FailedPage(got, user);
    teas = got.body.value("items", json::array());
  }
  co_return Html(absl::StrCat("Recommended for ", it->second), user, TeaList(teas));
}

namespace {
asio::awaitable<Response> RunFrontend(std::shared_ptr<Frontend> f, Request req) {
  co_return co_await f->Handle(std::move(req));
}
}  // namespace

Handler FrontendHandler(std::shared_ptr<Frontend> frontend) {
  return [frontend](Request req) { return RunFrontend(frontend, std::move(req)); };
}

}  // namespace weft::teashop
