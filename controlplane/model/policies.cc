#include "controlplane/model/policies.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status.h"
#include "config/model/convert.h"

namespace weft::cp::internal {
namespace {

namespace pb = ::weft::config::v1;
using nlohmann::json;

std::string Join(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(Av(path), ".", Av(key));
}

std::string At(std::string_view path, size_t i) {
  return absl::StrCat(Av(path), "[", i, "]");
}

std::string Problem(std::string_view path, std::string_view what) {
  return absl::StrCat(Av(path), ": ", Av(what));
}

std::string Kind(const json& j) {
  switch (j.type()) {
    case json::value_t::string:
      return absl::StrCat("the string ", j.dump());
    case json::value_t::array:
      return "a list";
    case json::value_t::object:
      return "a mapping";
    case json::value_t::null:
      return "null";
    default:
      return absl::StrCat("the value ", j.dump());
  }
}

// nullptr when absent or null.
const json* Get(const json& parent, std::string_view key) {
  if (!parent.is_object()) return nullptr;
  auto it = parent.find(key);
  return it == parent.end() || it->is_null() ? nullptr : &*it;
}

// Unknown keys anywhere in `j` as message `d` (recursing into singular message fields): the
// first one found, as a problem text; empty when there is none.
std::string UnknownField(const json& j, const google::protobuf::Descriptor* d,
                         const std::string& path) {
  if (!j.is_object()) return "";
  for (const auto& [k, v] : j.items()) {
    const google::protobuf::FieldDescriptor* f = d->FindFieldByName(k);
    for (int i = 0; f == nullptr && i < d->field_count(); ++i) {
      if (d->field(i)->json_name() == k) f = d->field(i);
    }
    if (f == nullptr) {
      std::vector<std::string> names;
      for (int i = 0; i < d->field_count(); ++i) names.push_back(d->field(i)->json_name());
      return Problem(Join(path, k), absl::StrCat("unknown field, not evaluated (weft reads ",
                                                 absl::StrJoin(names, ", "), ")"));
    }
    if (f->type() == google::protobuf::FieldDescriptor::TYPE_MESSAGE && !f->is_repeated()) {
      std::string inner = UnknownField(v, f->message_type(), Join(path, k));
      if (!inner.empty()) return inner;
    }
  }
  return "";
}

// `j` into `msg` (strict: unknown fields and wrong types fail); the problem text, or empty.
std::string ToProto(const json& j, const std::string& path, google::protobuf::Message* msg) {
  if (!j.is_object()) return Problem(path, absl::StrCat("expected a mapping, got ", Kind(j)));
  if (std::string unknown = UnknownField(j, msg->GetDescriptor(), path); !unknown.empty()) {
    return unknown;
  }
  google::protobuf::util::JsonParseOptions opts;
  opts.ignore_unknown_fields = false;
  auto st = google::protobuf::util::JsonStringToMessage(j.dump(), msg, opts);
  return st.ok() ? "" : Problem(path, std::string(st.message()));
}

// The message of a conversion error from config/model (already "<path>: <reason>").
std::string Message(const absl::Status& st) {
  return st.ok() ? "" : std::string(st.message());
}

// One AuthorizationPolicy being read part by part.
struct ApRead {
  pb::AuthorizationPolicy ap;
  std::vector<std::string> problems;
  bool deny_like = false;      // DENY, AUDIT, CUSTOM: unusable parts are left out of rules
  bool unreadable = false;     // action or spec unknown: DENY everything in scope
  bool custom = false;         // CUSTOM, enforced as DENY
  bool scope_widened = false;  // selector or a top-level field unusable
  bool dry_run_forced = false;
  int rules_asked = 0;
  int rules_dropped = 0;   // ALLOW
  int parts_left_out = 0;  // DENY/AUDIT
};

// Istio's WorkloadSelector rules (validateWorkloadSelector): no empty label key and no '*' in a
// key or value (a selector matches labels exactly). Empty when `labels` (a mapping of strings)
// keeps them.
std::string LabelsProblem(const json& labels, const std::string& path) {
  for (const auto& [k, v] : labels.items()) {
    if (k.empty()) return Problem(path, "an empty label key is not allowed");
    if (k.find('*') != std::string::npos || v.get<std::string>().find('*') != std::string::npos) {
      return Problem(path, absl::StrCat("wildcard is not supported in a selector (\"", k, "=",
                                        v.get<std::string>(), "\"); labels match exactly"));
    }
  }
  return "";
}

// The policy's selector: as written; else its matchLabels alone (a superset of what it
// selects); else none (namespace-wide). Returns false when the scope was widened.
bool ReadSelector(const json& spec, pb::WorkloadSelector* out, bool* has,
                  std::vector<std::string>& problems) {
  const json* sel = Get(spec, "selector");
  *has = false;
  if (sel == nullptr) return true;
  std::string p = ToProto(*sel, "spec.selector", out);
  // Protobuf reads a null label value as "": a selector narrower than what was written.
  const json* labels = Get(*sel, "matchLabels");
  const bool all_strings =
      labels != nullptr && labels->is_object() &&
      std::all_of(labels->begin(), labels->end(), [](const json& v) { return v.is_string(); });
  if (p.empty() && labels != nullptr && labels->is_object() && !all_strings) {
    for (const auto& [k, v] : labels->items()) {
      if (!v.is_string()) {
        p = Problem(absl::StrCat("spec.selector.matchLabels[", k, "]"),
                    absl::StrCat("expected a string, got ", Kind(v)));
        break;
      }
    }
  }
  const std::string labels_problem =
      all_strings ? LabelsProblem(*labels, "spec.selector.matchLabels") : "";
  if (p.empty()) p = labels_problem;
  if (p.empty()) {
    *has = true;
    return true;
  }
  problems.push_back(p);
  out->Clear();
  if (all_strings && labels_problem.empty() && !labels->empty()) {
    json only = {{"matchLabels", *labels}};
    if (ToProto(only, "spec.selector", out).empty()) {
      *has = true;
      return false;
    }
    out->Clear();
  }
  return false;
}

// The spec's fields besides selector, action and rules. Each one Weft does not read widens the
// scope (it may have narrowed what the policy applies to, as targetRefs does).
void ReadTopLevelFields(const json& spec, ApRead& r) {
  for (const auto& [k, v] : spec.items()) {
    if (k == "selector" || k == "action" || k == "rules") continue;
    const std::string path = Join("spec", k);
    const json* action = Get(spec, "action");
    if (k == "provider" && action != nullptr && *action == "CUSTOM") {
      // Istio: a CUSTOM policy names its external authorizer. Weft has none (see ReadAction),
      // but the field is well-formed or not as in Istio.
      const json* name = Get(v, "name");
      if (name == nullptr || !name->is_string() || name->get<std::string>().empty() ||
          v.size() != 1) {
        r.problems.push_back(Problem(path, "want {name: <extension provider>} with a name"));
      }
      continue;
    }
    if (k == "provider") {
      r.problems.push_back(Problem(path, "is valid only with action CUSTOM (Istio rejects it)"));
    } else if (k == "targetRef" || k == "targetRefs") {
      r.problems.push_back(Problem(path,
                                   "attaches the policy to a gateway, waypoint or Service, which "
                                   "Weft does not have; Weft applies policies by selector only"));
    } else {
      r.problems.push_back(
          Problem(path, "unknown field, not evaluated (weft reads selector, action, rules)"));
    }
    r.scope_widened = true;
  }
}

void ReadAction(const json& spec, ApRead& r) {
  const json* a = Get(spec, "action");
  if (a == nullptr || *a == "ALLOW") {
    r.ap.set_action(pb::AuthorizationPolicy::ALLOW);
  } else if (*a == "DENY" || *a == "AUDIT") {
    r.ap.set_action(*a == "DENY" ? pb::AuthorizationPolicy::DENY : pb::AuthorizationPolicy::AUDIT);
    r.deny_like = true;
  } else if (*a == "CUSTOM") {
    r.problems.push_back(
        Problem("spec.action", "CUSTOM action is not supported (no external authorizer to ask)"));
    r.ap.set_action(pb::AuthorizationPolicy::DENY);
    r.deny_like = r.custom = true;
  } else {
    r.problems.push_back(Problem(
        "spec.action",
        a->is_string() ? absl::StrCat("unknown action ", a->dump(), " (want ALLOW, DENY or AUDIT)")
                       : absl::StrCat("expected a string, got ", Kind(*a))));
    r.unreadable = true;
  }
}

// The values Istio's dry-run check accepts (Go's strconv.ParseBool).
std::optional<bool> ParseBool(const json& v) {
  if (!v.is_string()) return std::nullopt;
  for (const char* t : {"1", "t", "T", "TRUE", "true", "True"}) {
    if (v == t) return true;
  }
  for (const char* f : {"0", "f", "F", "FALSE", "false", "False"}) {
    if (v == f) return false;
  }
  return std::nullopt;
}

void ReadDryRun(const json& object, ApRead& r) {
  const json* meta = Get(object, "metadata");
  const json* annotations = meta != nullptr ? Get(*meta, "annotations") : nullptr;
  if (annotations == nullptr) return;
  for (const char* key : {"weft.dev/dry-run", "istio.io/dry-run"}) {
    const json* v = Get(*annotations, key);
    if (v == nullptr) continue;
    const std::string path = absl::StrCat("metadata.annotations[", key, "]");
    const std::optional<bool> dry_run = ParseBool(*v);
    if (!dry_run) {
      r.problems.push_back(Problem(
          path, v->is_string()
                    ? absl::StrCat(v->dump(), " is not true or false")
                    : absl::StrCat("expected the string \"true\" or \"false\", got ", Kind(*v))));
      r.dry_run_forced = true;
    } else if (r.custom || r.ap.action() == pb::AuthorizationPolicy::AUDIT) {
      // As Istio: AUDIT only reports anyway, and CUSTOM has no dry run.
      r.problems.push_back(Problem(path, "a dry run is supported only with action ALLOW or DENY"));
      r.dry_run_forced = true;
    } else if (*dry_run) {
      r.ap.set_dry_run(true);
    }
  }
  // An unusable dry-run annotation: enforced, whatever the other one says.
  if (r.dry_run_forced) r.ap.set_dry_run(false);
}

// Istio's service accounts (`serviceAccounts`, `notServiceAccounts`, the `source.serviceAccount`
// key): "<namespace>/<name>", or "<name>" in the policy's namespace (Istio's CheckServiceAccount
// rules). Weft evaluates each as the principal it names, "*/ns/<namespace>/sa/<name>": a suffix
// match on the peer's SPIFFE identity, whose trust domain ztunnel has already checked. Returns
// the problem, or empty with `principals` set.
std::string ServiceAccountsToPrincipals(const json& values, const std::string& path,
                                        std::string_view ns, json* principals) {
  if (!values.is_array()) return Problem(path, absl::StrCat("expected a list, got ", Kind(values)));
  if (values.size() > 16) return Problem(path, "may not have more than 16 values (as in Istio)");
  *principals = json::array();
  for (size_t i = 0; i < values.size(); ++i) {
    const std::string vp = At(path, i);
    if (!values[i].is_string()) {
      return Problem(vp, absl::StrCat("expected a string, got ", Kind(values[i])));
    }
    const std::string v = values[i].get<std::string>();
    if (v.empty()) return Problem(vp, "empty value is not allowed");
    if (v.find('*') != std::string::npos) {
      return Problem(vp, absl::StrCat(json(v).dump(), ": a wildcard is not allowed here"));
    }
    if (v.size() > 320) return Problem(vp, "a service account is at most 320 characters");
    const size_t slash = v.find('/');
    const bool has_ns = slash != std::string::npos;
    if ((has_ns && (slash == 0 || slash + 1 == v.size() || v.find('/', slash + 1) != v.npos))) {
      return Problem(vp, absl::StrCat(json(v).dump(),
                                      " (want \"<namespace>/<service account>\" or \"<service "
                                      "account>\" for the policy's namespace)"));
    }
    principals->push_back(absl::StrCat("*/ns/", has_ns ? v.substr(0, slash) : std::string(ns),
                                       "/sa/", has_ns ? v.substr(slash + 1) : v));
  }
  return "";
}

bool NonEmptyList(const json& source, const char* key) {
  const json* v = Get(source, key);
  return v != nullptr && (!v->is_array() || !v->empty());
}

// A `from` entry's serviceAccounts and notServiceAccounts, rewritten in place as the principals
// and notPrincipals they name. The problem, or empty.
std::string TranslateServiceAccounts(json& entry, const std::string& path, std::string_view ns) {
  json* source = entry.is_object() && entry.contains("source") ? &entry["source"] : nullptr;
  if (source == nullptr || !source->is_object()) return "";
  if (!source->contains("serviceAccounts") && !source->contains("notServiceAccounts")) return "";
  const std::string sp = Join(path, "source");
  const bool sa =
      NonEmptyList(*source, "serviceAccounts") || NonEmptyList(*source, "notServiceAccounts");
  for (const char* other : {"principals", "notPrincipals", "namespaces", "notNamespaces"}) {
    if (sa && NonEmptyList(*source, other)) {
      return Problem(sp, absl::StrCat("serviceAccounts cannot be set with ", other,
                                      " (Istio rejects it; use one or the other)"));
    }
  }
  for (const auto& [from, to] : {std::pair{"serviceAccounts", "principals"},
                                 std::pair{"notServiceAccounts", "notPrincipals"}}) {
    const json* values = Get(*source, from);
    if (values != nullptr) {
      json principals;
      std::string p = ServiceAccountsToPrincipals(*values, Join(sp, from), ns, &principals);
      if (!p.empty()) return p;
      if (!principals.empty()) (*source)[to] = std::move(principals);
    }
    source->erase(from);
  }
  return "";
}

// Istio's map keys ("request.headers[X-Name]"): a name between brackets at the end.
bool MapKeyOk(const std::string& key) {
  const size_t open = key.find('[');
  return key.ends_with("]") && open != std::string::npos && open > 0 && open + 2 < key.size();
}

// Istio's checks of a `when` condition that Weft's data-plane conversion does not make (empty
// values, key formats, attributes Istio does not know), and the source.serviceAccount key
// rewritten in place as the source.principal it names. The problem, or empty.
std::string CheckCondition(json& c, const std::string& path, std::string_view ns) {
  if (!c.is_object()) return "";
  for (const char* field : {"values", "notValues"}) {
    const json* values = Get(c, field);
    for (size_t i = 0; values != nullptr && values->is_array() && i < values->size(); ++i) {
      if ((*values)[i] == "") {
        return Problem(At(Join(path, field), i), "empty value is not allowed");
      }
    }
  }
  const json* k = Get(c, "key");
  if (k == nullptr || !k->is_string()) return "";
  const std::string key = k->get<std::string>();
  const std::string kp = Join(path, "key");
  for (const char* map : {"request.headers", "request.experimental.inline.headers",
                          "request.auth.claims", "experimental.envoy.filters."}) {
    if (key.starts_with(map)) {
      return MapKeyOk(key)
                 ? ""
                 : Problem(kp, absl::StrCat("bad key ", k->dump(), " (want the form a[b])"));
    }
  }
  if (key == "destination.namespace" || key.starts_with("destination.labels")) {
    return Problem(kp, absl::StrCat("attribute ", key, " is replaced by ",
                                    key == "destination.namespace" ? "metadata.namespace"
                                                                   : "the workload selector"));
  }
  if (key.starts_with("request.") && key != "request.auth.principal" &&
      key != "request.auth.audiences" && key != "request.auth.presenter") {
    return Problem(kp, absl::StrCat("unknown attribute ", k->dump()));
  }
  if (key != "source.serviceAccount") return "";
  for (const char* field : {"values", "notValues"}) {
    const json* values = Get(c, field);
    if (values == nullptr) continue;
    json principals;
    std::string p = ServiceAccountsToPrincipals(*values, Join(path, field), ns, &principals);
    if (!p.empty()) return p;
    c[field] = std::move(principals);
  }
  c["key"] = "source.principal";
  return "";
}

// The `from` (or `to`) entries of one rule. False when one is unusable.
template <typename Entry>
bool ReadEntries(const json& list, const std::string& path, const char* inner, std::string_view ns,
                 google::protobuf::RepeatedPtrField<Entry>* out,
                 std::vector<std::string>& problems) {
  if (!list.is_array()) {
    problems.push_back(Problem(path, absl::StrCat("expected a list, got ", Kind(list))));
    return false;
  }
  if (list.empty()) {
    // Istio rejects it; read as written it would match any source (operation).
    problems.push_back(
        Problem(path, absl::StrCat("must not be empty (leave `", path.substr(path.rfind('.') + 1),
                                   "` out to match any ", inner, ")")));
    return false;
  }
  bool ok = true;
  for (size_t j = 0; j < list.size(); ++j) {
    const std::string ep = At(path, j);
    Entry e;
    json entry = list[j];
    std::string p;
    if constexpr (std::is_same_v<Entry, pb::Rule::From>)
      p = TranslateServiceAccounts(entry, ep, ns);
    if (p.empty()) p = ToProto(entry, ep, &e);
    if (p.empty()) {
      const std::string ip = Join(ep, inner);
      if constexpr (std::is_same_v<Entry, pb::Rule::From>) {
        p = e.has_source() ? Message(config::AuthzSourceFromProto(e.source(), ip).status())
                           : Problem(ip, "is required in every `from` entry");
      } else {
        p = e.has_operation() ? Message(config::AuthzOperationFromProto(e.operation(), ip).status())
                              : Problem(ip, "is required in every `to` entry");
      }
    }
    if (!p.empty()) {
      problems.push_back(p);
      ok = false;
      continue;
    }
    *out->Add() = std::move(e);
  }
  return ok;
}

// One rule: nullopt drops it (ALLOW); for DENY/AUDIT its unusable parts are left out.
std::optional<pb::Rule> ReadRule(const json& rule, const std::string& rp, ApRead& r) {
  pb::Rule out;
  const size_t before = r.problems.size();
  if (!rule.is_object()) {
    r.problems.push_back(Problem(rp, absl::StrCat("expected a mapping, got ", Kind(rule))));
  } else {
    for (const auto& [k, v] : rule.items()) {
      if (k != "from" && k != "to" && k != "when") {
        r.problems.push_back(
            Problem(Join(rp, k), "unknown field, not evaluated (weft reads from, to, when)"));
      }
    }
    if (const json* from = Get(rule, "from"); from != nullptr) {
      if (!ReadEntries(*from, Join(rp, "from"), "source", r.ap.namespace_(), out.mutable_from(),
                       r.problems)) {
        out.clear_from();  // one entry matching any source: the list does too
      }
    }
    if (const json* to = Get(rule, "to"); to != nullptr) {
      if (!ReadEntries(*to, Join(rp, "to"), "operation", r.ap.namespace_(), out.mutable_to(),
                       r.problems)) {
        out.clear_to();
      }
    }
    if (const json* when = Get(rule, "when"); when != nullptr) {
      const std::string wp = Join(rp, "when");
      if (!when->is_array()) {
        r.problems.push_back(Problem(wp, absl::StrCat("expected a list, got ", Kind(*when))));
      }
      for (size_t j = 0; when->is_array() && j < when->size(); ++j) {
        pb::Condition c;
        json condition = (*when)[j];
        std::string p = CheckCondition(condition, At(wp, j), r.ap.namespace_());
        if (p.empty()) p = ToProto(condition, At(wp, j), &c);
        if (p.empty()) p = Message(config::AuthzConditionFromProto(c, At(wp, j)).status());
        if (p.empty()) {
          *out.add_when() = std::move(c);
        } else {
          r.problems.push_back(p);  // the condition is left out: for DENY it holds
        }
      }
    }
  }
  if (r.problems.size() == before) return out;
  if (!r.deny_like) {
    ++r.rules_dropped;
    return std::nullopt;
  }
  r.parts_left_out += static_cast<int>(r.problems.size() - before);
  return out;
}

// What Istio does not allow in a CUSTOM policy's rules (its external authorizer is asked before
// peer identities are evaluated).
void CustomRuleProblems(const json& rules, ApRead& r) {
  for (size_t i = 0; rules.is_array() && i < rules.size(); ++i) {
    const std::string rp = At("spec.rules", i);
    const json* from = Get(rules[i], "from");
    for (size_t j = 0; from != nullptr && from->is_array() && j < from->size(); ++j) {
      const json* src = Get((*from)[j], "source");
      for (const char* f :
           {"principals", "notPrincipals", "namespaces", "notNamespaces", "serviceAccounts",
            "notServiceAccounts", "requestPrincipals", "notRequestPrincipals"}) {
        if (src != nullptr && NonEmptyList(*src, f)) {
          r.problems.push_back(Problem(Join(Join(At(Join(rp, "from"), j), "source"), f),
                                       "is not supported with action CUSTOM (as in Istio)"));
        }
      }
    }
    const json* when = Get(rules[i], "when");
    for (size_t j = 0; when != nullptr && when->is_array() && j < when->size(); ++j) {
      const json* key = Get((*when)[j], "key");
      if (key == nullptr || !key->is_string()) continue;
      const std::string k = key->get<std::string>();
      if (k == "source.namespace" || k == "source.principal" || k == "source.serviceAccount" ||
          k.starts_with("request.auth.")) {
        r.problems.push_back(Problem(Join(At(Join(rp, "when"), j), "key"),
                                     absl::StrCat(k, " is not supported with action CUSTOM")));
      }
    }
  }
}

void ReadRules(const json& spec, ApRead& r) {
  const json* rules = Get(spec, "rules");
  if (r.ap.action() == pb::AuthorizationPolicy::DENY &&
      (rules == nullptr || (rules->is_array() && rules->empty()))) {
    // As written it denies nothing, which Istio refuses as meaningless; something was meant, so
    // it fails closed like any DENY weftd cannot read.
    r.problems.push_back(Problem(
        "spec.rules", absl::StrCat(r.custom ? "a CUSTOM" : "a DENY",
                                   " policy without rules matches nothing (Istio rejects it); add "
                                   "an empty rule {} to match every request")));
    r.unreadable = true;
    return;
  }
  if (rules == nullptr) return;
  if (r.custom) CustomRuleProblems(*rules, r);
  if (!rules->is_array()) {
    r.problems.push_back(
        Problem("spec.rules", absl::StrCat("expected a list, got ", Kind(*rules))));
    // No rule can be read: ALLOW keeps none; DENY/AUDIT match everything.
    if (r.deny_like) r.ap.add_rules();
    ++r.rules_asked;
    (r.deny_like ? r.parts_left_out : r.rules_dropped) += 1;
    return;
  }
  for (size_t i = 0; i < rules->size(); ++i) {
    ++r.rules_asked;
    std::optional<pb::Rule> rule = ReadRule((*rules)[i], At("spec.rules", i), r);
    if (rule) *r.ap.add_rules() = std::move(*rule);
  }
}

std::string ScopeText(const pb::AuthorizationPolicy& ap, bool has_selector) {
  if (!has_selector) {
    return absl::StrCat("every workload in namespace ", ap.namespace_(),
                        " (in the whole mesh if that is the root namespace)");
  }
  std::vector<std::string> labels;
  for (const auto& [k, v] : ap.selector().match_labels()) labels.push_back(k + "=" + v);
  std::sort(labels.begin(), labels.end());
  return absl::StrCat("the workloads labelled ", absl::StrJoin(labels, ","), " in namespace ",
                      ap.namespace_());
}

FailClosed Summarize(const ApRead& r) {
  FailClosed fc;
  fc.reason = absl::StrJoin(r.problems, "; ");
  const std::string scope = ScopeText(r.ap, r.ap.has_selector());
  const std::string widened =
      r.scope_widened ? " (its scope could not be read in full, so it covers " + scope + ")" : "";
  if (r.unreadable) {
    fc.label = "deny_all";
    fc.effect = absl::StrCat("fail-closed: enforced as a DENY of every connection to ", scope);
  } else if (r.custom) {
    fc.label = "custom_as_deny";
    fc.effect = absl::StrCat(
        "fail-closed: enforced as a DENY of what its rules select",
        r.parts_left_out ? " (unusable parts left out, so they match more)" : "", widened);
  } else if (!r.deny_like && r.ap.rules_size() == 0 && (r.rules_asked > 0 || r.scope_widened)) {
    fc.label = "allow_nothing";
    fc.effect = absl::StrCat("fail-closed: enforced as an ALLOW with no usable rule: it allows ",
                             "nothing to ", scope, " (other ALLOW policies still apply)");
  } else if (!r.deny_like && r.rules_dropped > 0) {
    fc.label = "allow_rules_dropped";
    fc.effect = absl::StrCat("fail-closed: enforced as an ALLOW with ", r.ap.rules_size(), " of ",
                             r.rules_asked, " rules (", r.rules_dropped,
                             r.rules_dropped == 1 ? " unusable rule dropped: it allows nothing)"
                                                  : " unusable rules dropped: they allow nothing)");
  } else if (r.deny_like && (r.parts_left_out > 0 || r.scope_widened)) {
    const bool audit = r.ap.action() == pb::AuthorizationPolicy::AUDIT;
    fc.label = audit ? "audit_widened" : "deny_widened";
    fc.effect =
        absl::StrCat("fail-closed: enforced as ", audit ? "an AUDIT" : "a DENY",
                     " without the parts weftd cannot evaluate, so its rules match more", widened);
  } else {
    fc.label = "dry_run_enforced";
    fc.effect = "fail-closed: enforced (not a dry run)";
  }
  if (r.dry_run_forced && fc.label != "dry_run_enforced") {
    fc.effect += "; enforced, not a dry run";
  }
  return fc;
}

// PeerAuthentication modes are checked before protobuf's parser, whose message does not list the
// valid ones.
std::string ModeProblem(const json& spec) {
  auto check = [](const json* m, const std::string& path) -> std::string {
    const json* mode = m != nullptr ? Get(*m, "mode") : nullptr;
    if (mode == nullptr || !mode->is_string()) return "";
    for (const char* ok : {"UNSET", "DISABLE", "PERMISSIVE", "STRICT"}) {
      if (*mode == ok) return "";
    }
    return Problem(path, absl::StrCat("unknown mode ", mode->dump(),
                                      " (want UNSET, DISABLE, PERMISSIVE or STRICT)"));
  };
  std::string p = check(Get(spec, "mtls"), "spec.mtls.mode");
  if (const json* ports = Get(spec, "portLevelMtls"); p.empty() && ports && ports->is_object()) {
    for (const auto& [port, m] : ports->items()) {
      p = check(&m, absl::StrCat("spec.portLevelMtls[", port, "].mode"));
      if (!p.empty()) break;
    }
  }
  return p;
}

// Istio's rules for a PeerAuthentication that protobuf's parser and the data plane's conversion
// do not check: selector labels, and portLevelMtls present but empty.
std::string PeerSpecProblem(const json& spec) {
  const json* sel = Get(spec, "selector");
  const json* labels = sel != nullptr ? Get(*sel, "matchLabels") : nullptr;
  if (labels != nullptr && labels->is_object() &&
      std::all_of(labels->begin(), labels->end(), [](const json& v) { return v.is_string(); })) {
    std::string p = LabelsProblem(*labels, "spec.selector.matchLabels");
    if (!p.empty()) return p;
  }
  const json* ports = Get(spec, "portLevelMtls");
  if (ports != nullptr && ports->is_object() && ports->empty()) {
    return Problem("spec.portLevelMtls",
                   "must list at least one port when set (Istio rejects "
                   "an empty map)");
  }
  return "";
}

}  // namespace

PolicyParse<pb::AuthorizationPolicy> ParseAuthorizationPolicy(const ObjectId& id, const json& o,
                                                              std::string_view version_problem) {
  const bool api_version_ok = version_problem.empty();
  ApRead r;
  r.ap.set_name(id.name);
  r.ap.set_namespace_(id.ns);
  const json empty = json::object();
  const json* spec = Get(o, "spec");
  if (!api_version_ok) {
    r.problems.push_back(Problem("apiVersion", version_problem));
    r.unreadable = true;
  } else if (spec != nullptr && !spec->is_object()) {
    r.problems.push_back(Problem("spec", absl::StrCat("expected a mapping, got ", Kind(*spec))));
    r.unreadable = true;
  }
  const json& s = spec != nullptr && spec->is_object() && api_version_ok ? *spec : empty;
  ReadTopLevelFields(s, r);
  bool has_selector = false;
  if (!ReadSelector(s, r.ap.mutable_selector(), &has_selector, r.problems)) r.scope_widened = true;
  if (!has_selector) r.ap.clear_selector();
  if (!r.unreadable) ReadAction(s, r);
  ReadDryRun(o, r);
  if (!r.unreadable) ReadRules(s, r);
  // An ALLOW adds to what other ALLOW policies allow: applied to more workloads than it asked
  // for, its rules would open those workloads further. So it keeps none.
  if (!r.deny_like && r.scope_widened) r.ap.clear_rules();
  if (r.unreadable) {
    r.ap.set_action(pb::AuthorizationPolicy::DENY);
    r.ap.clear_rules();
    r.ap.add_rules();  // no from/to/when: matches every connection
  }
  if (r.problems.empty()) return {std::move(r.ap), std::nullopt};
  // The result must convert; it is built only from parts that did, so this is a safety net.
  if (!config::AuthorizationPolicyFromProto(r.ap).ok()) {
    r.unreadable = true;
    r.ap.clear_rules();
    r.ap.add_rules();
    r.ap.set_action(pb::AuthorizationPolicy::DENY);
  }
  FailClosed fc = Summarize(r);
  return {std::move(r.ap), std::move(fc)};
}

PolicyParse<pb::PeerAuthentication> ParsePeerAuthentication(const ObjectId& id, const json& o,
                                                            std::string_view version_problem) {
  const bool api_version_ok = version_problem.empty();
  pb::PeerAuthentication pa;
  std::string problem;
  const json* spec = Get(o, "spec");
  if (!api_version_ok) {
    problem = Problem("apiVersion", version_problem);
  } else if (spec != nullptr) {
    problem = ModeProblem(*spec);
    if (problem.empty()) problem = PeerSpecProblem(*spec);
    if (problem.empty()) problem = ToProto(*spec, "spec", &pa);
    for (const char* reserved : {"name", "namespace"}) {
      if (problem.empty() && spec->contains(reserved)) {
        problem = Problem(Join("spec", reserved), "unknown field (set metadata instead)");
      }
    }
  }
  pa.set_name(id.name);
  pa.set_namespace_(id.ns);
  if (problem.empty()) {
    auto st = config::PeerAuthenticationFromProto(pa);
    if (st.ok()) return {std::move(pa), std::nullopt};
    std::optional<config::ConfigError> e = config::GetConfigError(st.status());
    problem = e ? Problem(Join("spec", e->path), e->reason) : Message(st.status());
  }
  // Whatever it asked for, it is enforced as STRICT on every port for its scope.
  std::vector<std::string> problems = {problem};
  pb::PeerAuthentication strict;
  strict.set_name(id.name);
  strict.set_namespace_(id.ns);
  bool has_selector = false;
  const json& s = api_version_ok && spec != nullptr && spec->is_object() ? *spec : json::object();
  std::vector<std::string> selector_problems;
  ReadSelector(s, strict.mutable_selector(), &has_selector, selector_problems);
  if (!has_selector) strict.clear_selector();
  for (std::string& p : selector_problems) {
    if (p != problem) problems.push_back(std::move(p));
  }
  strict.mutable_mtls()->set_mode(pb::PeerAuthentication::STRICT);
  FailClosed fc;
  fc.reason = absl::StrJoin(problems, "; ");
  fc.label = "strict";
  fc.effect = absl::StrCat("fail-closed: enforced as STRICT mTLS on every port for ",
                           has_selector ? "the workloads it selects"
                                        : absl::StrCat("every workload in namespace ", id.ns,
                                                       " (in the whole mesh if that is the root "
                                                       "namespace)"));
  return {std::move(strict), std::move(fc)};
}

}  // namespace weft::cp::internal
