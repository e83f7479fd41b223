#include "examples/teashop/load.h"

#include <algorithm>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status.h"
#include "examples/teashop/frontend.h"

namespace weft::teashop {
namespace {

// A --path run's one request type.
constexpr RequestType kGet{"get", http::verb::get, ""};

// The types a run reports, in table order.
std::vector<std::string> TypesOf(const LoadOptions& opts) {
  if (!opts.path.empty()) return {std::string(kGet.name)};
  std::vector<std::string> names;
  for (const RequestType& t : kRequestTypes) names.emplace_back(t.name);
  return names;
}

// The report's types: the shop's eight in their order, then any other ("get").
std::vector<std::string> TableOrder(const std::map<std::string, TypeStats>& types) {
  std::vector<std::string> names;
  for (const RequestType& t : kRequestTypes)
    if (types.count(std::string(t.name))) names.emplace_back(t.name);
  for (const auto& [name, s] : types)
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  return names;
}

struct Shared {
  const LoadOptions& opts;
  UpstreamClient& client;
  std::chrono::steady_clock::time_point deadline;
};

// One user's loop; its statistics are merged by the caller once every user is done.
asio::awaitable<void> User(Shared& sh, int index, std::map<std::string, TypeStats>* stats) {
  std::mt19937 rng(sh.opts.seed * 7919u + static_cast<uint32_t>(index));
  const std::string user = absl::StrCat("load-", sh.opts.seed, "-", index);
  const auto& cats = Catalogue::Categories();
  const auto& notes = Catalogue::FlavourNotes();
  auto id = [&] {
    return 1 + static_cast<int>(rng() % static_cast<uint32_t>(sh.opts.catalogue_size));
  };
  // Every user starts at "home" (checkout must come after its own cart_add) and, while the
  // front end answers, completes at least one full cycle, so the report covers all eight types
  // however slow the shop is; a front end that does not answer ends the run at the deadline.
  bool answering = true;
  const size_t min_requests = sh.opts.path.empty() ? kRequestTypes.size() : 1;
  for (size_t i = 0;
       std::chrono::steady_clock::now() < sh.deadline || (i < min_requests && answering); ++i) {
    const RequestType& t = sh.opts.path.empty() ? kRequestTypes[i % kRequestTypes.size()] : kGet;
    std::string target(sh.opts.path.empty() ? t.path : sh.opts.path), body;
    std::vector<std::pair<std::string, std::string>> headers = {{"X-User", user}};
    if (t.name == "category") {
      absl::StrAppend(&target, "?name=", cats[rng() % cats.size()]);
    } else if (t.name == "product") {
      absl::StrAppend(&target, "?id=", id());
    } else if (t.name == "search") {
      absl::StrAppend(&target, "?q=", UrlEscape(notes[rng() % notes.size()]));
    } else if (t.name == "cart_add") {
      body = absl::StrCat("id=", id(), "&qty=1");
      headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    } else if (t.name == "recommend") {
      absl::StrAppend(&target, "?for=", id());
    }
    const auto start = std::chrono::steady_clock::now();
    auto res = co_await sh.client.Call(t.method, target, body, headers);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    TypeStats& s = (*stats)[std::string(t.name)];
    ++s.requests;
    s.total_ms += ms;
    s.max_ms = std::max(s.max_ms, ms);
    if (!res.ok()) {
      answering = false;
      ++s.by_status[0];
      s.last_error = std::string(res.status().message());
      // No busy loop against a front end that is down.
      asio::steady_timer pause(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
      beast::error_code ec;
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    ++s.by_status[res->result_int()];
    if (res->result_int() >= 400) {
      // One line for the report: the front end's error paragraph when it has one.
      std::string body = res->body();
      if (size_t p = body.find("<p class=\"error\">"); p != std::string::npos) {
        body = body.substr(p + 17, body.find("</p>", p) - p - 17);
      }
      body = body.substr(0, 300);
      std::replace(body.begin(), body.end(), '\n', ' ');
      auto up = res->find("X-Upstream");
      s.last_error = absl::StrCat(
          res->result_int(),
          up == res->end() ? "" : absl::StrCat(" (upstream ", std::string(up->value()), ")"), ": ",
          body);
    }
  }
}

}  // namespace

uint64_t TypeStats::Successes() const {
  uint64_t n = 0;
  for (const auto& [status, count] : by_status) {
    if (status >= 200 && status < 300) n += count;
  }
  return n;
}

uint64_t LoadReport::Requests() const {
  uint64_t n = 0;
  for (const auto& [name, s] : types) n += s.requests;
  return n;
}

uint64_t LoadReport::Successes() const {
  uint64_t n = 0;
  for (const auto& [name, s] : types) n += s.Successes();
  return n;
}

nlohmann::json LoadReport::ToJson() const {
  nlohmann::json types_j = nlohmann::json::object();
  for (const auto& [name, s] : types) {
    nlohmann::json st = nlohmann::json::object();
    for (const auto& [code, n] : s.by_status) st[code == 0 ? "error" : std::to_string(code)] = n;
    types_j[name] = {
        {"requests", s.requests}, {"successes", s.Successes()},
        {"statuses", st},         {"mean_ms", s.requests ? s.total_ms / s.requests : 0.0},
        {"max_ms", s.max_ms},     {"last_error", s.last_error}};
  }
  return {{"seconds", seconds},
          {"requests", Requests()},
          {"successes", Successes()},
          {"types", types_j}};
}

std::string LoadReport::ToTable() const {
  std::string out = absl::StrFormat("%-10s %9s %9s %9s %-24s\n", "type", "requests", "mean_ms",
                                    "max_ms", "statuses");
  const std::vector<std::string> order = TableOrder(types);
  for (const std::string& name : order) {
    const TypeStats& s = types.at(name);
    std::string st;
    for (const auto& [code, n] : s.by_status) {
      absl::StrAppend(&st, st.empty() ? "" : " ", code == 0 ? "error" : std::to_string(code), ":",
                      n);
    }
    absl::StrAppend(&out,
                    absl::StrFormat("%-10s %9d %9.2f %9.2f %-24s\n", name, s.requests,
                                    s.requests ? s.total_ms / s.requests : 0.0, s.max_ms, st));
  }
  absl::StrAppend(&out, absl::StrFormat("%llu requests, %llu successful, in %.1f s (%.1f req/s)\n",
                                        static_cast<unsigned long long>(Requests()),
                                        static_cast<unsigned long long>(Successes()), seconds,
                                        seconds > 0 ? Requests() / seconds : 0.0));
  for (const std::string& name : order) {
    if (const TypeStats& s = types.at(name); !s.last_error.empty())
      absl::StrAppend(&out, "last error of ", Av(name), ": ", s.last_error, "\n");
  }
  return out;
}

absl::StatusOr<LoadReport> RunLoad(const LoadOptions& opts) {
  WEFT_ASSIGN_OR_RETURN(Url url, Url::Parse(opts.target));
  if (opts.concurrency < 1 || opts.concurrency > 10000) {
    return absl::InvalidArgumentError("--concurrency: use 1 to 10000 users");
  }
  if (opts.threads < 1 || opts.threads > 256) {
    return absl::InvalidArgumentError("--threads: use 1 to 256");
  }
  if (opts.catalogue_size < 1) return absl::InvalidArgumentError("--catalogue-size must be >= 1");
  // Declared before the client: the client's pooled connections belong to these io_contexts.
  std::vector<std::unique_ptr<asio::io_context>> ios;
  for (int i = 0; i < opts.threads; ++i) ios.push_back(std::make_unique<asio::io_context>(1));
  UpstreamClient client("frontend", url, opts.conn, opts.timeout);
  const auto start = std::chrono::steady_clock::now();
  Shared sh{opts, client, start + opts.duration};
  std::vector<std::map<std::string, TypeStats>> per_user(opts.concurrency);
  for (int u = 0; u < opts.concurrency; ++u) {
    asio::co_spawn(*ios[u % ios.size()], User(sh, u, &per_user[u]), asio::detached);
  }
  std::vector<std::thread> threads;
  for (auto& io : ios) threads.emplace_back([io = io.get()] { io->run(); });
  for (auto& t : threads) t.join();

  LoadReport r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (const std::string& name : TypesOf(opts)) r.types[name];
  for (const auto& m : per_user) {
    for (const auto& [name, s] : m) {
      TypeStats& d = r.types[name];
      for (const auto& [code, n] : s.by_status) d.by_status[code] += n;
      d.requests += s.requests;
      d.total_ms += s.total_ms;
      d.max_ms = std::max(d.max_ms, s.max_ms);
      if (!s.last_error.empty()) d.last_error = s.last_error;
    }
  }
  return r;
}

}  // namespace weft::teashop
