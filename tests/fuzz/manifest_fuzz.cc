// libFuzzer target for local-mode manifests (what `weftctl apply`/`up` and weftd's local source
// read): text -> ParseManifests (YAML/JSON, multi-document, `kind: List`) -> the model, which
// validates and translates each object -> every node's view, which must always pass
// ztunnel::ConfigSnapshot::FromProto (model.h promises it). Bad input must end in an
// InvalidArgument (parse) or a rejected object (model), never a crash.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "controlplane/local/local_source.h"
#include "controlplane/model/model.h"
#include "ztunnel/state/snapshot.h"

namespace {

constexpr size_t kMaxInput = 64 * 1024;  // manifests are small; bigger inputs only slow fuzzing

void CheckViews(const weft::cp::Model& model) {
  for (const std::string& node : model.Nodes()) {
    auto view = model.NodeView(node);
    auto snap = weft::ztunnel::ConfigSnapshot::FromProto(view);
    if (!snap.ok()) {
      std::fprintf(stderr, "node %s: model view rejected by the data plane: %s\n", node.c_str(),
                   snap.status().ToString().c_str());
      std::abort();
    }
    (void)model.SharedNodeView(node);
    (void)model.IdentitiesOnNode(node);
  }
  (void)model.Rejected();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto objects = weft::cp::ParseManifests(text);
  if (!objects.ok()) {
    WEFT_CHECK(objects.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  // A fresh model per input (its own metrics registry): deterministic, nothing accumulates.
  weft::cp::Model model;
  const std::string source = "local:fuzz.yaml";
  for (const auto& o : *objects) {
    // ParseManifests guarantees a string kind and a metadata mapping.
    WEFT_CHECK(o.is_object() && o["kind"].is_string() && o["metadata"].is_object());
    weft::cp::ObjectEvent ev{weft::cp::ObjectEvent::Type::kUpsert, source,
                             o["kind"].get<std::string>(), o};
    auto st = model.Apply(ev);
    WEFT_CHECK(st.ok() || st.code() == absl::StatusCode::kInvalidArgument);
    (void)weft::cp::ValidateObject("", o);
  }
  CheckViews(model);
  // The file is edited away: every object is deleted again (the local source's delete path).
  for (const auto& o : *objects) {
    weft::cp::ObjectEvent ev{weft::cp::ObjectEvent::Type::kDelete, source,
                             o["kind"].get<std::string>(), o};
    (void)model.Apply(ev);
  }
  CheckViews(model);
  return 0;
}
