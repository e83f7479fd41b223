#include "config/xds/resources.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>
#include <google/protobuf/reflection.h>

#include <algorithm>
#include <memory>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/status.h"

namespace weft::config::xds {
namespace {

namespace pb = ::weft::config::v1;
using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

// One streamable kind: Resource's oneof field <-> ConfigSnapshot's repeated field.
struct KindInfo {
  int kind;                               // ResourceKey.Kind number == oneof field number
  const FieldDescriptor* resource_field;  // in Resource
  const FieldDescriptor* snapshot_field;  // in ConfigSnapshot
  const FieldDescriptor* uid = nullptr;   // key is uid when the message has one
  const FieldDescriptor* ns = nullptr;
  const FieldDescriptor* name = nullptr;
};

struct Schema {
  std::vector<KindInfo> kinds;
  std::map<int, size_t> by_kind;
  // Pairs of (snapshot field, response field) with the same name and type.
  std::vector<std::pair<const FieldDescriptor*, const FieldDescriptor*>> globals;
  std::vector<const FieldDescriptor*> uncarried;  // snapshot singulars without a response field
};

bool SameType(const FieldDescriptor* a, const FieldDescriptor* b) {
  if (a->type() != b->type() || a->is_repeated() != b->is_repeated()) return false;
  if (a->type() == FieldDescriptor::TYPE_ENUM) return a->enum_type() == b->enum_type();
  if (a->type() == FieldDescriptor::TYPE_MESSAGE) return a->message_type() == b->message_type();
  return true;
}

Schema BuildSchema() {
  Schema s;
  const Descriptor* res = pb::Resource::descriptor();
  const Descriptor* snap = pb::ConfigSnapshot::descriptor();
  const Descriptor* resp = pb::ConfigResponse::descriptor();
  const auto* kind_enum = pb::ResourceKey::Kind_descriptor();
  for (int i = 0; i < res->field_count(); ++i) {
    const FieldDescriptor* f = res->field(i);
    WEFT_CHECK(f->type() == FieldDescriptor::TYPE_MESSAGE && f->containing_oneof() != nullptr);
    WEFT_CHECK(kind_enum->FindValueByNumber(f->number()) != nullptr);
    KindInfo k{f->number(), f, nullptr};
    for (int j = 0; j < snap->field_count(); ++j) {
      const FieldDescriptor* sf = snap->field(j);
      if (sf->is_repeated() && sf->type() == FieldDescriptor::TYPE_MESSAGE &&
          sf->message_type() == f->message_type()) {
        k.snapshot_field = sf;
      }
    }
    WEFT_CHECK(k.snapshot_field != nullptr);  // every streamed kind is part of the snapshot
    const Descriptor* m = f->message_type();
    k.uid = m->FindFieldByName("uid");
    k.ns = m->FindFieldByName("namespace");
    k.name = m->FindFieldByName("name");
    WEFT_CHECK(k.uid != nullptr || (k.ns != nullptr && k.name != nullptr));
    s.by_kind[k.kind] = s.kinds.size();
    s.kinds.push_back(k);
  }
  for (int j = 0; j < snap->field_count(); ++j) {
    const FieldDescriptor* sf = snap->field(j);
    if (sf->is_repeated() || sf->name() == "version") continue;
    const FieldDescriptor* rf = resp->FindFieldByName(sf->name());
    if (rf != nullptr && SameType(sf, rf)) {
      s.globals.emplace_back(sf, rf);
    } else {
      s.uncarried.push_back(sf);
    }
  }
  return s;
}

const Schema& GetSchema() {
  static const Schema* schema = new Schema(BuildSchema());
  return *schema;
}

void CopyField(const Message& from, const FieldDescriptor* ff, Message* to,
               const FieldDescriptor* tf) {
  const Reflection* fr = from.GetReflection();
  const Reflection* tr = to->GetReflection();
  switch (ff->cpp_type()) {
    case FieldDescriptor::CPPTYPE_STRING:
      tr->SetString(to, tf, fr->GetString(from, ff));
      break;
    case FieldDescriptor::CPPTYPE_ENUM:
      tr->SetEnumValue(to, tf, fr->GetEnumValue(from, ff));
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      tr->SetBool(to, tf, fr->GetBool(from, ff));
      break;
    case FieldDescriptor::CPPTYPE_INT32:
      tr->SetInt32(to, tf, fr->GetInt32(from, ff));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      tr->SetInt64(to, tf, fr->GetInt64(from, ff));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      tr->SetUInt32(to, tf, fr->GetUInt32(from, ff));
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      tr->SetUInt64(to, tf, fr->GetUInt64(from, ff));
      break;
    case FieldDescriptor::CPPTYPE_MESSAGE:
      tr->MutableMessage(to, tf)->CopyFrom(fr->GetMessage(from, ff));
      break;
    default:
      WEFT_CHECK(false && "unsupported global field type");
  }
}

std::string KindName(int kind) {
  const auto* v = pb::ResourceKey::Kind_descriptor()->FindValueByNumber(kind);
  return v != nullptr ? v->name() : absl::StrCat("KIND_", kind);
}

absl::StatusOr<Key> KeyOfMessage(const KindInfo& k, const Message& m) {
  const Reflection* r = m.GetReflection();
  if (k.uid != nullptr) {
    std::string uid = r->GetString(m, k.uid);
    if (uid.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(KindName(k.kind), " without a uid: every ",
                                                     k.resource_field->name(),
                                                     " needs a unique uid to be streamed"));
    }
    return Key{k.kind, std::move(uid)};
  }
  std::string ns = r->GetString(m, k.ns), name = r->GetString(m, k.name);
  if (ns.empty() || name.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(KindName(k.kind), " \"", ns, "/", name,
                                                   "\" needs both a namespace and a name"));
  }
  if (k.kind == pb::ResourceKey::HTTP_ROUTE) {
    const auto& route = static_cast<const pb::HttpRoute&>(m);
    if (route.parent_service().find('/') == std::string::npos) {
      return absl::InvalidArgumentError(absl::StrCat(
          "HTTP_ROUTE \"", ns, "/", name, "\" needs a parent_service \"<namespace>/<name>\""));
    }
    return Key{k.kind, HttpRouteKeyName(route)};
  }
  return Key{k.kind, absl::StrCat(ns, "/", name)};
}

}  // namespace

std::string HttpRouteKeyName(const pb::HttpRoute& r) {
  return absl::StrCat(r.kind() == pb::HttpRoute::GRPC_ROUTE ? "GRPCRoute" : "HTTPRoute", "/",
                      r.namespace_(), "/", r.name(), "/", r.parent_service(), "/", r.parent_port());
}

std::string KeyString(const Key& k) {
  return absl::StrCat(KindName(k.kind), "/", k.name);
}

pb::ResourceKey ToProto(const Key& k) {
  pb::ResourceKey out;
  out.set_kind(static_cast<pb::ResourceKey::Kind>(k.kind));
  out.set_name(k.name);
  return out;
}

absl::StatusOr<Key> KeyFromProto(const pb::ResourceKey& k) {
  if (GetSchema().by_kind.count(k.kind()) == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("removed key \"", k.name(), "\" has unknown kind ", k.kind()));
  }
  if (k.name().empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("removed key of kind ", KindName(k.kind()), " has no name"));
  }
  return Key{k.kind(), k.name()};
}

absl::StatusOr<Key> KeyOf(const pb::Resource& r) {
  const Schema& s = GetSchema();
  const auto* oneof = pb::Resource::descriptor()->FindOneofByName("kind");
  const FieldDescriptor* f = r.GetReflection()->GetOneofFieldDescriptor(r, oneof);
  if (f == nullptr) {
    return absl::InvalidArgumentError(
        "resource has no kind set (an unknown kind from a newer weftd?)");
  }
  const KindInfo& k = s.kinds[s.by_kind.at(f->number())];
  return KeyOfMessage(k, r.GetReflection()->GetMessage(r, f));
}

std::string DeterministicBytes(const Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream sos(&out);
    google::protobuf::io::CodedOutputStream cos(&sos);
    cos.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&cos);
  }
  return out;
}

absl::Status ForEachResource(const pb::ConfigSnapshot& snap,
                             const std::function<absl::Status(Key, pb::Resource)>& fn,
                             const std::function<void(const absl::Status&)>& on_bad) {
  const Reflection* sr = snap.GetReflection();
  for (const KindInfo& k : GetSchema().kinds) {
    int n = sr->FieldSize(snap, k.snapshot_field);
    for (int i = 0; i < n; ++i) {
      const Message& m = sr->GetRepeatedMessage(snap, k.snapshot_field, i);
      auto key = KeyOfMessage(k, m);
      if (!key.ok()) {
        absl::Status st(key.status().code(), absl::StrCat(k.snapshot_field->name(), "[", i,
                                                          "]: ", key.status().message()));
        if (on_bad == nullptr) return st;
        on_bad(st);
        continue;
      }
      pb::Resource res;
      res.GetReflection()->MutableMessage(&res, k.resource_field)->CopyFrom(m);
      WEFT_RETURN_IF_ERROR(fn(std::move(*key), std::move(res)));
    }
  }
  return absl::OkStatus();
}

void CopyGlobals(const pb::ConfigSnapshot& from, pb::ConfigResponse* to) {
  for (const auto& [sf, rf] : GetSchema().globals) CopyField(from, sf, to, rf);
}

void CopyGlobals(const pb::ConfigResponse& from, pb::ConfigSnapshot* to) {
  for (const auto& [sf, rf] : GetSchema().globals) CopyField(from, rf, to, sf);
}

std::vector<std::string> UncarriedFields(const pb::ConfigSnapshot& snap) {
  std::vector<std::string> out;
  for (const FieldDescriptor* f : GetSchema().uncarried) {
    if (snap.GetReflection()->HasField(snap, f)) out.push_back(f->name());
  }
  return out;
}

namespace {

// A response's keys, checked before anything changes so that applying cannot fail half-way.
struct CheckedKeys {
  std::vector<Key> upserted;  // parallel to r.upserted()
  std::vector<Key> removed;   // parallel to r.removed()
};

absl::StatusOr<CheckedKeys> CheckKeys(const pb::ConfigResponse& r) {
  if (r.full_snapshot() && r.removed_size() > 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("full snapshot ", r.version(), " lists ", r.removed_size(), " removed keys"));
  }
  CheckedKeys out;
  out.upserted.reserve(r.upserted_size());
  std::set<Key> upserted;
  for (int i = 0; i < r.upserted_size(); ++i) {
    auto key = KeyOf(r.upserted(i));
    if (!key.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("upserted[", i, "]: ", key.status().message()));
    }
    if (!upserted.insert(*key).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("upserted[", i, "]: ", KeyString(*key), " appears twice"));
    }
    out.upserted.push_back(*std::move(key));
  }
  for (int i = 0; i < r.removed_size(); ++i) {
    auto key = KeyFromProto(r.removed(i));
    if (!key.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("removed[", i, "]: ", key.status().message()));
    }
    if (upserted.count(*key) != 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("removed[", i, "]: ", KeyString(*key), " is also upserted"));
    }
    out.removed.push_back(*std::move(key));
  }
  return out;
}

}  // namespace

absl::Status ResourceSet::Apply(const pb::ConfigResponse& r) {
  WEFT_ASSIGN_OR_RETURN(CheckedKeys keys, CheckKeys(r));
  // Keys are valid, so nothing below fails: a delta is applied in place.
  if (r.full_snapshot()) resources_.clear();
  for (int i = 0; i < r.upserted_size(); ++i) resources_[keys.upserted[i]] = r.upserted(i);
  for (const Key& k : keys.removed) resources_.erase(k);
  globals_.Clear();
  for (const auto& [sf, rf] : GetSchema().globals) {
    CopyField(r, rf, &globals_, rf);
  }
  return absl::OkStatus();
}

pb::ConfigSnapshot ResourceSet::ToSnapshot(const std::string& version) const {
  pb::ConfigSnapshot out;
  CopyGlobals(globals_, &out);
  out.set_version(version);
  const Schema& s = GetSchema();
  const Reflection* orf = out.GetReflection();
  for (const auto& [key, res] : resources_) {
    const KindInfo& k = s.kinds[s.by_kind.at(key.kind)];
    orf->AddMessage(&out, k.snapshot_field)
        ->CopyFrom(res.GetReflection()->GetMessage(res, k.resource_field));
  }
  return out;
}

// ---- SnapshotSet

namespace {

// The key name of a message already known to be keyed (uid, "<namespace>/<name>", or an
// HttpRoute's HttpRouteKeyName), as KeyOfMessage computes it.
std::string NameOf(const KindInfo& k, const Message& m) {
  const Reflection* r = m.GetReflection();
  if (k.uid != nullptr) return r->GetString(m, k.uid);
  if (k.kind == pb::ResourceKey::HTTP_ROUTE) {
    return HttpRouteKeyName(static_cast<const pb::HttpRoute&>(m));
  }
  return absl::StrCat(r->GetString(m, k.ns), "/", r->GetString(m, k.name));
}

// One kind's repeated field of a snapshot, edited through reflection (pointer moves only).
class KindField {
 public:
  KindField(pb::ConfigSnapshot* snap, const KindInfo& k)
      : snap_(snap), k_(k), r_(snap->GetReflection()) {}
  int size() const { return r_->FieldSize(*snap_, k_.snapshot_field); }
  std::string NameAt(int i) const {
    return NameOf(k_, r_->GetRepeatedMessage(*snap_, k_.snapshot_field, i));
  }
  // First position whose name is not below `name` (the field is in name order); *found if equal.
  int LowerBound(const std::string& name, bool* found) const {
    int lo = 0, hi = size();
    while (lo < hi) {
      int mid = lo + (hi - lo) / 2;
      if (NameAt(mid) < name) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    *found = lo < size() && NameAt(lo) == name;
    return lo;
  }
  void InsertAt(int pos, Message* m) {
    r_->AddAllocatedMessage(snap_, k_.snapshot_field, m);
    for (int i = size() - 1; i > pos; --i) Swap(i, i - 1);
  }
  std::unique_ptr<Message> RemoveAt(int pos) {
    for (int i = pos; i + 1 < size(); ++i) Swap(i, i + 1);
    return std::unique_ptr<Message>(r_->ReleaseLast(snap_, k_.snapshot_field));
  }
  std::unique_ptr<Message> ReplaceAt(int pos, Message* m) {
    r_->AddAllocatedMessage(snap_, k_.snapshot_field, m);
    Swap(pos, size() - 1);
    return std::unique_ptr<Message>(r_->ReleaseLast(snap_, k_.snapshot_field));
  }
  void Append(Message* m) { r_->AddAllocatedMessage(snap_, k_.snapshot_field, m); }

 private:
  void Swap(int i, int j) { r_->SwapElements(snap_, k_.snapshot_field, i, j); }
  pb::ConfigSnapshot* snap_;
  const KindInfo& k_;
  const Reflection* r_;
};

std::unique_ptr<Message> CopyOfKind(const KindInfo& k, const pb::Resource& r) {
  const Message& m = r.GetReflection()->GetMessage(r, k.resource_field);
  std::unique_ptr<Message> out(m.New());
  out->CopyFrom(m);
  return out;
}

}  // namespace

struct SnapshotSet::Undo {
  std::unique_ptr<pb::ConfigSnapshot> previous;  // a full snapshot replaced this whole one
  // A delta: the previous version and globals (and which globals were present), and one step
  // per changed resource, undone in reverse order.
  std::string version;
  pb::ConfigSnapshot globals;
  std::vector<bool> had_global;
  struct Step {
    size_t kind_index;
    std::string name;
    std::unique_ptr<Message> old;  // null: the resource was inserted
  };
  std::vector<Step> steps;
};

SnapshotSet::SnapshotSet() = default;
SnapshotSet::~SnapshotSet() = default;
SnapshotSet::SnapshotSet(SnapshotSet&&) noexcept = default;
SnapshotSet& SnapshotSet::operator=(SnapshotSet&&) noexcept = default;

bool SnapshotSet::pending() const {
  return undo_ != nullptr;
}

size_t SnapshotSet::size() const {
  size_t n = 0;
  for (const KindInfo& k : GetSchema().kinds) {
    n += snap_.GetReflection()->FieldSize(snap_, k.snapshot_field);
  }
  return n;
}

absl::Status SnapshotSet::Apply(const pb::ConfigResponse& r) {
  WEFT_CHECK(undo_ == nullptr && "SnapshotSet::Apply with a pending Apply");
  WEFT_ASSIGN_OR_RETURN(CheckedKeys keys, CheckKeys(r));
  const Schema& s = GetSchema();
  auto undo = std::make_unique<Undo>();
  if (r.full_snapshot()) {
    std::vector<int> order(r.upserted_size());
    for (int i = 0; i < r.upserted_size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(),
              [&](int a, int b) { return keys.upserted[a] < keys.upserted[b]; });
    pb::ConfigSnapshot next;
    for (int i : order) {
      const KindInfo& k = s.kinds[s.by_kind.at(keys.upserted[i].kind)];
      KindField(&next, k).Append(CopyOfKind(k, r.upserted(i)).release());
    }
    undo->previous = std::make_unique<pb::ConfigSnapshot>(std::move(snap_));
    snap_ = std::move(next);
  } else {
    undo->version = snap_.version();
    for (const auto& [sf, rf] : s.globals) {
      undo->had_global.push_back(snap_.GetReflection()->HasField(snap_, sf));
      CopyField(snap_, sf, &undo->globals, sf);
    }
    for (int i = 0; i < r.upserted_size(); ++i) {
      const Key& key = keys.upserted[i];
      const size_t ki = s.by_kind.at(key.kind);
      KindField f(&snap_, s.kinds[ki]);
      bool found = false;
      int pos = f.LowerBound(key.name, &found);
      Message* fresh = CopyOfKind(s.kinds[ki], r.upserted(i)).release();
      std::unique_ptr<Message> old;
      if (found) {
        old = f.ReplaceAt(pos, fresh);
      } else {
        f.InsertAt(pos, fresh);
      }
      undo->steps.push_back({ki, key.name, std::move(old)});
    }
    for (const Key& key : keys.removed) {
      const size_t ki = s.by_kind.at(key.kind);
      KindField f(&snap_, s.kinds[ki]);
      bool found = false;
      int pos = f.LowerBound(key.name, &found);
      if (!found) continue;  // removing an absent key is fine
      undo->steps.push_back({ki, key.name, f.RemoveAt(pos)});
    }
  }
  // As ResourceSet: every global is taken from the response (an unset one resets).
  for (const auto& [sf, rf] : s.globals) CopyField(r, rf, &snap_, sf);
  snap_.set_version(r.version());
  undo_ = std::move(undo);
  return absl::OkStatus();
}

void SnapshotSet::Commit() {
  undo_.reset();
}

void SnapshotSet::Revert() {
  if (undo_ == nullptr) return;
  std::unique_ptr<Undo> undo = std::move(undo_);
  if (undo->previous != nullptr) {
    snap_ = std::move(*undo->previous);
    return;
  }
  const Schema& s = GetSchema();
  for (auto it = undo->steps.rbegin(); it != undo->steps.rend(); ++it) {
    KindField f(&snap_, s.kinds[it->kind_index]);
    bool found = false;
    int pos = f.LowerBound(it->name, &found);
    if (it->old == nullptr) {
      WEFT_CHECK(found);
      f.RemoveAt(pos);  // drop what Apply inserted
    } else if (found) {
      f.ReplaceAt(pos, it->old.release());  // what Apply replaced; the new one is dropped
    } else {
      f.InsertAt(pos, it->old.release());  // what Apply removed
    }
  }
  for (size_t i = 0; i < s.globals.size(); ++i) {
    const FieldDescriptor* sf = s.globals[i].first;
    if (undo->had_global[i]) {
      CopyField(undo->globals, sf, &snap_, sf);
    } else {
      snap_.GetReflection()->ClearField(&snap_, sf);
    }
  }
  snap_.set_version(undo->version);
}

pb::ConfigSnapshot Canonicalize(const pb::ConfigSnapshot& snap, const std::string& version) {
  pb::ConfigResponse full;
  full.set_full_snapshot(true);
  CopyGlobals(snap, &full);
  std::set<Key> seen;
  (void)ForEachResource(
      snap,
      [&](Key k, pb::Resource r) {
        if (seen.insert(std::move(k)).second) *full.add_upserted() = std::move(r);
        return absl::OkStatus();
      },
      [](const absl::Status&) {});
  ResourceSet set;
  WEFT_CHECK(set.Apply(full).ok());
  return set.ToSnapshot(version);
}

}  // namespace weft::config::xds
