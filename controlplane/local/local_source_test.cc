#include "controlplane/local/local_source.h"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace weft::cp {
namespace {

using nlohmann::json;

TEST(ParseManifestsTest, MultiDocumentListsAndTyping) {
  auto objs = ParseManifests(R"(---
apiVersion: v1
kind: Service
metadata: {name: a, labels: {version: "1"}}
spec: {ports: [{port: 80, name: "80"}], enabled: true, none: ~}
---
---
apiVersion: v1
kind: List
items:
- {apiVersion: v1, kind: Namespace, metadata: {name: prod}}
- {apiVersion: v1, kind: Namespace, metadata: {name: dev}}
)");
  ASSERT_TRUE(objs.ok()) << objs.status();
  ASSERT_EQ(objs->size(), 3u);
  const json& svc = (*objs)[0];
  EXPECT_EQ(svc["spec"]["ports"][0]["port"], json(80));
  EXPECT_EQ(svc["spec"]["ports"][0]["name"], json("80")) << "quoted stays a string";
  EXPECT_EQ(svc["metadata"]["labels"]["version"], json("1"));
  EXPECT_EQ(svc["spec"]["enabled"], json(true));
  EXPECT_TRUE(svc["spec"]["none"].is_null());
  EXPECT_EQ((*objs)[2]["metadata"]["name"], json("dev"));
}

TEST(ParseManifestsTest, PlainScalarsAreTypedByTheCoreSchema) {
  auto doc = YamlToJson(R"(
ints: [0, 80, -7, +3, 007]
floats: [1.5, .5, -.5, 2., 1e3, 1.5E-2, +2.5e+1]
strings: [1.2.3, 0x10, 1_000, "80", '1.5', -, +, ., e3, 1e, 1e+, 10.0.0.1, 80/TCP, .inf, v1]
other: [true, False, NULL, ~, null]
)");
  ASSERT_TRUE(doc.ok()) << doc.status();
  const json& j = *doc;
  EXPECT_EQ(j["ints"], json::parse("[0, 80, -7, 3, 7]"));
  for (const json& f : j["floats"]) EXPECT_TRUE(f.is_number_float()) << f;
  EXPECT_DOUBLE_EQ(j["floats"][1].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["floats"][4].get<double>(), 1000);
  EXPECT_DOUBLE_EQ(j["floats"][6].get<double>(), 25);
  for (const json& v : j["strings"]) EXPECT_TRUE(v.is_string()) << v;
  EXPECT_EQ(j["strings"][3], json("80"));
  EXPECT_EQ(j["other"], json::parse("[true, false, null, null, null]"));
}

TEST(ParseManifestsTest, AnchorsAliasesAndKeys) {
  auto doc = YamlToJson(R"(
base: &b {app: web, tier: 1, ports: [80, "81"]}
copy: *b
list: [*b, &n 7, *n]
key: &k name
*k : aliased key
)");
  ASSERT_TRUE(doc.ok()) << doc.status();
  const json& j = *doc;
  EXPECT_EQ(j["base"], json::parse(R"({"app": "web", "tier": 1, "ports": [80, "81"]})"));
  EXPECT_EQ(j["copy"], j["base"]);
  EXPECT_EQ(j["list"], json::array({j["base"], 7, 7}));
  EXPECT_EQ(j["name"], json("aliased key"));

  EXPECT_EQ(YamlToJson("a: 1\n[x]: 2\n").status().message(),
            "line 2: mapping keys must be scalars");
  EXPECT_EQ(ParseManifests("kind: Pod\nmetadata: {name: a, name: b}\n").status().message(),
            "line 2: duplicate key \"name\"");
  // A syntax error later in the file wins over a content error in an earlier document.
  EXPECT_TRUE(std::string(ParseManifests("a: 1\na: 2\n---\nb: [\n").status().message())
                  .starts_with("YAML syntax error at line "));

  // Alias expansion is bounded ("billion laughs").
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'h'; ++c) {
    bomb += absl::StrCat(std::string(1, c), ": &", std::string(1, c), " [");
    for (int i = 0; i < 10; ++i) bomb += absl::StrCat(i ? ", " : "", "*", std::string(1, c - 1));
    bomb += "]\n";
  }
  auto st = YamlToJson(bomb).status();
  EXPECT_NE(st.message().find("values once YAML aliases are expanded"), std::string_view::npos)
      << st;
}

TEST(ParseManifestsTest, JsonFiles) {
  auto objs = ParseManifests(R"({"apiVersion": "v1", "kind": "Namespace",
                                 "metadata": {"name": "prod", "labels": {"a": "b"}}})");
  ASSERT_TRUE(objs.ok()) << objs.status();
  EXPECT_EQ((*objs)[0]["metadata"]["labels"]["a"], json("b"));
}

TEST(ParseManifestsTest, ErrorsNameTheLine) {
  EXPECT_EQ(ParseManifests("kind: Pod\nmetadata: {name: a}\nkind: Pod\n").status().message(),
            "line 3: duplicate key \"kind\"");
  EXPECT_TRUE(std::string(ParseManifests("kind: Pod\nmetadata: [a\n").status().message())
                  .starts_with("YAML syntax error at line "));
  EXPECT_EQ(ParseManifests("kind: Pod\n---\n- a\n- b\n").status().message(),
            "document 1 (line 1): expected a mapping with apiVersion, kind and metadata, got a "
            "mapping without a string kind or a metadata mapping");
  EXPECT_EQ(ParseManifests("---\n- a\n").status().message(),
            "document 1 (line 2): expected a mapping with apiVersion, kind and metadata, got a "
            "list");
  EXPECT_TRUE(ParseManifests("").ok());
}

// Found by tests/fuzz (manifest): a byte sequence that is not UTF-8 in any scalar made every
// later json::dump() throw (weftd's local source, the model, even this parser's own error
// message), i.e. weftd and weftctl died on one bad manifest file.
TEST(ParseManifestsTest, InvalidUtf8IsAnErrorNotACrash) {
  EXPECT_EQ(ParseManifests("kind: Pod\nmetadata: {name: \xd1\xd1}\n").status().message(),
            "line 2: a scalar is not valid UTF-8 (manifests must be UTF-8 text)");
  EXPECT_EQ(ParseManifests("kind: Pod\nmetadata:\n  \xff: a\n").status().message(),
            "line 3: a scalar is not valid UTF-8 (manifests must be UTF-8 text)");
  EXPECT_EQ(ParseManifests("\xd1\n").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(ParseManifests("kind: Pod\nmetadata: {name: caf\xc3\xa9}\n").ok());
}

// Found by tests/fuzz (manifest, regressions/manifest/yaml-cpp-endless-documents): on this text
// yaml-cpp 0.7's HandleNextDocument never returns false and yields empty documents forever;
// ParseDocuments collected them until memory ran out (weftd's local source, weftctl).
TEST(ParseManifestsTest, AParserThatNeverEndsIsAnError) {
  const std::string text =
      ", The same object, PERMISSIVE: plaintexta: {name: e2e-mtls, namespace: e2e}\n"
      "spec: {mtls/v1\nkind: PeerASIVE}}\n";
  auto got = ParseManifests(text);
  EXPECT_EQ(got.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(got.status().message(), "YAML parser is stuck")) << got.status();
}

// ---- the directory source, against a real directory and inotify

class Dir {
 public:
  Dir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "weft-local-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~Dir() { std::filesystem::remove_all(path_); }
  const std::string& path() const { return path_; }
  // Written to a temporary name and renamed, as editors and kubectl-style tools do.
  void Write(const std::string& name, const std::string& text) const {
    const std::string tmp = path_ + "/.tmp-" + name;
    std::ofstream(tmp) << text;
    std::filesystem::rename(tmp, path_ + "/" + name);
  }
  void Remove(const std::string& name) const { std::filesystem::remove(path_ + "/" + name); }

 private:
  std::string path_;
};

// Collects what the source emits: the current objects by "kind/ns/name".
class Collector {
 public:
  ObjectSink Sink() {
    return [this](const ObjectEvent& ev) {
      std::lock_guard<std::mutex> lock(mu_);
      const json& m = ev.object["metadata"];
      std::string key = ev.kind + "/" + m.value("namespace", "") + "/" + m.value("name", "");
      if (ev.type == ObjectEvent::Type::kDelete) {
        objects_.erase(key);
      } else {
        objects_[key] = ev.object;
      }
      ++events_;
      source_ = ev.source;
    };
  }
  std::map<std::string, json> Objects() {
    std::lock_guard<std::mutex> lock(mu_);
    return objects_;
  }
  int events() {
    std::lock_guard<std::mutex> lock(mu_);
    return events_;
  }
  std::string source() {
    std::lock_guard<std::mutex> lock(mu_);
    return source_;
  }

 private:
  std::mutex mu_;
  std::map<std::string, json> objects_;
  int events_ = 0;
  std::string source_;
};

bool WaitFor(const std::function<bool()>& cond) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return cond();
}

double Counter(prometheus::Registry& r, const std::string& name) {
  double sum = 0;
  for (const auto& f : r.Collect()) {
    if (f.name == name) {
      for (const auto& m : f.metric) sum += m.counter.value;
    }
  }
  return sum;
}

constexpr std::string_view kTwo = R"(
apiVersion: v1
kind: Namespace
metadata: {name: prod}
---
apiVersion: v1
kind: Namespace
metadata: {name: dev}
)";

TEST(LocalSourceTest, BrokenEditKeepsLastGoodStateOfThatFile) {
  Dir dir;
  dir.Write("a.yaml", std::string(kTwo));
  dir.Write("b.yml", "{apiVersion: v1, kind: Namespace, metadata: {name: other}}\n");
  dir.Write("notes.txt", "not a manifest");
  Collector got;
  auto registry = std::make_shared<prometheus::Registry>();
  LocalSource src(dir.path(), got.Sink(), registry);
  ASSERT_TRUE(src.Start().ok());
  EXPECT_EQ(got.Objects().size(), 3u) << "loaded synchronously by Start";
  EXPECT_TRUE(src.Errors().empty());

  dir.Write("a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: [broken\n");
  ASSERT_TRUE(WaitFor([&] { return !src.Errors().empty(); }));
  auto errors = src.Errors();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].path, dir.path() + "/a.yaml");
  EXPECT_TRUE(errors[0].error.starts_with("YAML syntax error at line 4")) << errors[0].error;
  EXPECT_EQ(got.Objects().size(), 3u) << "the broken file's objects stay";
  EXPECT_EQ(Counter(*registry, "weft_cp_local_file_errors_total"), 1);

  // Fixed, without dev: dev is deleted, prod untouched (not re-sent), the error clears.
  const int events = got.events();
  dir.Write("a.yaml", "{apiVersion: v1, kind: Namespace, metadata: {name: prod}}\n");
  ASSERT_TRUE(WaitFor([&] { return src.Errors().empty() && got.Objects().size() == 2u; }));
  EXPECT_TRUE(got.Objects().contains("Namespace//prod"));
  EXPECT_TRUE(got.Objects().contains("Namespace//other"));
  EXPECT_EQ(got.events(), events + 1) << "one delete, nothing else";

  dir.Remove("b.yml");
  ASSERT_TRUE(WaitFor([&] { return got.Objects().size() == 1u; }));
  EXPECT_TRUE(got.Objects().contains("Namespace//prod"));
  EXPECT_EQ(got.source(), "local:" + dir.path() + "/b.yml");
  src.Stop();
  src.Stop();
}

TEST(LocalSourceTest, DuplicateObjectInOneFileRejectsTheFile) {
  Dir dir;
  dir.Write("a.yaml", std::string(kTwo) +
                          "---\n{apiVersion: v1, kind: Namespace, metadata: "
                          "{name: prod}}\n");
  Collector got;
  LocalSource src(dir.path(), got.Sink());
  ASSERT_TRUE(src.Start().ok());
  EXPECT_TRUE(got.Objects().empty());
  ASSERT_EQ(src.Errors().size(), 1u);
  EXPECT_EQ(src.Errors()[0].error, "object Namespace//prod is defined twice");
}

// The watcher rereads only the entries inotify names: files renamed in and out, a removed
// file, and an untouched file whose objects are not re-sent.
TEST(LocalSourceTest, RenamesAndRemovalsOfSingleFilesAreFollowed) {
  Dir dir;
  dir.Write("a.yaml", std::string(kTwo));
  Collector c;
  auto registry = std::make_shared<prometheus::Registry>();
  LocalSource src(dir.path(), c.Sink(), registry);
  ASSERT_TRUE(src.Start().ok());
  ASSERT_EQ(c.Objects().size(), 2u);
  const int after_start = c.events();

  // A file renamed in from elsewhere in the directory (the Dir helper writes .tmp-b.yaml first).
  dir.Write("b.yaml", "{apiVersion: v1, kind: Namespace, metadata: {name: staging}}\n");
  ASSERT_TRUE(WaitFor([&] { return c.Objects().contains("Namespace//staging"); }));
  EXPECT_EQ(c.events(), after_start + 1) << "a.yaml's objects are not re-sent";

  // Renamed to a name the source ignores: its objects go.
  std::filesystem::rename(dir.path() + "/b.yaml", dir.path() + "/b.yaml.bak");
  ASSERT_TRUE(WaitFor([&] { return !c.Objects().contains("Namespace//staging"); }));

  dir.Remove("a.yaml");
  ASSERT_TRUE(WaitFor([&] { return c.Objects().empty(); }));
  EXPECT_TRUE(src.Errors().empty());

  // A directory with a manifest-like name is not a file.
  std::filesystem::create_directory(dir.path() + "/c.yaml");
  dir.Write("d.yaml", std::string(kTwo));
  ASSERT_TRUE(WaitFor([&] { return c.Objects().size() == 2; }));
  EXPECT_TRUE(src.Errors().empty());
  EXPECT_EQ(Counter(*registry, "weft_cp_local_file_loads_total"), 3);
  src.Stop();
}

TEST(LocalSourceTest, MissingDirectoryFailsStart) {
  Collector got;
  LocalSource src("/nonexistent/weft-manifests", got.Sink());
  absl::Status st = src.Start();
  EXPECT_FALSE(st.ok());
  EXPECT_TRUE(std::string(st.message()).find("/nonexistent/weft-manifests") != std::string::npos)
      << st;
}

}  // namespace
}  // namespace weft::cp
