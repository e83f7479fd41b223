// `weftctl demo traffic`: the traffic features on the tea shop. The shop plus the pods of
// examples/teashop/traffic-demo/pods (a meshed client, catalogue-v2, a flaky ratings, an
// overloaded inventory) on `weftctl up`; a canary shifted live, retries hiding the flaky back end
// and a circuit breaker protecting the overloaded one, each measured from the ztunnels' own
// istio_requests_total (deltas around a load run from shop/client) and shown with `weftctl stat`.
#include <filesystem>
#include <map>
#include <ostream>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "cli/demo/runner.h"
#include "common/status.h"
#include "nlohmann/json.hpp"

namespace weft::cli::demo {
namespace {

using namespace std::chrono_literals;

constexpr char kCatalogueUrl[] = "http://catalogue.shop.svc.cluster.local";
constexpr char kRatingsUrl[] = "http://ratings.shop.svc.cluster.local";
constexpr char kInventoryUrl[] = "http://inventory.shop.svc.cluster.local";

// istio_requests_total (and weft_http_retries_total) of every node, summed per label set.
using Counters = std::vector<MetricSample>;

// What a load run from shop/client saw, and what the mesh counted meanwhile.
struct LoadRun {
  double requests = 0, successes = 0, seconds = 0;
  Counters before, after;
  bool ok = false;
  // The increase of the samples `pick` accepts.
  double Delta(const std::function<bool(const MetricSample&)>& pick) const {
    double d = 0;
    for (const auto& s : after)
      if (pick(s)) d += s.value;
    for (const auto& s : before)
      if (pick(s)) d -= s.value;
    return d;
  }
};

bool FromClient(const MetricSample& s, const std::string& reporter) {
  return s.name == "istio_requests_total" && Label(s, "reporter") == reporter &&
         Label(s, "source_workload") == "client";
}

std::string Percent(double part, double whole) {
  return whole > 0 ? absl::StrFormat("%.1f %%", 100.0 * part / whole) : "-";
}

class TrafficDemo : public Runner {
 public:
  TrafficDemo(const DemoOptions& o, std::ostream& out, std::ostream& err)
      : Runner(o, out, err, 7) {}

 private:
  absl::Status Steps() override;
  std::vector<std::vector<std::string>> TryNext() const override;
  absl::Status Canary();
  absl::Status Retries();
  absl::Status CircuitBreaker();

  std::string File(const std::string& name) const { return dir_ + "/" + name; }
  // The manifests and the demo's pods in one folder (symbolic links) for `weftctl up`.
  absl::StatusOr<std::string> MergedManifests();
  absl::StatusOr<Counters> Scrape();
  // `weftctl apply -f FILE --wait`, recorded.
  absl::Status Apply(const std::string& file);
  // The load driver in shop/client, GETting `path` of `url` for `seconds` with `users`, and
  // `weftctl stat shop` while it runs.
  absl::StatusOr<LoadRun> Load(const std::string& url, const std::string& path, int users,
                               double seconds);

  std::string dir_;  // examples/teashop/traffic-demo
};

absl::Status TrafficDemo::Steps() {
  WEFT_RETURN_IF_ERROR(Preflight());
  std::string m = o_.manifests;
  while (m.size() > 1 && m.back() == '/') m.pop_back();
  dir_ = (std::filesystem::path(m).parent_path() / "traffic-demo").string();
  for (const char* f : {"pods", "canary-90-10.yaml", "canary-50-50.yaml", "ratings-retries.yaml",
                        "inventory-circuit-breaker.yaml"}) {
    std::error_code ec;
    if (!std::filesystem::exists(File(f), ec))
      return absl::NotFoundError(absl::StrCat("no ", File(f),
                                              " next to the manifests "
                                              "(examples/teashop/traffic-demo)"));
  }
  WEFT_ASSIGN_OR_RETURN(std::string merged, MergedManifests());
  Info("manifests + " + File("pods") + " -> " + merged);
  absl::Status st =
      Up(2, merged,
         absl::StrCat("bringing up a ", o_.nodes,
                      "-node mesh with the tea shop and the demo's pods: shop/client, "
                      "catalogue-v2, ratings-0/1 (30 % of answers fail), inventory (100 ms "
                      "per request)"));
  if (st.ok() && !Interrupted()) st = Enrol(3);
  if (st.ok() && !Interrupted()) st = Canary();
  if (st.ok() && !Interrupted()) st = Retries();
  if (st.ok() && !Interrupted()) st = CircuitBreaker();
  return st;
}

std::vector<std::vector<std::string>> TrafficDemo::TryNext() const {
  return {{"stat", "shop"},
          {"exec", "shop/client", "--", "weft-teashop", "--role", "load", "--target", kCatalogueUrl,
           "--path", "/teas/1", "--duration", "30s"},
          {"apply", "-f", File("canary-90-10.yaml"), "--wait"},
          {"delete", "-f", File("ratings-retries.yaml"), "--wait"},
          {"status"},
          {"tap", "shop"}};
}

absl::StatusOr<std::string> TrafficDemo::MergedManifests() {
  const std::string merged = o_.work_dir + "/manifests";
  std::error_code ec;
  std::filesystem::remove_all(merged, ec);
  std::filesystem::create_directories(merged, ec);
  if (ec) return absl::InternalError(absl::StrCat("mkdir ", merged, ": ", ec.message()));
  for (const std::string& from : {o_.manifests, File("pods")}) {
    for (const auto& e : std::filesystem::directory_iterator(from, ec)) {
      if (!e.is_regular_file()) continue;
      std::filesystem::create_symlink(std::filesystem::absolute(e.path()),
                                      merged + "/" + e.path().filename().string(), ec);
      if (ec)
        return absl::InternalError(absl::StrCat("linking ", e.path().string(), ": ", ec.message()));
    }
    if (ec) return absl::InternalError(absl::StrCat("reading ", from, ": ", ec.message()));
  }
  return merged;
}

absl::StatusOr<Counters> TrafficDemo::Scrape() {
  Counters all;
  for (const up::NodeState& n : state_.nodes) {
    WEFT_ASSIGN_OR_RETURN(std::string text, Metrics(n));
    for (auto& s : ParseSamples(text, "istio_requests_total")) all.push_back(std::move(s));
    for (auto& s : ParseSamples(text, "weft_http_retries_total")) all.push_back(std::move(s));
  }
  return all;
}

absl::Status TrafficDemo::Apply(const std::string& file) {
  ChildResult r = Run({"apply", "-f", file, "--wait"}, 60s);
  if (r.interrupted) return absl::CancelledError("interrupted");
  Record("weftctl apply " + std::filesystem::path(file).filename().string() + ": every node has it",
         r.code == 0, absl::StrCat("exit ", r.code));
  if (r.code != 0) return absl::InternalError("weftctl apply failed (see its output above)");
  return absl::OkStatus();
}

absl::StatusOr<LoadRun> TrafficDemo::Load(const std::string& url, const std::string& path,
                                          int users, double seconds) {
  LoadRun run;
  WEFT_ASSIGN_OR_RETURN(run.before, Scrape());
  WEFT_ASSIGN_OR_RETURN(
      Child load,
      StartQuietly({"exec", "shop/client", "--", "weft-teashop", "--role", "load", "--target", url,
                    "--path", path, "--duration", absl::StrCat(FormatValue(seconds), "s"),
                    "--concurrency", std::to_string(users), "--json"}));
  if (!Sleep(1500ms)) return absl::CancelledError("interrupted");
  ChildResult stat = Run({"stat", "shop", "--window", "2s"}, 30s);
  ChildResult lr =
      load.Finish(std::chrono::milliseconds(static_cast<int>(seconds * 1000)) + 60s, nullptr, true);
  if (stat.interrupted || lr.interrupted) return absl::CancelledError("interrupted");
  WEFT_ASSIGN_OR_RETURN(run.after, Scrape());
  // The driver prints one JSON line; anything else (an error) is shown as is.
  auto j = nlohmann::json::parse(Trim(lr.output), nullptr, false);
  if (j.is_object()) {
    run.requests = j.value("requests", 0.0);
    run.successes = j.value("successes", 0.0);
    run.seconds = j.value("seconds", 0.0);
    Info(absl::StrFormat("the client saw: %.0f requests in %.1f s, %.0f answered 2xx (%s)",
                         run.requests, run.seconds, run.successes,
                         Percent(run.successes, run.requests)));
  } else {
    Info("the load driver said: " + Trim(lr.output));
  }
  run.ok = lr.code == 0 && j.is_object();
  return run;
}

absl::Status TrafficDemo::Canary() {
  Step(4, "a canary: Service catalogue split 90/10 between v1 and v2, then shifted live to 50/50");
  auto v2_share = [](const LoadRun& run, double* total) {
    auto to = [&](bool v2) {
      return run.Delta([&](const MetricSample& s) {
        const std::string wl = Label(s, "destination_workload");
        return FromClient(s, "source") && absl::StartsWith(wl, "catalogue") &&
               (wl == "catalogue-v2") == v2;
      });
    };
    double v1 = to(false), v2 = to(true);
    *total = v1 + v2;
    return *total > 0 ? v2 / *total : 0.0;
  };
  const std::pair<const char*, double> phases[] = {{"canary-90-10.yaml", 0.10},
                                                   {"canary-50-50.yaml", 0.50}};
  for (const auto& [file, want] : phases) {
    WEFT_RETURN_IF_ERROR(Apply(File(file)));
    WEFT_ASSIGN_OR_RETURN(LoadRun run, Load(kCatalogueUrl, "/teas/1", 4, 4));
    double total = 0;
    double share = v2_share(run, &total);
    Info(absl::StrFormat(
        "the client's ztunnel counted (istio_requests_total{reporter=\"source\","
        "source_workload=\"client\"}): %.0f requests, %.0f to v1 (catalogue-0, catalogue-1), "
        "%.0f to v2 (catalogue-v2): v2 got %s",
        total, total * (1 - share), total * share, Percent(share, 1)));
    // Every request reported by its destination's ztunnel too; catalogue-0 shares node0 with
    // the client, so its requests ride the same-node fast path and the client's ztunnel
    // reports them for the destination as well.
    const double at_destination = run.Delta([](const MetricSample& s) {
      return FromClient(s, "destination") &&
             absl::StartsWith(Label(s, "destination_workload"), "catalogue");
    });
    Record(
        "the destinations' reports agree (reporter=\"destination\", same-node catalogue-0 "
        "included)",
        total > 0 && at_destination == total,
        absl::StrFormat("%.0f reported by destinations, %.0f by the source", at_destination,
                        total));
    // Weighted per request: with a few thousand requests the share is within a few points.
    const double tolerance = want < 0.2 ? 0.05 : 0.12;
    Record(absl::StrFormat("v2 gets %.0f %% of the requests (measured %s, %.0f requests)",
                           want * 100, Percent(share, 1), total),
           run.ok && total >= 100 && std::abs(share - want) <= tolerance,
           absl::StrFormat("%s of %.0f requests to v2; the driver %s", Percent(share, 1), total,
                           run.ok ? "succeeded" : "failed"));
  }
  return absl::OkStatus();
}

absl::Status TrafficDemo::Retries() {
  Step(5, "retries hide a flaky back end (ratings fails 30 % of requests), within a budget");
  // What the client's ztunnel answered the client (after its retries, if any).
  auto answered_503 = [](const LoadRun& run, double* total) {
    *total = run.Delta([](const MetricSample& s) {
      return FromClient(s, "source") && Label(s, "destination_service_name") == "ratings";
    });
    return run.Delta([](const MetricSample& s) {
      return FromClient(s, "source") && Label(s, "destination_service_name") == "ratings" &&
             Label(s, "response_code") == "503";
    });
  };
  Info("without retries:");
  WEFT_ASSIGN_OR_RETURN(LoadRun before, Load(kRatingsUrl, "/rate", 4, 4));
  double requests = 0, failed = answered_503(before, &requests);
  Info(
      absl::StrFormat("the client's ztunnel counted %.0f requests to ratings, %.0f answered 503 "
                      "(%s)",
                      requests, failed, Percent(failed, requests)));
  const double rate_before = before.requests > 0 ? before.successes / before.requests : 0;
  Record("without retries the client sees the failures (about 70 % succeed)",
         before.requests >= 100 && rate_before > 0.55 && rate_before < 0.85,
         absl::StrCat(Percent(before.successes, before.requests), " of ", before.requests,
                      " requests succeeded"));

  WEFT_RETURN_IF_ERROR(Apply(File("ratings-retries.yaml")));
  Info("with retries (3 attempts on 5xx, budget: at most 50 % extra load):");
  WEFT_ASSIGN_OR_RETURN(LoadRun after, Load(kRatingsUrl, "/rate", 4, 4));
  failed = answered_503(after, &requests);
  const double retried = after.Delta([](const MetricSample& s) {
    return s.name == "weft_http_retries_total" && Label(s, "result") == "retried";
  });
  const double refused = after.Delta([](const MetricSample& s) {
    return s.name == "weft_http_retries_total" && Label(s, "result") != "retried";
  });
  Info(absl::StrFormat(
      "the client's ztunnel counted %.0f requests to ratings, %.0f answered 503 (%s); it retried "
      "%.0f times (weft_http_retries_total{result=\"retried\"}) and refused %.0f retries",
      requests, failed, Percent(failed, requests), retried, refused));
  const double rate_after = after.requests > 0 ? after.successes / after.requests : 0;
  Record("with retries the client sees almost no failure (>= 97 % succeed)",
         after.requests >= 100 && rate_after >= 0.97,
         absl::StrCat(Percent(after.successes, after.requests), " of ", after.requests,
                      " requests succeeded"));
  Record("the retries are the mesh's: counted by the client's ztunnel, within the 50 % budget",
         retried > 0 && after.requests > 0 && retried <= 0.5 * after.requests + 10 * after.seconds,
         absl::StrFormat("%.0f retries for %.0f requests", retried, after.requests));
  return absl::OkStatus();
}

absl::Status TrafficDemo::CircuitBreaker() {
  Step(6, "a circuit breaker protects an overloaded back end (inventory: 100 ms per request)");
  auto served = [](const LoadRun& run) {
    return run.Delta([](const MetricSample& s) {
      return FromClient(s, "destination") && Label(s, "destination_workload") == "inventory";
    });
  };
  auto overflowed = [](const LoadRun& run) {
    return run.Delta([](const MetricSample& s) {
      return FromClient(s, "source") && absl::StrContains(Label(s, "response_flags"), "UO");
    });
  };
  constexpr int kUsers = 12;
  constexpr double kSeconds = 3;
  Info(absl::StrCat("without a breaker, ", kUsers, " users keep ", kUsers,
                    " requests in flight at inventory:"));
  WEFT_ASSIGN_OR_RETURN(LoadRun before, Load(kInventoryUrl, "/stock", kUsers, kSeconds));
  const double rate_before = served(before) / std::max(before.seconds, 0.1);
  Info(absl::StrFormat("inventory's ztunnel counted %.0f requests: %.1f per second", served(before),
                       rate_before));

  WEFT_RETURN_IF_ERROR(Apply(File("inventory-circuit-breaker.yaml")));
  Info("with the breaker (4 connections per endpoint):");
  WEFT_ASSIGN_OR_RETURN(LoadRun after, Load(kInventoryUrl, "/stock", kUsers, kSeconds));
  const double rate_after = served(after) / std::max(after.seconds, 0.1);
  const double uo = overflowed(after);
  Info(absl::StrFormat(
      "inventory's ztunnel counted %.0f requests: %.1f per second; the client's ztunnel answered "
      "%.0f at once with 503 (istio_requests_total{response_flags=\"UO\"})",
      served(after), rate_after, uo));
  // 4 in flight at 100 ms each: at most 40 requests per second reach inventory.
  Record("overflow is answered 503 UO by the client's ztunnel", uo > 0,
         absl::StrFormat("%.0f UO answers", uo));
  Record(
      "inventory is protected: at most 4 requests in flight (<= 40 per second at 100 ms)",
      served(after) > 0 && rate_after <= 40 * 1.25 && rate_after < rate_before,
      absl::StrFormat("%.1f per second with the breaker, %.1f without", rate_after, rate_before));
  Record("requests that fit still succeed", after.successes > 0,
         absl::StrFormat("%.0f of %.0f succeeded", after.successes, after.requests));
  return absl::OkStatus();
}

}  // namespace

int RunTrafficDemo(const DemoOptions& opts, std::ostream& out, std::ostream& err) {
  TrafficDemo d(opts, out, err);
  return d.Main(
      absl::StrCat("weftctl demo traffic: routes, retries and circuit breaking on the "
                   "tea shop, on a ",
                   opts.nodes, "-node mesh on this host"));
}

}  // namespace weft::cli::demo
