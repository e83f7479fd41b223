#include "cli/cp_status.h"

#include <map>
#include <optional>
#include <ostream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "cli/commands.h"
#include "cli/mesh_ref.h"
#include "common/flags.h"
#include "common/net.h"
#include "common/scrape/scrape.h"

namespace weft::cli {
namespace {

constexpr char kDefaultWeftd[] = "127.0.0.1:15010";

struct Flags {
  std::string weftd = kDefaultWeftd;
  bool weftd_given = false;
  MeshRef mesh;
  std::vector<std::string> positional;
  bool json = false;
};

// The flags status and config-dump share.
void AddFlags(CLI::App& app, Flags& f) {
  app.add_option("--weftd", f.weftd, "weftd's admin endpoint")
      ->type_name("ADDR:PORT")
      ->each([&f](const std::string&) { f.weftd_given = true; });
  AddMeshRefFlags(app, &f.mesh);
}

// weftd's admin endpoint: --weftd if given; else the local mesh (weftctl up) named by --name
// (default "weft") if one runs; else the default loopback address.
NetnsEndpoint WeftdEndpoint(const Flags& f, std::ostream& err) {
  if (!f.weftd_given) {
    auto local = LocalWeftdAdmin(f.mesh);
    if (local.ok()) return *local;
    if (f.mesh.name_given || local.status().code() != absl::StatusCode::kNotFound) {
      err << "weftctl: " << local.status().message() << "\n";
      return {};
    }
  }
  return {"weftd", "", f.weftd};
}

// GET from weftd's admin endpoint; errors say how to reach it.
bool Fetch(const Flags& f, const std::string& path, std::string* body, std::ostream& err) {
  NetnsEndpoint ep = WeftdEndpoint(f, err);
  if (ep.addr.empty()) return false;
  auto addr = SockAddr::Parse(ep.addr);
  if (!addr.ok()) {
    err << "weftctl: --weftd \"" << ep.addr << "\" is not ADDR:PORT\n";
    return false;
  }
  auto ns = OpenNetns(ep.netns);
  if (!ns.ok()) {
    err << "weftctl: " << ns.status().message() << "\n";
    return false;
  }
  int status = 0;
  auto r = HttpGet(*addr, path, ns->valid() ? ns->get() : -1, &status, 5000);
  if (!r.ok()) {
    err << "weftctl: cannot reach weftd's admin endpoint at " << ep.addr
        << (ep.netns.empty() ? "" : " in " + ep.netns) << ": " << r.status().message()
        << "\n(is weftd running? give its admin address with --weftd ADDR:PORT, or the local "
           "mesh with --name NAME)\n";
    return false;
  }
  if (status != 200) {
    err << "weftctl: weftd answered " << status << ": " << *r;
    return false;
  }
  *body = std::move(*r);
  return true;
}

std::string Str(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  return it->is_string() ? it->get<std::string>() : it->dump();
}

std::optional<std::chrono::system_clock::time_point> ParseIso(const std::string& s) {
  if (s.empty()) return std::nullopt;
  absl::Time t;
  std::string err;
  if (!absl::ParseTime(absl::RFC3339_full, s, &t, &err)) return std::nullopt;
  return absl::ToChronoTime(t);
}

// "3d4h", "23h59m", "12m", "40s".
std::string Span(std::chrono::system_clock::duration d) {
  int64_t s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  if (s < 0) s = -s;
  int64_t days = s / 86400, hours = s % 86400 / 3600, mins = s % 3600 / 60;
  if (days > 0) return absl::StrCat(days, "d", hours, "h");
  if (hours > 0) return absl::StrCat(hours, "h", mins, "m");
  if (mins > 0) return absl::StrCat(mins, "m");
  return absl::StrCat(s, "s");
}

// "in 23h59m", "EXPIRED 2h0m ago", plus "RENEW OVERDUE" past 80% of the lifetime.
std::string TimeLeft(const nlohmann::json& cert, std::chrono::system_clock::time_point now) {
  auto nb = ParseIso(Str(cert, "not_before"));
  auto na = ParseIso(Str(cert, "not_after"));
  if (!na) return "(expiry unknown)";
  if (*na <= now) return absl::StrCat("EXPIRED ", Span(now - *na), " ago");
  std::string out = absl::StrCat("in ", Span(*na - now));
  if (nb && *na > *nb) {
    double used =
        std::chrono::duration<double>(now - *nb) / std::chrono::duration<double>(*na - *nb);
    if (used >= 0.8) {
      out += absl::StrFormat("  RENEW OVERDUE (%.0f%% of its lifetime used; nodes renew at 50%%)",
                             used * 100);
    }
  }
  return out;
}

// Gateway API routes with each Service parent's conditions, as kubectl describe shows them:
// "HTTPRoute prod/reviews (generation 3)" then per parent "Accepted=False NoMatchingParent: ...".
std::string RenderRoutes(const nlohmann::json& s) {
  if (!s.contains("routes")) return "";
  std::string out = "\nROUTES (status per Service parent)\n";
  if (s["routes"].empty()) out += "  none\n";
  for (const auto& r : s["routes"]) {
    out += absl::StrCat("  ", Str(r, "kind"), " ", Str(r, "namespace"), "/", Str(r, "name"),
                        " (generation ", Str(r, "generation"), ")\n");
    for (const auto& p : r.value("parents", nlohmann::json::array())) {
      const nlohmann::json& ref = p.value("parentRef", nlohmann::json::object());
      std::string parent = absl::StrCat("Service ", Str(ref, "namespace"), "/", Str(ref, "name"));
      if (ref.contains("port")) absl::StrAppend(&parent, " port ", Str(ref, "port"));
      if (ref.contains("sectionName")) absl::StrAppend(&parent, " (", Str(ref, "sectionName"), ")");
      out += absl::StrCat("    -> ", parent, "\n");
      for (const auto& c : p.value("conditions", nlohmann::json::array())) {
        out += absl::StrCat("       ", Str(c, "type"), "=", Str(c, "status"), " ", Str(c, "reason"),
                            Str(c, "message").empty() ? "" : ": " + Str(c, "message"), "\n");
      }
    }
  }
  return out;
}

}  // namespace

std::string RenderStatus(const nlohmann::json& s) {
  return RenderStatus(s, std::chrono::system_clock::now());
}

std::string RenderStatus(const nlohmann::json& s, std::chrono::system_clock::time_point now) {
  std::string out = absl::StrCat("source: ", Str(s, "source"),
                                 "    model generation: ", Str(s, "model_generation"), "\n\n");
  out += "NODES AND STREAMS\n";
  out += absl::StrFormat("  %-16s %-9s %-10s %-10s %-10s %-6s %s\n", "NODE", "COMPONENT",
                         "CONNECTED", "SENT", "ACKED", "NACKS", "LAST NACK");
  if (!s.contains("streams") || s["streams"].empty()) out += "  (no node has connected)\n";
  for (const auto& st : s.value("streams", nlohmann::json::array())) {
    out += absl::StrFormat("  %-16s %-9s %-10s %-10s %-10s %-6s %s\n", Str(st, "node"),
                           Str(st, "component"), st.value("connected", false) ? "yes" : "no",
                           Str(st, "version_sent"), Str(st, "version_acked"), Str(st, "nacks"),
                           Str(st, "last_nack_error"));
  }
  out += "\nREJECTED OBJECTS\n";
  if (s.value("rejected", nlohmann::json::array()).empty()) out += "  none\n";
  for (const auto& r : s.value("rejected", nlohmann::json::array())) {
    std::string name =
        Str(r, "namespace").empty() ? Str(r, "name") : Str(r, "namespace") + "/" + Str(r, "name");
    out += absl::StrCat("  ", Str(r, "kind"), " ", name, " (", Str(r, "source"),
                        "): ", Str(r, "reason"), "\n");
    // A policy is not dropped but enforced fail-closed: say how.
    if (!Str(r, "effect").empty()) out += absl::StrCat("    -> ", Str(r, "effect"), "\n");
  }
  out += RenderRoutes(s);
  if (!s.value("file_errors", nlohmann::json::array()).empty()) {
    out += "\nMANIFEST FILES THAT DO NOT PARSE (their last good content stays in force)\n";
    for (const auto& e : s["file_errors"])
      out += absl::StrCat("  ", Str(e, "path"), ": ", Str(e, "error"), "\n");
  }
  if (s.contains("ca")) {
    const auto& ca = s["ca"];
    out += absl::StrCat("\nCA\n  root for nodes (--cp-root): ", Str(ca, "root"), "\n");
    if (!Str(ca, "root_store").empty()) {
      out += absl::StrCat("  root kept in: ", Str(ca, "root_store"), "\n");
    }
    if (!Str(ca, "root_expires").empty()) {
      out += absl::StrCat("  root expires: ", Str(ca, "root_expires"), " (",
                          TimeLeft({{"not_after", ca["root_expires"]}}, now), ")\n");
    }
    out += absl::StrCat("  certificates issued: ", Str(ca, "issued"),
                        ", refused (not on the node): ", Str(ca, "refused_permission_denied"),
                        ", refused (bad credential): ", Str(ca, "refused_unauthenticated"), "\n");
    if (ca.contains("certificates")) {
      out += "\nCERTIFICATES (the newest issued per node and identity)\n";
      // Grouped by node; weftd sends them sorted, but a recorded document may not be.
      std::map<std::string, std::vector<const nlohmann::json*>> by_node;
      for (const auto& c : ca["certificates"]) by_node[Str(c, "node")].push_back(&c);
      if (by_node.empty()) out += "  none issued yet\n";
      size_t width = 0;
      for (const auto& [node, certs] : by_node) {
        for (const auto* c : certs) width = std::max(width, Str(*c, "identity").size());
      }
      for (const auto& [node, certs] : by_node) {
        out += absl::StrCat("  ", node, "\n");
        for (const auto* c : certs) {
          out += absl::StrFormat("    %-*s  expires %s  %s\n", static_cast<int>(width),
                                 Str(*c, "identity"), Str(*c, "not_after"), TimeLeft(*c, now));
        }
      }
    }
  }
  return out;
}

int StatusMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  CLI::App app{
      absl::StrCat("Nodes connected to weftd with the config version each runs, NACKs, rejected\n"
                   "objects with their reasons, routes with their parents' Accepted/ResolvedRefs "
                   "conditions,\n"
                   "CA counters and, per node, each identity's "
                   "certificate\nexpiry (EXPIRED / RENEW OVERDUE past 80% of its lifetime). "
                   "--weftd is weftd's\nadmin endpoint; without it, the local mesh of `weftctl "
                   "up` (--name, default weft)\nif one runs, else ",
                   kDefaultWeftd, "."),
      "weftctl status"};
  AddFlags(app, f);
  app.add_flag("--json", f.json, "print weftd's /status document as JSON");
  if (auto rc = ParseCommand(app, args, out, err)) return *rc;
  std::string body;
  if (!Fetch(f, "/status", &body, err)) return kExitFailure;
  auto j = nlohmann::json::parse(body, nullptr, false);
  if (j.is_discarded()) {
    err << "weftctl: weftd's /status is not JSON\n";
    return kExitFailure;
  }
  out << (f.json ? j.dump(2) + "\n" : RenderStatus(j));
  return kExitOk;
}

int ConfigDumpMain(const std::vector<std::string>& args, std::ostream& out, std::ostream& err) {
  Flags f;
  CLI::App app{
      "The configuration weftd streams to NODE (its pods, the workloads and services they\n"
      "may address, the policies that apply to them), as JSON.",
      "weftctl config-dump"};
  app.add_option("NODE", f.positional, "the node, e.g. node0")->required()->expected(1);
  AddFlags(app, f);
  if (auto rc = ParseCommand(app, args, out, err)) return *rc;
  std::string body;
  if (!Fetch(f, "/config_dump?node=" + f.positional[0], &body, err)) return kExitFailure;
  out << body << (body.empty() || body.back() != '\n' ? "\n" : "");
  return kExitOk;
}

}  // namespace weft::cli
