// Weft's Grafana dashboards (helm/dashboards/*.json) read as a test needs them: every panel's
// every query, with Grafana's variables substituted, so that a test can check the files
// (helm/tests/chart_test.cc) and evaluate each query on a real Prometheus (tests/e2e).
#pragma once

#include <algorithm>
#include <filesystem>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/file.h"
#include "nlohmann/json.hpp"

namespace weft::e2e {

struct Dashboard {
  std::string file;  // base name, e.g. weft-mesh-overview.json
  nlohmann::json json;
};

struct PanelQuery {
  std::string dashboard;  // file
  int panel_id = 0;
  std::string panel_title;
  std::string ref_id;
  std::string expr;
  std::string Name() const {
    return absl::StrCat(dashboard, " panel ", panel_id, " \"", panel_title, "\" ", ref_id);
  }
};

// Every *.json under `dir`, parsed (sorted by name); an error names the file that does not parse.
inline absl::StatusOr<std::vector<Dashboard>> LoadDashboards(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir, ec)) {
    if (e.path().extension() == ".json") files.push_back(e.path().string());
  }
  if (ec) return absl::NotFoundError(absl::StrCat(dir, ": ", ec.message()));
  std::sort(files.begin(), files.end());
  std::vector<Dashboard> out;
  for (const std::string& f : files) {
    auto text = ReadFile(f);
    if (!text.ok()) return text.status();
    auto j = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(f, ": not JSON"));
    out.push_back({std::filesystem::path(f).filename().string(), std::move(j)});
  }
  return out;
}

// Panels at the top level and inside (collapsed) rows.
inline std::vector<nlohmann::json> AllPanels(const nlohmann::json& dashboard) {
  std::vector<nlohmann::json> out;
  for (const auto& p : dashboard.value("panels", nlohmann::json::array())) {
    out.push_back(p);
    for (const auto& inner : p.value("panels", nlohmann::json::array())) out.push_back(inner);
  }
  return out;
}

inline std::vector<PanelQuery> Queries(const Dashboard& d) {
  std::vector<PanelQuery> out;
  for (const auto& p : AllPanels(d.json)) {
    for (const auto& t : p.value("targets", nlohmann::json::array())) {
      out.push_back({d.file, p.value("id", 0), p.value("title", ""), t.value("refId", ""),
                     t.value("expr", "")});
    }
  }
  return out;
}

// The names of the dashboard's template variables.
inline std::set<std::string> Variables(const nlohmann::json& dashboard) {
  std::set<std::string> out;
  for (const auto& v : dashboard.value("templating", nlohmann::json::object())
                           .value("list", nlohmann::json::array())) {
    out.insert(v.value("name", ""));
  }
  return out;
}

// The variables an expression uses: $name, ${name} and Grafana's $__interval-style built-ins.
inline std::set<std::string> UsedVariables(const std::string& expr) {
  static const std::regex kVar(R"(\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?)");
  std::set<std::string> out;
  for (std::sregex_iterator it(expr.begin(), expr.end(), kVar), end; it != end; ++it) {
    out.insert((*it)[1].str());
  }
  return out;
}

// Grafana's built-ins a query may use, replaced the way Grafana would for a short time range.
inline const std::map<std::string, std::string>& BuiltinVariables() {
  static const std::map<std::string, std::string> kBuiltins = {
      {"__rate_interval", "1m"}, {"__interval", "15s"}, {"__range", "5m"}};
  return kBuiltins;
}

// `expr` with $name and ${name} replaced from `values` (then the built-ins); a variable
// neither knows is left as is (the caller checks UsedVariables).
inline std::string Substitute(std::string expr, const std::map<std::string, std::string>& values) {
  auto replace_all = [&](const std::string& from, const std::string& to) {
    for (size_t at = expr.find(from); at != std::string::npos; at = expr.find(from, at + to.size()))
      expr.replace(at, from.size(), to);
  };
  std::map<std::string, std::string> all = BuiltinVariables();
  for (const auto& [k, v] : values) all[k] = v;
  // Longest names first, so $namespace is not cut short by a $name variable.
  std::vector<std::pair<std::string, std::string>> order(all.begin(), all.end());
  std::sort(order.begin(), order.end(),
            [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  for (const auto& [k, v] : order) {
    replace_all("${" + k + "}", v);
    replace_all("$" + k, v);
  }
  return expr;
}

}  // namespace weft::e2e
