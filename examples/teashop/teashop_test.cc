// Unit tests of the tea shop's roles: the catalogue and similarity model, each backend's
// handlers, flag parsing, and the front end against real in-process backend servers on
// loopback (port 0).
#include <gtest/gtest.h>

#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

#include "examples/teashop/app.h"
#include "examples/teashop/backends.h"
#include "examples/teashop/catalogue.h"
#include "examples/teashop/frontend.h"
#include "examples/teashop/load.h"

namespace weft::teashop {
namespace {

using json = nlohmann::json;

Request Req(http::verb method, std::string target, std::string body = {}, std::string user = {}) {
  Request r{method, target, 11};
  if (!user.empty()) r.set("X-User", user);
  r.body() = std::move(body);
  r.prepare_payload();
  return r;
}

json Body(const Response& r) {
  return json::parse(r.body());
}

TEST(Catalogue, DeterministicAndComplete) {
  Catalogue a(300), b(300);
  ASSERT_EQ(a.size(), 300);
  std::set<std::string> names;
  for (int id = 1; id <= 300; ++id) {
    EXPECT_EQ(a.Find(id)->name, b.Find(id)->name);
    EXPECT_EQ(a.Find(id)->price_cents, b.Find(id)->price_cents);
    EXPECT_GT(a.Find(id)->price_cents, 0);
    names.insert(a.Find(id)->name);
  }
  EXPECT_EQ(names.size(), 300u);
  EXPECT_EQ(a.Find(0), nullptr);
  EXPECT_EQ(a.Find(301), nullptr);
  int sum = 0;
  for (const auto& c : Catalogue::Categories()) sum += a.CategoryCount(c);
  EXPECT_EQ(sum, 300);
}

TEST(Catalogue, SearchFiltersAndPaginates) {
  Catalogue c(300);
  const Page all = c.Search("smoky", "", 1, 1000);
  ASSERT_GT(all.total, 0);
  ASSERT_FALSE(all.items.empty());
  for (const Tea* t : all.items) {
    EXPECT_NE(t->description.find("smoky"), std::string::npos) << t->name;
  }
  // Case-insensitive, every word must match.
  const Page two = c.Search("SMOKY black", "", 1, 1000);
  ASSERT_FALSE(two.items.empty()) << "no smoky black tea in the catalogue";
  for (const Tea* t : two.items) EXPECT_EQ(t->category, "black");
  EXPECT_LE(two.total, all.total);
  const Page green = c.Search("", "green", 2, 10);
  EXPECT_EQ(green.total, c.CategoryCount("green"));
  ASSERT_EQ(green.items.size(), 10u);
  EXPECT_EQ(green.items[0], c.Search("", "green", 1, 20).items[10]);
  EXPECT_TRUE(c.Search("", "green", 1000, 10).items.empty());
  EXPECT_EQ(c.Search("no-such-word", "", 1, 10).total, 0);
}

TEST(SimilarityModel, RanksAndExcludes) {
  Catalogue c(300);
  SimilarityModel m(c, 128);
  auto r = m.Similar({5}, 6, 2);
  ASSERT_EQ(r.size(), 6u);
  for (size_t i = 0; i < r.size(); ++i) {
    EXPECT_NE(r[i].id, 5);
    if (i > 0) {
      EXPECT_GE(r[i - 1].score, r[i].score);
    }
  }
  // The top match shares words with tea 5 (same category or origin or notes).
  const Tea* a = c.Find(5);
  const Tea* b = c.Find(r[0].id);
  const bool shares = a->category == b->category || a->origin == b->origin ||
                      std::any_of(a->notes.begin(), a->notes.end(), [&](const std::string& n) {
                        return std::find(b->notes.begin(), b->notes.end(), n) != b->notes.end();
                      });
  EXPECT_TRUE(shares) << a->description << " vs " << b->description;
  EXPECT_EQ(m.Similar({}, 3, 0).size(), 3u);
  EXPECT_EQ(m.Similar({5}, 6, 2)[0].id, r[0].id);  // deterministic
}

TEST(CatalogueService, Endpoints) {
  CatalogueService s(std::make_shared<Catalogue>(300));
  Response r = s.Handle(Req(http::verb::get, "/teas?q=smoky&page=1&size=5"));
  ASSERT_EQ(r.result(), http::status::ok);
  json j = Body(r);
  EXPECT_GT(j["total"].get<int>(), 0);
  EXPECT_LE(j["items"].size(), 5u);
  EXPECT_EQ(r[http::field::content_type], "application/json");

  j = Body(s.Handle(Req(http::verb::get, "/teas?category=oolong&size=100")));
  ASSERT_FALSE(j["items"].empty()) << j;
  for (const json& t : j["items"]) EXPECT_EQ(t["category"], "oolong");

  r = s.Handle(Req(http::verb::get, "/teas/42"));
  ASSERT_EQ(r.result(), http::status::ok);
  EXPECT_EQ(Body(r)["id"], 42);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/teas/4242")).result(), http::status::not_found);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/teas/abc")).result(), http::status::bad_request);
  j = Body(s.Handle(Req(http::verb::get, "/teas?ids=1,2,9999")));
  EXPECT_EQ(j["items"].size(), 2u);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/teas?ids=1,x")).result(), http::status::bad_request);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/teas?page=0")).result(), http::status::bad_request);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/teas?size=101")).result(), http::status::bad_request);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/teas?category=coffee")).result(),
            http::status::not_found);
  j = Body(s.Handle(Req(http::verb::get, "/categories")));
  EXPECT_EQ(j["categories"].size(), Catalogue::Categories().size());
  EXPECT_EQ(s.Handle(Req(http::verb::post, "/teas")).result(), http::status::method_not_allowed);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/nope")).result(), http::status::not_found);
}

TEST(CartService, PerUserAddRemoveClear) {
  CartService s;
  Response r = s.Handle(Req(http::verb::post, "/cart/items", R"({"id": 3, "qty": 2})", "alice"));
  ASSERT_EQ(r.result(), http::status::ok) << r.body();
  s.Handle(Req(http::verb::post, "/cart/items", R"({"id": 3})", "alice"));
  s.Handle(Req(http::verb::post, "/cart/items", R"({"id": 7})", "alice"));
  json j = Body(s.Handle(Req(http::verb::get, "/cart", {}, "alice")));
  EXPECT_EQ(j["user"], "alice");
  EXPECT_EQ(j["count"], 4);
  EXPECT_EQ(j["items"], json::parse(R"([{"id":3,"qty":3},{"id":7,"qty":1}])"));
  // The user may also come from the query; bob's cart is separate.
  j = Body(s.Handle(Req(http::verb::get, "/cart?user=bob")));
  EXPECT_EQ(j["user"], "bob");
  EXPECT_EQ(j["count"], 0);
  j = Body(s.Handle(Req(http::verb::get, "/cart?user=alice")));
  EXPECT_EQ(j["count"], 4);
  j = Body(s.Handle(Req(http::verb::delete_, "/cart/items?id=3", {}, "alice")));
  EXPECT_EQ(j["count"], 1);
  j = Body(s.Handle(Req(http::verb::delete_, "/cart", {}, "alice")));
  EXPECT_EQ(j["count"], 0);

  EXPECT_EQ(s.Handle(Req(http::verb::post, "/cart/items", "not json", "a")).result(),
            http::status::bad_request);
  EXPECT_EQ(s.Handle(Req(http::verb::post, "/cart/items", R"({"id": 1, "qty": 0})", "a")).result(),
            http::status::bad_request);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/cart", {}, "bad user!")).result(),
            http::status::bad_request);
  EXPECT_EQ(s.Handle(Req(http::verb::put, "/cart", {}, "a")).result(),
            http::status::method_not_allowed);
  EXPECT_EQ(s.Handle(Req(http::verb::delete_, "/cart/items", {}, "a")).result(),
            http::status::bad_request);
}

TEST(CartService, EvictsOldestBeyondMaxUsers) {
  CartService s(2);
  for (const char* u : {"u1", "u2", "u3"}) {
    s.Handle(Req(http::verb::post, "/cart/items", R"({"id": 1})", u));
  }
  EXPECT_EQ(Body(s.Handle(Req(http::verb::get, "/cart", {}, "u3")))["count"], 1);
  EXPECT_EQ(Body(s.Handle(Req(http::verb::get, "/cart", {}, "u2")))["count"], 1);
  // u1 was the oldest: its cart made room (and asking again creates an empty one).
  EXPECT_EQ(Body(s.Handle(Req(http::verb::get, "/cart", {}, "u1")))["count"], 0);
}

TEST(RecommendationService, Endpoints) {
  RecommendationService s(std::make_shared<Catalogue>(300), 64, 1);
  Response r = s.Handle(Req(http::verb::get, "/recommendations?for=5&n=3"));
  ASSERT_EQ(r.result(), http::status::ok);
  json j = Body(r);
  ASSERT_EQ(j["items"].size(), 3u);
  for (const json& i : j["items"]) {
    EXPECT_NE(i["id"], 5);
    EXPECT_FALSE(i["name"].get<std::string>().empty());
  }
  EXPECT_EQ(Body(s.Handle(Req(http::verb::get, "/recommendations")))["items"].size(), 4u);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/recommendations?for=999")).result(),
            http::status::not_found);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/recommendations?n=0")).result(),
            http::status::bad_request);
}

TEST(StoreService, OrdersChecksumsAndStock) {
  auto cat = std::make_shared<Catalogue>(300);
  StoreService s(cat, 5);
  Response r = s.Handle(Req(http::verb::post, "/orders",
                            R"({"user":"alice","lines":[{"id":2,"qty":3},{"id":1,"qty":1}]})"));
  ASSERT_EQ(r.result(), http::status::ok) << r.body();
  json o = Body(r);
  EXPECT_EQ(o["user"], "alice");
  EXPECT_EQ(o["total_cents"].get<int64_t>(),
            3 * cat->Find(2)->price_cents + cat->Find(1)->price_cents);
  EXPECT_EQ(o["checksum"], OrderChecksum("alice", {{1, 1, cat->Find(1)->price_cents},
                                                   {2, 3, cat->Find(2)->price_cents}}));
  EXPECT_EQ(o["checksum"].get<std::string>().size(), 64u);
  EXPECT_EQ(Body(s.Handle(Req(http::verb::get, "/stock?id=2")))["stock"], 2);
  // Too much: refused whole, nothing taken.
  r = s.Handle(Req(http::verb::post, "/orders",
                   R"({"user":"bob","lines":[{"id":1,"qty":1},{"id":2,"qty":3}]})"));
  EXPECT_EQ(r.result(), http::status::conflict);
  EXPECT_NE(r.body().find("not enough stock of tea 2"), std::string::npos);
  EXPECT_EQ(Body(s.Handle(Req(http::verb::get, "/stock?id=1")))["stock"], 4);
  r = s.Handle(Req(http::verb::get, "/orders/" + std::to_string(o["order_id"].get<int64_t>())));
  ASSERT_EQ(r.result(), http::status::ok);
  EXPECT_EQ(Body(r), o);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/orders/999")).result(), http::status::not_found);
  EXPECT_EQ(s.Handle(Req(http::verb::post, "/orders", R"({"user":"a","lines":[]})")).result(),
            http::status::bad_request);
  EXPECT_EQ(
      s.Handle(Req(http::verb::post, "/orders", R"({"user":"a","lines":[{"id":999,"qty":1}]})"))
          .result(),
      http::status::bad_request);
  EXPECT_EQ(s.Handle(Req(http::verb::get, "/orders")).result(), http::status::method_not_allowed);
}

TEST(Http, ParamsAndUrls) {
  auto p = QueryParams("/search?q=smoky+black&x=%41%42&empty=&flag");
  EXPECT_EQ(p["q"], "smoky black");
  EXPECT_EQ(p["x"], "AB");
  EXPECT_EQ(p["empty"], "");
  EXPECT_TRUE(p.count("flag"));
  EXPECT_EQ(TargetPath("/a/b?c=d"), "/a/b");
  EXPECT_EQ(UrlEscape("a b&c"), "a%20b%26c");

  auto u = Url::Parse("http://catalogue.shop.svc.cluster.local:80");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "catalogue.shop.svc.cluster.local");
  EXPECT_EQ(u->port, 80);
  EXPECT_EQ(u->base_path, "");
  u = Url::Parse("http://[::1]:8081/api/");
  ASSERT_TRUE(u.ok()) << u.status();
  EXPECT_EQ(u->host, "::1");
  EXPECT_EQ(u->port, 8081);
  EXPECT_EQ(u->base_path, "/api");
  EXPECT_EQ(Url::Parse("http://cart").value().port, 80);
  EXPECT_FALSE(Url::Parse("https://cart").ok());
  EXPECT_FALSE(Url::Parse("cart:80").ok());
  EXPECT_FALSE(Url::Parse("http://cart:99999").ok());
  EXPECT_EQ(HtmlEscape("<a href=\"x\">&'"), "&lt;a href=&quot;x&quot;&gt;&amp;&#39;");
}

TEST(Flags, ParseWithEnvironmentFallback) {
  std::map<std::string, std::string> env = {{"CATALOGUE_URL", "http://c:80"},
                                            {"CART_URL", "http://cart"},
                                            {"RECOMMENDATION_URL", "http://r"},
                                            {"STORE_URL", "http://s:8080"},
                                            {"UPSTREAM_CONN", "per-request"}};
  auto getenv = [&](const char* n) -> const char* {
    auto it = env.find(n);
    return it == env.end() ? nullptr : it->second.c_str();
  };
  auto o = ParseFlags({"--role", "frontend", "--listen=127.0.0.1:0", "--store-url",
                       "http://other:1", "--access-log", "--threads", "3"},
                      getenv);
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->role, "frontend");
  EXPECT_EQ(o->server.listen, "127.0.0.1:0");
  EXPECT_EQ(o->catalogue_url, "http://c:80");
  EXPECT_EQ(o->store_url, "http://other:1");  // the flag wins over the environment
  EXPECT_EQ(o->conn, ConnMode::kPerRequest);
  EXPECT_TRUE(o->server.access_log);
  EXPECT_EQ(o->server.threads, 3);

  auto none = [](const char*) -> const char* { return nullptr; };
  auto l = ParseFlags({"--role", "load", "--target", "http://f:80", "--duration", "2s",
                       "--concurrency", "8", "--upstream-conn", "keepalive"},
                      none);
  ASSERT_TRUE(l.ok()) << l.status();
  EXPECT_EQ(l->duration, std::chrono::seconds(2));
  EXPECT_EQ(l->concurrency, 8);

  EXPECT_EQ(ParseFlags({"--role", "frontend"}, none).status().message(),
            "frontend needs --catalogue-url (or CATALOGUE_URL)");
  EXPECT_EQ(ParseFlags({"--role", "barista"}, none).status().message(),
            "--role barista: use frontend, catalogue, cart, recommendation, store, idle, echo, "
            "echo-request, load or grpc-call");
  EXPECT_EQ(ParseFlags({"--role", "cart", "--bogus"}, none).status().message(),
            "unknown flag --bogus");
  EXPECT_NE(ParseFlags({"--role", "cart", "--threads"}, none).status().message().find("--threads"),
            std::string::npos);
  EXPECT_FALSE(ParseFlags({"--role", "cart", "--threads", "0"}, none).ok());
  EXPECT_FALSE(
      ParseFlags({"--role", "load", "--target", "http://f", "--duration", "soon"}, none).ok());
  EXPECT_FALSE(ParseFlags({"--role", "load"}, none).ok());
  EXPECT_FALSE(ParseFlags({"--role", "cart", "--upstream-conn", "pooled"}, none).ok());
  EXPECT_TRUE(absl::IsCancelled(ParseFlags({"--help"}, none).status()));
}

// --- The front end against real backend servers on loopback ---------------------------------

ServerOptions Loopback(std::string role) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.threads = 2;
  o.role = std::move(role);
  o.drain_timeout = std::chrono::seconds(2);
  return o;
}

Url UrlOf(const Server& s) {
  return Url::Parse("http://127.0.0.1:" + std::to_string(s.port())).value();
}

// One call from a fresh io_context on this thread.
absl::StatusOr<Response> Call(UpstreamClient& c, http::verb m, std::string target,
                              std::string body = {}, std::string user = "tester",
                              std::string content_type = {}) {
  asio::io_context io;
  absl::StatusOr<Response> out = absl::UnknownError("not run");
  std::vector<std::pair<std::string, std::string>> headers = {{"X-User", user}};
  if (!content_type.empty()) headers.push_back({"Content-Type", content_type});
  asio::co_spawn(
      io, [&]() -> asio::awaitable<void> { out = co_await c.Call(m, target, body, headers); },
      asio::detached);
  io.run();
  return out;
}

class ShopTest : public ::testing::TestWithParam<ConnMode> {
 protected:
  void SetUp() override {
    auto cat = std::make_shared<Catalogue>(300);
    catalogue_ = Server::Start(Loopback("catalogue"),
                               ServiceHandler(std::make_shared<CatalogueService>(cat)))
                     .value();
    cart_ =
        Server::Start(Loopback("cart"), ServiceHandler(std::make_shared<CartService>())).value();
    rec_ = Server::Start(Loopback("recommendation"),
                         ServiceHandler(std::make_shared<RecommendationService>(cat, 64, 1)))
               .value();
    store_ =
        Server::Start(Loopback("store"), ServiceHandler(std::make_shared<StoreService>(cat, 1000)))
            .value();
    FrontendOptions f{UrlOf(*catalogue_), UrlOf(*cart_), UrlOf(*rec_),
                      UrlOf(*store_),     GetParam(),    std::chrono::seconds(2)};
    frontend_obj_ = std::make_shared<Frontend>(f);
    frontend_ = Server::Start(Loopback("frontend"), FrontendHandler(frontend_obj_)).value();
    client_ =
        std::make_unique<UpstreamClient>("frontend", UrlOf(*frontend_), ConnMode::kPerRequest);
  }
  absl::StatusOr<Response> Get(std::string target, std::string user = "tester") {
    return Call(*client_, http::verb::get, std::move(target), {}, std::move(user));
  }
  absl::StatusOr<Response> Post(std::string target, std::string form = {},
                                std::string user = "tester") {
    return Call(*client_, http::verb::post, std::move(target), std::move(form), std::move(user),
                "application/x-www-form-urlencoded");
  }

  Catalogue cat_{300};
  std::unique_ptr<Server> catalogue_, cart_, rec_, store_, frontend_;
  std::shared_ptr<Frontend> frontend_obj_;
  std::unique_ptr<UpstreamClient> client_;
};

TEST_P(ShopTest, EightRequestTypes) {
  auto home = Get("/");
  ASSERT_TRUE(home.ok()) << home.status();
  EXPECT_EQ(home->result(), http::status::ok) << home->body();
  EXPECT_EQ((*home)[http::field::content_type], "text/html; charset=utf-8");
  EXPECT_NE(home->body().find("<h2>Recommended</h2>"), std::string::npos);
  EXPECT_NE(home->body().find(HtmlEscape(cat_.Find(1)->name)), std::string::npos);  // featured
  EXPECT_NE(home->body().find("/category?name=matcha"), std::string::npos);

  auto category = Get("/category?name=white&page=2");
  ASSERT_TRUE(category.ok());
  EXPECT_EQ(category->result(), http::status::ok);
  EXPECT_NE(category->body().find("page 2"), std::string::npos);
  EXPECT_NE(category->body().find("(white)"), std::string::npos);
  EXPECT_EQ(category->body().find("(green)"), std::string::npos);

  auto product = Get("/product?id=42");
  ASSERT_TRUE(product.ok());
  EXPECT_EQ(product->result(), http::status::ok);
  EXPECT_NE(product->body().find(HtmlEscape(cat_.Find(42)->name)), std::string::npos);
  EXPECT_NE(product->body().find("You may also like"), std::string::npos);

  auto search = Get("/search?q=smoky");
  ASSERT_TRUE(search.ok());
  EXPECT_EQ(search->result(), http::status::ok);
  EXPECT_NE(search->body().find(absl::StrCat(cat_.Search("smoky", "", 1, 1).total, " teas")),
            std::string::npos)
      << search->body();

  auto add = Post("/cart/add", "id=7&qty=2");
  ASSERT_TRUE(add.ok());
  EXPECT_EQ(add->result(), http::status::ok) << add->body();
  EXPECT_NE(add->body().find("Your cart holds 2 items"), std::string::npos);

  auto cart = Get("/cart");
  ASSERT_TRUE(cart.ok());
  EXPECT_EQ(cart->result(), http::status::ok);
  EXPECT_NE(cart->body().find(HtmlEscape(cat_.Find(7)->name)), std::string::npos);
  const std::string total = absl::StrFormat("Total %d.%02d", 2 * cat_.Find(7)->price_cents / 100,
                                            2 * cat_.Find(7)->price_cents % 100);
  EXPECT_NE(cart->body().find(total), std::string::npos) << cart->body();

  auto checkout = Post("/checkout");
  ASSERT_TRUE(checkout.ok());
  EXPECT_EQ(checkout->result(), http::status::ok) << checkout->body();
  EXPECT_NE(checkout->body().find(OrderChecksum("tester", {{7, 2, cat_.Find(7)->price_cents}})),
            std::string::npos);
  // The cart was emptied: a second checkout has nothing to buy.
  auto again = Post("/checkout");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->result(), http::status::conflict);

  auto rec = Get("/recommend?for=5");
  ASSERT_TRUE(rec.ok());
  EXPECT_EQ(rec->result(), http::status::ok);
  EXPECT_NE(rec->body().find("Recommended for 5"), std::string::npos);
  EXPECT_NE(rec->body().find("/product?id="), std::string::npos);
}

TEST_P(ShopTest, ClientErrorsArePassedOn) {
  EXPECT_EQ(Get("/product?id=4242")->result(), http::status::not_found);
  EXPECT_EQ(Get("/product")->result(), http::status::bad_request);
  EXPECT_EQ(Get("/category?name=coffee")->result(), http::status::not_found);
  EXPECT_EQ(Get("/search")->result(), http::status::bad_request);
  EXPECT_EQ(Post("/cart/add", "id=9999")->result(), http::status::not_found);
  EXPECT_EQ(Get("/recommend?for=abc")->result(), http::status::bad_request);
  EXPECT_EQ(Get("/nowhere")->result(), http::status::not_found);
  EXPECT_EQ(Get("/checkout")->result(), http::status::method_not_allowed);
  EXPECT_EQ(Get("/cart", "no spaces allowed")->result(), http::status::bad_request);
  EXPECT_EQ(Get("/healthz")->body(), "ok\n");
}

TEST_P(ShopTest, UpstreamDownIs502NamingIt) {
  store_->Stop();
  ASSERT_EQ(Post("/cart/add", "id=3")->result(), http::status::ok);
  auto r = Post("/checkout");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->result(), http::status::bad_gateway);
  EXPECT_EQ((*r)["X-Upstream"], "store");
  EXPECT_NE(r->body().find("upstream store failed"), std::string::npos) << r->body();
  // The rest of the shop still works.
  EXPECT_EQ(Get("/product?id=3")->result(), http::status::ok);
  rec_->Stop();
  r = Get("/product?id=3");
  EXPECT_EQ(r->result(), http::status::bad_gateway);
  EXPECT_EQ((*r)["X-Upstream"], "recommendation");
}

TEST_P(ShopTest, ConnectionModes) {
  for (int i = 0; i < 10; ++i) ASSERT_EQ(Get("/search?q=green")->result(), http::status::ok);
  const uint64_t opened = frontend_obj_->catalogue().connections_opened();
  if (GetParam() == ConnMode::kKeepAlive) {
    EXPECT_LE(opened, 2u);  // at most one per front-end worker thread
  } else {
    EXPECT_EQ(opened, 10u);
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ShopTest,
                         ::testing::Values(ConnMode::kKeepAlive, ConnMode::kPerRequest),
                         [](const auto& info) {
                           return info.param == ConnMode::kKeepAlive ? "KeepAlive" : "PerRequest";
                         });

asio::awaitable<Response> Slow(std::chrono::milliseconds delay, Request req) {
  asio::steady_timer t(co_await asio::this_coro::executor, delay);
  co_await t.async_wait(asio::use_awaitable);
  co_return MakeResponse(http::status::ok, "slow " + std::string(req.target()) + "\n");
}

TEST(Server, StopLetsRequestsInFlightFinish) {
  auto s = Server::Start(Loopback("slow"), [](Request r) {
             return Slow(std::chrono::milliseconds(300), std::move(r));
           }).value();
  UpstreamClient c("slow", UrlOf(*s), ConnMode::kKeepAlive);
  absl::StatusOr<Response> got = absl::UnknownError("not run");
  std::thread caller([&] { got = Call(c, http::verb::get, "/x"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the request is in flight
  const auto t0 = std::chrono::steady_clock::now();
  s->Stop();
  caller.join();
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->body(), "slow /x\n");
  EXPECT_FALSE(got->keep_alive());  // told to go away
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_FALSE(Call(c, http::verb::get, "/y").ok());  // no longer accepting
}

TEST(Server, StopGivesUpAtTheDrainDeadline) {
  ServerOptions o = Loopback("stuck");
  o.drain_timeout = std::chrono::milliseconds(200);
  auto s = Server::Start(o, [](Request r) {
             return Slow(std::chrono::seconds(30), std::move(r));
           }).value();
  UpstreamClient c("stuck", UrlOf(*s), ConnMode::kPerRequest, std::chrono::seconds(10));
  absl::StatusOr<Response> got = absl::UnknownError("not run");
  std::thread caller([&] { got = Call(c, http::verb::get, "/x"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto t0 = std::chrono::steady_clock::now();
  s->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  s.reset();  // closes the abandoned connection
  caller.join();
  EXPECT_FALSE(got.ok());
}

TEST(Server, MalformedRequestGets400AndServerSurvives) {
  auto s = Server::Start(Loopback("x"), ServiceHandler(std::make_shared<CartService>())).value();
  asio::io_context io;
  asio::ip::tcp::socket sock(io);
  sock.connect({asio::ip::make_address("127.0.0.1"), s->port()});
  const std::string garbage = "NOT HTTP AT ALL\r\n\r\n";
  asio::write(sock, asio::buffer(garbage));
  std::string reply;
  beast::error_code ec;
  char buf[4096];
  for (;;) {
    const size_t n = sock.read_some(asio::buffer(buf), ec);
    if (ec) break;
    reply.append(buf, n);
  }
  EXPECT_TRUE(reply.starts_with("HTTP/1.1 400")) << reply;
  UpstreamClient c("x", UrlOf(*s), ConnMode::kKeepAlive);
  EXPECT_EQ(Call(c, http::verb::get, "/healthz")->body(), "ok\n");
}

TEST(UpstreamClient, ReplacesAKeepAliveConnectionTheServerClosed) {
  ServerOptions o = Loopback("cart");
  o.idle_timeout = std::chrono::milliseconds(100);
  auto s = Server::Start(o, ServiceHandler(std::make_shared<CartService>())).value();
  UpstreamClient c("cart", UrlOf(*s), ConnMode::kKeepAlive);
  // One io_context for both calls, so the second one finds the pooled connection.
  asio::io_context io;
  std::vector<int> statuses;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto a = co_await c.Call(http::verb::get, "/cart?user=a");
        statuses.push_back(a.ok() ? a->result_int() : 0);
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(400));
        co_await t.async_wait(asio::use_awaitable);  // the server closes the idle connection
        auto b = co_await c.Call(http::verb::get, "/cart?user=b");
        statuses.push_back(b.ok() ? b->result_int() : 0);
      },
      asio::detached);
  io.run();
  EXPECT_EQ(statuses, (std::vector<int>{200, 200}));
  EXPECT_EQ(c.connections_opened(), 2u);
}

TEST(Frontend, UpstreamFailuresAre502) {
  auto cat = std::make_shared<Catalogue>(300);
  // A catalogue that fails (its handler throws: the server answers 500), a recommendation
  // service that is too slow, and real cart/store services.
  auto broken = Server::Start(Loopback("broken"), [](Request) -> asio::awaitable<Response> {
                  throw std::runtime_error("disk on fire");
                  co_return MakeResponse(http::status::ok, "");
                }).value();
  ServerOptions slow_opts = Loopback("slow");
  slow_opts.drain_timeout = std::chrono::milliseconds(100);
  auto slow = Server::Start(slow_opts, [](Request r) {
                return Slow(std::chrono::seconds(3), std::move(r));
              }).value();
  auto k = Server::Start(Loopback("k"), ServiceHandler(std::make_shared<CartService>())).value();
  auto st =
      Server::Start(Loopback("s"), ServiceHandler(std::make_shared<StoreService>(cat, 10))).value();
  FrontendOptions fo{UrlOf(*broken),       UrlOf(*k),
                     UrlOf(*slow),         UrlOf(*st),
                     ConnMode::kKeepAlive, std::chrono::milliseconds(200)};
  auto f = Server::Start(Loopback("f"), FrontendHandler(std::make_shared<Frontend>(fo))).value();
  UpstreamClient client("frontend", UrlOf(*f), ConnMode::kPerRequest);

  auto r = Call(client, http::verb::get, "/search?q=green");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->result(), http::status::bad_gateway);
  EXPECT_EQ((*r)["X-Upstream"], "catalogue");
  EXPECT_NE(r->body().find("answered 500"), std::string::npos) << r->body();
  EXPECT_NE(r->body().find("disk on fire"), std::string::npos) << r->body();

  r = Call(client, http::verb::get, "/recommend?for=1");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->result(), http::status::bad_gateway);
  EXPECT_EQ((*r)["X-Upstream"], "recommendation");
  EXPECT_NE(r->body().find("timed out after 200 ms"), std::string::npos) << r->body();

  // The store's own 409 (stock) is the user's problem, passed on, not a 502. Adding to the cart
  // needs the broken catalogue, so fill the cart directly.
  UpstreamClient cart("cart", UrlOf(*k), ConnMode::kPerRequest);
  ASSERT_EQ(
      Call(cart, http::verb::post, "/cart/items", R"({"id": 1, "qty": 11})", "tester")->result(),
      http::status::ok);
  r = Call(client, http::verb::post, "/checkout");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->result(), http::status::conflict);
  EXPECT_NE(r->body().find("not enough stock of tea 1"), std::string::npos) << r->body();
}

TEST(Load, DriverCoversAllEightTypes) {
  auto cat = std::make_shared<Catalogue>(300);
  auto c =
      Server::Start(Loopback("c"), ServiceHandler(std::make_shared<CatalogueService>(cat))).value();
  auto k = Server::Start(Loopback("k"), ServiceHandler(std::make_shared<CartService>())).value();
  auto r = Server::Start(Loopback("r"),
                         ServiceHandler(std::make_shared<RecommendationService>(cat, 64, 1)))
               .value();
  auto s = Server::Start(Loopback("s"), ServiceHandler(std::make_shared<StoreService>(cat, 100000)))
               .value();
  auto f = Server::Start(Loopback("f"), FrontendHandler(std::make_shared<Frontend>(FrontendOptions{
                                            UrlOf(*c), UrlOf(*k), UrlOf(*r), UrlOf(*s)})))
               .value();
  LoadOptions lo;
  lo.target = "http://127.0.0.1:" + std::to_string(f->port());
  lo.duration = std::chrono::milliseconds(700);
  lo.concurrency = 3;
  auto report = RunLoad(lo);
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->types.size(), 8u);
  for (const auto& [name, st] : report->types) {
    EXPECT_GT(st.Successes(), 0u) << name << ": " << st.last_error;
    EXPECT_EQ(st.Successes(), st.requests) << name << ": " << st.last_error;
  }
  EXPECT_NE(report->ToTable().find("checkout"), std::string::npos);
  EXPECT_EQ(report->ToJson()["requests"], report->Requests());

  lo.target = "not a url";
  EXPECT_FALSE(RunLoad(lo).ok());
}

}  // namespace
}  // namespace weft::teashop
