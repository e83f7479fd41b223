// What every configuration source (Kubernetes watch, local manifest directory) hands to the
// model: one Kubernetes-shaped object (apiVersion, kind, metadata, spec/status...) as JSON and
// what happened to it. Sources never interpret objects; the model validates and translates.
#pragma once

#include <functional>
#include <string>

#include "nlohmann/json.hpp"

namespace weft::cp {

struct ObjectEvent {
  enum class Type {
    kUpsert,  // added or modified (the object's full new state)
    kDelete,  // removed (object carries at least apiVersion, kind, metadata.name/namespace)
    kSynced,  // the source delivered its complete current state for `kind` (after a list or a
              // relist); objects of that kind and source not upserted since the previous
              // kSynced are gone
  };
  Type type = Type::kUpsert;
  std::string source;  // "kubernetes", "local:<file>" ...: where it came from (for errors)
  std::string kind;    // "Pod", "Service", "AuthorizationPolicy", ...
  nlohmann::json object;
};

using ObjectSink = std::function<void(const ObjectEvent&)>;

}  // namespace weft::cp
