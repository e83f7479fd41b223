#include "ztunnel/state/config_file.h"

#include <fcntl.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "common/file.h"
#include "common/testing/temp_dir.h"

namespace weft::ztunnel {
namespace {

namespace pb = ::weft::config::v1;
using namespace std::chrono_literals;

std::string Testdata(std::string_view name) {
  return std::string(WEFT_STATE_TESTDATA) + "/" + std::string(name);
}

TEST(ParseConfigTextTest, GoodYamlFixture) {
  auto snap = LoadConfigFile(Testdata("good.yaml"));
  ASSERT_TRUE(snap.ok()) << snap.status();
  const ConfigSnapshot& s = **snap;
  EXPECT_EQ(s.version(), "42");
  EXPECT_EQ(s.trust_domain(), "example.org");
  EXPECT_EQ(s.root_namespace(), "mesh-root");
  EXPECT_TRUE(s.outbound_registry_only());
  ASSERT_EQ(s.workloads().size(), 2u);

  const Workload* db = s.FindWorkloadByUid("prod/db-0");
  ASSERT_NE(db, nullptr);
  EXPECT_EQ(db->labels.at("version"), "1");  // unquoted YAML number into a string map
  EXPECT_EQ(db->workload_name, "db");
  EXPECT_EQ(db->node, "node-a");
  EXPECT_EQ(db->identity().ToString(), "spiffe://example.org/ns/prod/sa/db");
  EXPECT_EQ(db->capture_exclude_ports, std::vector<uint16_t>{15021});  // snake_case key
  ASSERT_EQ(db->capture_exclude_cidrs.size(), 1u);
  EXPECT_EQ(db->capture_exclude_cidrs[0].ToString(), "169.254.0.0/16");
  EXPECT_EQ(s.FindWorkloadByAddress(*IpAddr::Parse("fd00::10")), db);

  const Workload* web = s.FindWorkloadByUid("prod/web-0");
  ASSERT_NE(web, nullptr);
  EXPECT_FALSE(web->running);
  EXPECT_FALSE(web->in_mesh());
  EXPECT_EQ(web->netns_path, "/run/netns/weft-web-0");

  const Service* svc = s.FindServiceByAddress(*IpAddr::Parse("10.96.0.10"));
  ASSERT_NE(svc, nullptr);
  EXPECT_EQ(svc->FindPort(5432)->target_port, 5432);
  EXPECT_EQ(svc->FindPort(8080)->target_port, 80);
  EXPECT_EQ(svc->FindPort(8080)->app_protocol, "http");
  EXPECT_EQ(svc->ready_endpoint_uids, std::vector<std::string>{"prod/db-0"});

  ASSERT_EQ(s.authorization_policies().size(), 2u);
  const AuthorizationPolicy& allow = s.authorization_policies()[0];
  EXPECT_EQ(allow.rules[0].to[0].ports, (std::vector<uint16_t>{5432, 8080}));
  EXPECT_TRUE(s.authorization_policies()[1].dry_run);
  EXPECT_EQ(s.EffectiveMtls(*db, 5432), MtlsMode::kStrict);
  EXPECT_EQ(s.EffectiveMtls(*db, 8080), MtlsMode::kPermissive);
  EXPECT_EQ(s.EffectiveMtls(*web, 8080), MtlsMode::kStrict);
}

TEST(ParseConfigTextTest, JsonFixtureEqualsYamlFixture) {
  auto yaml = ParseConfigText(ReadFile(Testdata("good.yaml")).value());
  ASSERT_TRUE(yaml.ok()) << yaml.status();
  auto json = ParseConfigText(ReadFile(Testdata("good.json")).value());
  ASSERT_TRUE(json.ok()) << json.status();
  std::string diff;
  google::protobuf::util::MessageDifferencer d;
  d.ReportDifferencesToString(&diff);
  EXPECT_TRUE(d.Compare(*yaml, *json)) << diff;
  EXPECT_TRUE(LoadConfigFile(Testdata("good.json")).ok());
}

TEST(ParseConfigTextTest, YamlSyntaxErrorNamesLine) {
  auto r = ParseConfigText(ReadFile(Testdata("bad_syntax.yaml")).value());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(),
            "YAML syntax error at line 6, column 6: end of sequence flow not found");
  r = ParseConfigText("version: '1'\nworkloads:\n- uid: a\n   namespace: b\n");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "YAML syntax error at line 4")) << r.status();
}

TEST(ParseConfigTextTest, JsonSyntaxErrorNamesLine) {
  auto r = ParseConfigText("{\"version\": \"1\",\n \"workloads\": [\n  {\"uid\": \"a\"\n ]\n}\n");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(r.status().message(), "YAML syntax error at line 4")) << r.status();
}

TEST(ParseConfigTextTest, UnknownFieldIsAnError) {
  auto r = ParseConfigText(ReadFile(Testdata("unknown_field.yaml")).value());
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(r.status().message(),
                               "line 5: workloads[0]: unknown field \"serviceAcount\" in Workload "
                               "(known fields: uid, name, namespace, serviceAccount,"))
      << r.status();
  r = ParseConfigText("{\"version\": \"1\", \"extra\": true}");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(
      absl::StartsWith(r.status().message(), "line 1: unknown field \"extra\" in ConfigSnapshot"))
      << r.status();
}

struct BadTextCase {
  std::string name;
  std::string text;
  std::string error;
};

void PrintTo(const BadTextCase& c, std::ostream* os) {
  *os << c.name;
}

class BadTextTest : public ::testing::TestWithParam<BadTextCase> {};

TEST_P(BadTextTest, Rejects) {
  auto r = ParseConfigText(GetParam().text);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), GetParam().error);
}

const BadTextCase kBadText[] = {
    {"Empty", "",
     "config is empty: want one weft.config.v1.ConfigSnapshot mapping (version, trustDomain, "
     "workloads, services, authorizationPolicies, peerAuthentications, ...)"},
    {"OnlyComments", "# nothing\n",
     "config is empty: want one weft.config.v1.ConfigSnapshot mapping (version, trustDomain, "
     "workloads, services, authorizationPolicies, peerAuthentications, ...)"},
    {"TwoDocuments", "version: a\n---\nversion: b\n",
     "config must be exactly one YAML document; found a second document or text the YAML parser "
     "cannot read at line 2, column 1 (a stray '---' or ','?)"},
    // yaml-cpp 0.7's LoadAll would loop forever on these.
    {"LeadingComma", ",{version: a}\n",
     "config must be exactly one YAML document; found a second document or text the YAML parser "
     "cannot read at line 1, column 1 (a stray '---' or ','?)"},
    {"TrailingComma", "{version: a}\n,\n",
     "config must be exactly one YAML document; found a second document or text the YAML parser "
     "cannot read at line 2, column 1 (a stray '---' or ','?)"},
    {"TopLevelScalar", "hello",
     "line 1: expected a mapping (key: value) for ConfigSnapshot, got the value \"hello\""},
    {"TopLevelList", "- a\n- b\n",
     "line 1: expected a mapping (key: value) for ConfigSnapshot, got a list"},
    {"MappingForList", "version: x\nworkloads:\n  uid: a\n",
     "line 3: workloads: expected a list, got a mapping"},
    {"ScalarForMessage", "workloads:\n- just-a-name\n",
     "line 2: workloads[0]: expected a mapping (key: value) for Workload, got the value "
     "\"just-a-name\""},
    {"ListForScalar", "version: [a, b]\n", "line 1: version: expected a single value, got a list"},
    {"BadInteger", "services:\n- name: a\n  ports:\n  - port: http\n",
     "line 4: services[0].ports[0].port: expected an integer, got \"http\""},
    {"NegativeUnsigned", "services:\n- name: a\n  ports:\n  - {port: -1}\n",
     "line 4: services[0].ports[0].port: -1 is out of range 0..4294967295"},
    {"BadBool", "authorizationPolicies:\n- {name: a, dryRun: maybe}\n",
     "line 2: authorizationPolicies[0].dryRun: expected true or false, got \"maybe\""},
    {"BadEnum", "workloads:\n- uid: a\n  protocol: hbone\n",
     "line 3: workloads[0].protocol: unknown value \"hbone\" (want one of: PROTOCOL_UNSPECIFIED, "
     "TCP, HBONE)"},
    {"BadMapKey", "peerAuthentications:\n- name: a\n  portLevelMtls:\n    http: {mode: STRICT}\n",
     "line 4: peerAuthentications[0].portLevelMtls[http]: expected an integer, got \"http\""},
    {"DuplicateField", "version: a\ntrustDomain: x\ntrust_domain: y\n",
     "line 3: trustDomain: field is set twice"},
    {"DuplicateMapKey", "workloads:\n- uid: a\n  labels: {app: a, app: b}\n",
     "line 3: workloads[0].labels[app]: key is set twice"},
    {"NonScalarKey", "? [a, b]\n: c\n", "line 1: mapping keys must be plain field names"},
    {"InvalidUtf8", "version: \"\xff\xfe\"\n",
     "config is not valid UTF-8: [json.exception.type_error.316] invalid UTF-8 byte at index 0: "
     "0xFF"},
};

INSTANTIATE_TEST_SUITE_P(Text, BadTextTest, ::testing::ValuesIn(kBadText),
                         [](const ::testing::TestParamInfo<BadTextCase>& i) {
                           return i.param.name;
                         });

// Aliases share nodes in YAML but would be copied out in JSON: 40^4 principals from a few lines.
TEST(ParseConfigTextTest, AliasExpansionIsBounded) {
  auto rep = [](std::string_view first, std::string_view alias, int n) {
    std::string out(first);
    for (int i = 1; i < n; ++i) out += ", " + std::string(alias);
    return out;
  };
  std::string principals = "[" + rep("x", "x", 40) + "]";
  std::string from = "[" + rep("&f {source: {principals: " + principals + "}}", "*f", 40) + "]";
  std::string rules = "[" + rep("&r {from: " + from + "}", "*r", 40) + "]";
  std::string text = "authorizationPolicies: [" +
                     rep("&p {name: a, namespace: b, rules: " + rules + "}", "*p", 40) + "]\n";
  ASSERT_LT(text.size(), 4000u);
  auto r = ParseConfigText(text);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StrContains(r.status().message(),
                                "config too large: more than 2000000 values once YAML aliases "
                                "are expanded"))
      << r.status();
}

TEST(ParseConfigTextTest, AcceptsBothFieldNameStylesAndQuotedNumbers) {
  auto r = ParseConfigText(R"(
root_namespace: r
services:
- {name: a, namespace: b, ports: [{port: "80", target_port: 8080}]}
peerAuthentications:
- name: p
  namespace: b
  selector: {match_labels: {app: a}}
  port_level_mtls: {"9090": {mode: DISABLE}}
authorizationPolicies:
- {name: x, namespace: b, action: DENY, dry_run: True, rules: [{to: [{operation: {ports: [80]}}]}]}
)");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->root_namespace(), "r");
  EXPECT_EQ(r->services(0).ports(0).port(), 80u);
  EXPECT_EQ(r->services(0).ports(0).target_port(), 8080u);
  EXPECT_EQ(r->peer_authentications(0).selector().match_labels().at("app"), "a");
  EXPECT_EQ(r->peer_authentications(0).port_level_mtls().at(9090).mode(),
            pb::PeerAuthentication::DISABLE);
  EXPECT_TRUE(r->authorization_policies(0).dry_run());
  EXPECT_EQ(r->authorization_policies(0).rules(0).to(0).operation().ports(0), "80");
}

TEST(LoadConfigFileTest, ErrorsNameThePath) {
  auto r = LoadConfigFile(Testdata("does-not-exist.yaml"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(absl::StrContains(r.status().message(), "does-not-exist.yaml")) << r.status();

  r = LoadConfigFile(Testdata("invalid_policy.yaml"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(
      r.status().message(),
      Testdata("invalid_policy.yaml") +
          ": authorization_policy \"prod/deny-db\": rules[0].from[0].source.ipBlocks[1]: bad "
          "CIDR \"10.0.0.300/32\""))
      << r.status();

  r = LoadConfigFile(Testdata("unknown_field.yaml"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::StartsWith(r.status().message(), Testdata("unknown_field.yaml") +
                                                         ": line 5: workloads[0]: unknown "
                                                         "field \"serviceAcount\""))
      << r.status();
}

// Untrusted text must never crash the parser or the validator: every truncation of the good
// fixtures and seeded random byte mutations either load or fail with InvalidArgument.
TEST(ParseConfigTextTest, TruncatedAndMutatedInputNeverCrash) {
  for (const char* fixture : {"good.yaml", "good.json"}) {
    const std::string good = ReadFile(Testdata(fixture)).value();
    ASSERT_FALSE(good.empty());
    auto check = [&](const std::string& text) {
      auto pb = ParseConfigText(text);
      if (!pb.ok()) {
        ASSERT_EQ(pb.status().code(), absl::StatusCode::kInvalidArgument) << pb.status();
        ASSERT_FALSE(pb.status().message().empty());
        return;
      }
      auto snap = ConfigSnapshot::FromProto(*pb);
      if (!snap.ok()) {
        ASSERT_EQ(snap.status().code(), absl::StatusCode::kInvalidArgument) << snap.status();
      }
    };
    for (size_t n = 0; n <= good.size(); ++n) check(good.substr(0, n));
    std::mt19937 rng(12345);
    const std::string alphabet = "{}[]:,-'\"#&*!|>%@` \n\t0123456789abcXYZ\xff\x00";
    for (int i = 0; i < 1500; ++i) {
      std::string text = good;
      int edits = 1 + static_cast<int>(rng() % 4);
      for (int e = 0; e < edits; ++e) {
        size_t pos = rng() % text.size();
        char c = alphabet[rng() % alphabet.size()];
        switch (rng() % 3) {
          case 0:
            text[pos] = c;
            break;
          case 1:
            text.insert(pos, 1, c);
            break;
          default:
            text.erase(pos, 1);
            break;
        }
      }
      check(text);
    }
  }
}

// ---- ConfigFileWatcher --------------------------------------------------------------------

using weft::testing::TempDir;

// Writes in place (truncate + write + close): IN_CLOSE_WRITE.
void WriteInPlace(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::trunc);
  f << text;
}

// Writes a temp file and renames it over `path`: IN_MOVED_TO, as editors and kubectl do.
void WriteRenameOver(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  WriteInPlace(tmp, text);
  ASSERT_EQ(std::rename(tmp.c_str(), path.c_str()), 0);
}

std::string Config(std::string_view version) {
  return "version: \"" + std::string(version) +
         "\"\nworkloads:\n- {uid: prod/a, namespace: prod, addresses: [10.0.0.1]}\n";
}

// Collects callbacks from the watcher thread; the caller keeps the last good snapshot.
class Recorder {
 public:
  void OnLoad(SnapshotPtr s) {
    std::lock_guard<std::mutex> l(mu_);
    versions_.push_back(s->version());
    last_good_ = std::move(s);
    cv_.notify_all();
  }
  void OnError(const absl::Status& st) {
    std::lock_guard<std::mutex> l(mu_);
    errors_.push_back(st);
    cv_.notify_all();
  }
  bool WaitVersion(const std::string& v, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return !versions_.empty() && versions_.back() == v; });
  }
  bool WaitErrors(size_t n, std::chrono::milliseconds timeout = 5s) {
    std::unique_lock<std::mutex> l(mu_);
    return cv_.wait_for(l, timeout, [&] { return errors_.size() >= n; });
  }
  SnapshotPtr last_good() {
    std::lock_guard<std::mutex> l(mu_);
    return last_good_;
  }
  std::vector<absl::Status> errors() {
    std::lock_guard<std::mutex> l(mu_);
    return errors_;
  }
  size_t loads() {
    std::lock_guard<std::mutex> l(mu_);
    return versions_.size();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> versions_;
  std::vector<absl::Status> errors_;
  SnapshotPtr last_good_;
};

TEST(ConfigFileWatcherTest, ReloadsOnWriteRenameAndRecreate) {
  TempDir dir;
  const std::string path = dir.path() + "/ztunnel.yaml";
  WriteInPlace(path, Config("v1"));
  Recorder rec;
  ConfigFileWatcher w(
      path, [&](SnapshotPtr s) { rec.OnLoad(std::move(s)); },
      [&](const absl::Status& st) { rec.OnError(st); });
  ASSERT_TRUE(w.Start().ok());
  // The first load is synchronous.
  ASSERT_NE(rec.last_good(), nullptr);
  EXPECT_EQ(rec.last_good()->version(), "v1");

  WriteRenameOver(path, Config("v2"));
  ASSERT_TRUE(rec.WaitVersion("v2")) << "no reload after rename-over";

  WriteInPlace(path, Config("v3"));
  ASSERT_TRUE(rec.WaitVersion("v3")) << "no reload after in-place write";

  // Unrelated files in the directory are ignored. The marker that the event was processed: a
  // second watcher, on other.yaml in the same directory, gets the same inotify event and
  // reloads; then a write to our file comes in a burst of its own. Only that one reloads.
  size_t loads = rec.loads();
  const std::string other = dir.path() + "/other.yaml";
  WriteInPlace(other, Config("other-1"));
  Recorder other_rec;
  ConfigFileWatcher other_w(
      other, [&](SnapshotPtr s) { other_rec.OnLoad(std::move(s)); },
      [&](const absl::Status& st) { other_rec.OnError(st); });
  ASSERT_TRUE(other_w.Start().ok());
  WriteInPlace(other, Config("other-2"));
  ASSERT_TRUE(other_rec.WaitVersion("other-2", 30s)) << "the control watcher saw nothing";
  other_w.Stop();
  EXPECT_EQ(rec.loads(), loads) << "reloaded for another file's event";
  WriteInPlace(path, Config("v3-marker"));
  ASSERT_TRUE(rec.WaitVersion("v3-marker", 30s));
  EXPECT_EQ(rec.loads(), loads + 1);

  ASSERT_EQ(std::remove(path.c_str()), 0);
  WriteInPlace(path, Config("v4"));
  ASSERT_TRUE(rec.WaitVersion("v4")) << "no reload after delete + create";
  EXPECT_TRUE(rec.errors().empty());
  w.Stop();
}

TEST(ConfigFileWatcherTest, BrokenFileReportsErrorAndKeepsLastGood) {
  TempDir dir;
  const std::string path = dir.path() + "/ztunnel.yaml";
  WriteInPlace(path, Config("good-1"));
  Recorder rec;
  ConfigFileWatcher w(
      path, [&](SnapshotPtr s) { rec.OnLoad(std::move(s)); },
      [&](const absl::Status& st) { rec.OnError(st); });
  ASSERT_TRUE(w.Start().ok());

  WriteRenameOver(path, "version: \"bad\"\nworkloads: [\n");
  ASSERT_TRUE(rec.WaitErrors(1)) << "on_error not called for a YAML syntax error";
  EXPECT_TRUE(absl::StrContains(rec.errors()[0].message(), "YAML syntax error")) << rec.errors()[0];
  EXPECT_EQ(rec.last_good()->version(), "good-1");

  // Parses, but fails validation.
  WriteInPlace(path, "version: bad2\nworkloads: [{uid: a, namespace: b, addresses: [nope]}]\n");
  ASSERT_TRUE(rec.WaitErrors(2)) << "on_error not called for a validation error";
  EXPECT_TRUE(absl::StrContains(rec.errors()[1].message(),
                                "workload \"a\": addresses[0]: \"nope\" is not an IP address"))
      << rec.errors()[1];
  EXPECT_EQ(rec.last_good()->version(), "good-1");

  WriteRenameOver(path, Config("good-2"));
  ASSERT_TRUE(rec.WaitVersion("good-2")) << "no reload after fixing the file";
  EXPECT_EQ(rec.errors().size(), 2u);
}

TEST(ConfigFileWatcherTest, BurstOfWritesEndsWithLastVersion) {
  TempDir dir;
  const std::string path = dir.path() + "/ztunnel.yaml";
  WriteInPlace(path, Config("b0"));
  Recorder rec;
  ConfigFileWatcher w(
      path, [&](SnapshotPtr s) { rec.OnLoad(std::move(s)); },
      [&](const absl::Status& st) { rec.OnError(st); });
  ASSERT_TRUE(w.Start().ok());
  for (int i = 1; i <= 20; ++i) WriteRenameOver(path, Config("b" + std::to_string(i)));
  ASSERT_TRUE(rec.WaitVersion("b20"));
  // Debounced: far fewer loads than writes (1 initial + at least 1 reload).
  EXPECT_LT(rec.loads(), 21u);
  EXPECT_TRUE(rec.errors().empty());
}

TEST(ConfigFileWatcherTest, StartFailsWhenFirstLoadFails) {
  TempDir dir;
  const std::string path = dir.path() + "/ztunnel.yaml";
  Recorder rec;
  {
    ConfigFileWatcher w(
        path, [&](SnapshotPtr s) { rec.OnLoad(std::move(s)); },
        [&](const absl::Status& st) { rec.OnError(st); });
    absl::Status st = w.Start();
    EXPECT_EQ(st.code(), absl::StatusCode::kNotFound) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), path)) << st;
  }
  {
    WriteInPlace(path, "unknownTopLevel: 1\n");
    ConfigFileWatcher w(
        path, [&](SnapshotPtr s) { rec.OnLoad(std::move(s)); },
        [&](const absl::Status& st) { rec.OnError(st); });
    absl::Status st = w.Start();
    EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument) << st;
    EXPECT_TRUE(absl::StrContains(st.message(), "unknown field \"unknownTopLevel\"")) << st;
  }
  {
    ConfigFileWatcher w(
        dir.path() + "/no-such-dir/ztunnel.yaml", [&](SnapshotPtr s) { rec.OnLoad(std::move(s)); },
        [&](const absl::Status& st) { rec.OnError(st); });
    absl::Status st = w.Start();
    EXPECT_FALSE(st.ok());
    EXPECT_TRUE(absl::StrContains(st.message(), "cannot watch directory")) << st;
  }
  EXPECT_EQ(rec.loads(), 0u);
  EXPECT_TRUE(rec.errors().empty());  // Start reports through its status, not on_error
}

TEST(ConfigFileWatcherTest, StopIsIdempotentAndEndsCallbacks) {
  TempDir dir;
  const std::string path = dir.path() + "/ztunnel.yaml";
  WriteInPlace(path, Config("s1"));
  Recorder rec;
  ConfigFileWatcher w(
      path, [&](SnapshotPtr s) { rec.OnLoad(std::move(s)); },
      [&](const absl::Status& st) { rec.OnError(st); });
  ASSERT_TRUE(w.Start().ok());
  EXPECT_EQ(w.Start().code(), absl::StatusCode::kFailedPrecondition);
  w.Stop();
  w.Stop();
  // The marker that events after Stop were delivered: a live watcher on the same file, started
  // after Stop, reloads on them; the stopped one never calls back.
  Recorder live;
  ConfigFileWatcher live_w(
      path, [&](SnapshotPtr s) { live.OnLoad(std::move(s)); },
      [&](const absl::Status& st) { live.OnError(st); });
  ASSERT_TRUE(live_w.Start().ok());
  WriteRenameOver(path, Config("s2"));
  ASSERT_TRUE(live.WaitVersion("s2", 30s)) << "the live watcher saw nothing";
  live_w.Stop();
  EXPECT_EQ(rec.loads(), 1u);
  EXPECT_EQ(rec.last_good()->version(), "s1");
}

}  // namespace
}  // namespace weft::ztunnel
