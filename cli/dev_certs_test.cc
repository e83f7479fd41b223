#include "cli/dev_certs.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "cli/commands.h"
#include "common/file.h"
#include "common/testing/temp_dir.h"
#include "common/tls.h"
#include "ztunnel/identity/identity.h"

namespace weft::cli {
namespace {

using namespace std::chrono_literals;

using weft::testing::TempDir;

struct RunResult {
  int code = -1;
  std::string out, err;
};

// Runs the real weftctl binary, capturing stdout/stderr into files in `tmp`.
RunResult Weftctl(const TempDir& tmp, const std::string& args) {
  std::string out = tmp.path() + "/stdout", err = tmp.path() + "/stderr";
  std::string cmd = absl::StrCat(WEFTCTL_PATH, " ", args, " >", out, " 2>", err);
  int status = std::system(cmd.c_str());
  RunResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = ReadFile(out).value_or("");
  r.err = ReadFile(err).value_or("");
  return r;
}

TEST(Weftctl, HelpAndUsageErrors) {
  TempDir tmp;
  RunResult help = Weftctl(tmp, "--help");
  EXPECT_EQ(help.code, 0);
  EXPECT_NE(help.out.find("dev-certs"), std::string::npos) << help.out;

  RunResult none = Weftctl(tmp, "");
  EXPECT_EQ(none.code, 2);
  EXPECT_NE(none.err.find("Usage: weftctl"), std::string::npos);

  RunResult unknown = Weftctl(tmp, "frobnicate");
  EXPECT_EQ(unknown.code, 2);
  EXPECT_NE(unknown.err.find("unknown command \"frobnicate\""), std::string::npos);

  RunResult dc_help = Weftctl(tmp, "dev-certs --help");
  EXPECT_EQ(dc_help.code, 0);
  EXPECT_NE(dc_help.out.find("--trust-domain"), std::string::npos);
  EXPECT_EQ(Weftctl(tmp, "help dev-certs").out, dc_help.out);

  RunResult no_dir = Weftctl(tmp, "dev-certs default/web");
  EXPECT_EQ(no_dir.code, 2);
  EXPECT_NE(no_dir.err.find("--dir DIR is required"), std::string::npos) << no_dir.err;
  EXPECT_NE(no_dir.err.find("weftctl dev-certs --help"), std::string::npos);

  RunResult bad_id = Weftctl(tmp, "dev-certs --dir " + tmp.path() + "/x Web");
  EXPECT_EQ(bad_id.code, 2);
  EXPECT_NE(bad_id.err.find("namespace/serviceaccount"), std::string::npos) << bad_id.err;
  EXPECT_FALSE(std::filesystem::exists(tmp.path() + "/x"));  // nothing written on usage errors

  RunResult version = Weftctl(tmp, "--version");
  EXPECT_EQ(version.code, 0);
  EXPECT_NE(version.out.find("weftctl "), std::string::npos);
}

TEST(Weftctl, DevCertsOutputLoadsWithFileCertificateProvider) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/certs";
  RunResult r =
      Weftctl(tmp, "dev-certs --dir " + dir +
                       " --trust-domain example.org --ttl 2h default/web payments/api.v2");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("created CA"), std::string::npos) << r.out;
  for (const char* f : {"ca-key.pem", "ca-cert.pem", "root-cert.pem"})
    EXPECT_TRUE(std::filesystem::exists(dir + "/" + f)) << f;
  struct stat st {};
  ASSERT_EQ(stat((dir + "/ca-key.pem").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  ztunnel::FileCertificateProvider provider(dir);
  const SpiffeId web{"example.org", "default", "web"};
  const SpiffeId api{"example.org", "payments", "api.v2"};
  auto b1 = provider.Get(web);
  ASSERT_TRUE(b1.ok()) << b1.status();
  auto b2 = provider.Get(api);
  ASSERT_TRUE(b2.ok()) << b2.status();
  EXPECT_EQ(*tls::CertSpiffeId((*b2)->leaf.get()), api);
  auto left = (*b1)->not_after - std::chrono::system_clock::now();
  EXPECT_GT(left, 2h - 2min);
  EXPECT_LE(left, 2h + 1min);

  // The two identities complete an mTLS handshake with each other's contexts.
  ztunnel::TlsContextCache cache(&provider);
  auto cctx = cache.ClientContext(web);
  auto sctx = cache.ServerContext(api);
  ASSERT_TRUE(cctx.ok() && sctx.ok());
  tls::SslPtr c(SSL_new(cctx->get())), s(SSL_new(sctx->get()));
  BIO *cb, *sb;
  ASSERT_EQ(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
  SSL_set_bio(c.get(), cb, cb);
  SSL_set_bio(s.get(), sb, sb);
  SSL_set_connect_state(c.get());
  SSL_set_accept_state(s.get());
  int rc = 0, rs = 0;
  for (int i = 0; i < 20 && (rc != 1 || rs != 1); ++i) {
    if (rc != 1) rc = SSL_do_handshake(c.get());
    if (rs != 1) rs = SSL_do_handshake(s.get());
  }
  ASSERT_EQ(rc, 1);
  ASSERT_EQ(rs, 1);
  ztunnel::TlsFailure f;
  EXPECT_TRUE(ztunnel::VerifyPeerIdentity(c.get(), api, &f).ok());
  EXPECT_EQ(*ztunnel::PeerIdentity(s.get(), &f), web);
}

TEST(Weftctl, DevCertsReusesExistingCa) {
  TempDir tmp;
  const std::string dir = tmp.path() + "/certs";
  ASSERT_EQ(Weftctl(tmp, "dev-certs --dir " + dir + " default/web").code, 0);
  std::string ca1 = *ReadFile(dir + "/ca-cert.pem");
  std::string leaf1 = *ReadFile(dir + "/default/web/cert-chain.pem");

  RunResult again = Weftctl(tmp, "dev-certs --dir=" + dir + " default/web default/db");
  ASSERT_EQ(again.code, 0) << again.err;
  EXPECT_NE(again.out.find("reusing CA"), std::string::npos) << again.out;
  EXPECT_EQ(*ReadFile(dir + "/ca-cert.pem"), ca1);
  EXPECT_EQ(*ReadFile(dir + "/root-cert.pem"), ca1);
  EXPECT_NE(*ReadFile(dir + "/default/web/cert-chain.pem"), leaf1);  // reissued
  ztunnel::FileCertificateProvider provider(dir);
  EXPECT_TRUE(provider.Get(SpiffeId{"cluster.local", "default", "db"}).ok());

  // Half a CA is an error that says what to do, with exit code 1.
  std::filesystem::remove(dir + "/ca-cert.pem");
  RunResult half = Weftctl(tmp, "dev-certs --dir " + dir + " default/web");
  EXPECT_EQ(half.code, 1);
  EXPECT_NE(half.err.find("ca-cert.pem is missing"), std::string::npos) << half.err;

  // A corrupted CA file too.
  ASSERT_TRUE(WriteFileAtomic(dir + "/ca-cert.pem", "garbage", 0644).ok());
  RunResult bad = Weftctl(tmp, "dev-certs --dir " + dir + " default/web");
  EXPECT_EQ(bad.code, 1);
  EXPECT_NE(bad.err.find("delete ca-key.pem and ca-cert.pem"), std::string::npos) << bad.err;
}

TEST(DevCertsArgs, Parsing) {
  auto ok = ParseDevCertsArgs({"--dir", "/d", "--ttl=90m", "a/b", "a/b", "--", "c/d"});
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->dir, "/d");
  EXPECT_EQ(ok->trust_domain, "cluster.local");
  EXPECT_EQ(ok->ttl, 90min);
  ASSERT_EQ(ok->identities.size(), 2u);  // duplicates collapse
  EXPECT_EQ(ok->identities[1].ToString(), "spiffe://cluster.local/ns/c/sa/d");

  EXPECT_TRUE(ParseDevCertsArgs({"-h"})->help);
  for (std::vector<std::string> bad : std::vector<std::vector<std::string>>{
           {"--dir", "/d"},                                  // no identity
           {"--dir"},                                        // missing value
           {"--dir", "/d", "--bogus", "a/b"},                // unknown flag
           {"--dir", "/d", "a"},                             // no slash
           {"--dir", "/d", "a/b/c"},                         // two slashes
           {"--dir", "/d", "a/"},                            // empty sa
           {"--dir", "/d", "Upper/b"},                       // not a DNS label
           {"--dir", "/d", "a.b/c"},                         // dots in namespace
           {"--dir", "/d", "a/-b"},                          // leading dash
           {"--dir", "/d", "--trust-domain", "A B", "a/b"},  // bad trust domain
           {"--dir", "/d", "--ttl", "soon", "a/b"},          // bad ttl
       }) {
    auto r = ParseDevCertsArgs(bad);
    EXPECT_FALSE(r.ok()) << bad.back();
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(DevCertsArgs, Ttl) {
  EXPECT_EQ(*ParseTtl("24h"), 24h);
  EXPECT_EQ(*ParseTtl("1h30m"), 90min);
  EXPECT_EQ(*ParseTtl("7d"), 7 * 24h);
  EXPECT_EQ(*ParseTtl("45s"), 45s);
  EXPECT_FALSE(ParseTtl("0s").ok());
  EXPECT_FALSE(ParseTtl("-1h").ok());
  EXPECT_FALSE(ParseTtl("500ms").ok());
  EXPECT_FALSE(ParseTtl("0d").ok());
  EXPECT_FALSE(ParseTtl("").ok());
  EXPECT_FALSE(ParseTtl("h").ok());
}

TEST(DevCertsMain, InProcessExitCodes) {
  TempDir tmp;
  std::ostringstream out, err;
  EXPECT_EQ(DevCertsMain({"--dir", tmp.path(), "ns/sa"}, out, err), kExitOk) << err.str();
  EXPECT_EQ(DevCertsMain({"ns/sa"}, out, err), kExitUsage);
  // A --dir that cannot be created (a regular file is in the way).
  ASSERT_TRUE(WriteFileAtomic(tmp.path() + "/file", "x", 0644).ok());
  std::ostringstream err2;
  EXPECT_EQ(DevCertsMain({"--dir", tmp.path() + "/file/sub", "ns/sa"}, out, err2), kExitFailure);
  EXPECT_NE(err2.str().find("cannot create --dir"), std::string::npos) << err2.str();
}

}  // namespace
}  // namespace weft::cli
