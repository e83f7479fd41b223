// Real TLS 1.3 handshakes between a client SSL and a server SSL over an in-memory BIO pair.
#include <gtest/gtest.h>
#include <openssl/err.h>

#include "common/tls.h"
#include "ztunnel/identity/identity.h"

namespace weft::ztunnel {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

const SpiffeId kClient{"cluster.local", "frontend", "web"};
const SpiffeId kServer{"cluster.local", "backend", "api"};

tls::CertificateAuthority Root(std::string_view org = "weft-test") {
  auto ca = tls::CertificateAuthority::CreateRoot(org, 24h);
  EXPECT_TRUE(ca.ok()) << ca.status();
  return std::move(*ca);
}

std::shared_ptr<CertBundle> Bundle(const tls::CertificateAuthority& ca, const SpiffeId& id,
                                   std::chrono::seconds ttl = 1h,
                                   std::optional<system_clock::time_point> nb = std::nullopt) {
  auto b = MakeCertBundle(ca, id, ttl, nb);
  EXPECT_TRUE(b.ok()) << b.status();
  return *b;
}

struct Side {
  tls::SslPtr ssl;
  bool done = false;    // handshake completed
  bool failed = false;  // handshake (or the first read after it) failed fatally
  TlsFailure failure = TlsFailure::kNone;
  std::string detail;  // ClassifyHandshakeFailure's text
};

// Drives one SSL one step: the handshake, then a read, which is where a TLS 1.3 client learns
// that the server rejected its certificate.
bool Step(Side& s) {
  if (s.failed) return false;
  ERR_clear_error();
  int r;
  if (!s.done) {
    r = SSL_do_handshake(s.ssl.get());
    if (r == 1) {
      s.done = true;
      return true;
    }
  } else {
    char buf[64];
    r = SSL_read(s.ssl.get(), buf, sizeof(buf));
    if (r > 0) return true;
  }
  int err = SSL_get_error(s.ssl.get(), r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return false;
  s.failed = true;
  s.failure = ClassifyHandshakeFailure(s.ssl.get(), &s.detail);
  return true;
}

struct Result {
  Side client, server;
};

Result Handshake(SSL_CTX* client_ctx, SSL_CTX* server_ctx,
                 const std::function<void(SSL*)>& tweak_client = nullptr) {
  Result res;
  res.client.ssl.reset(SSL_new(client_ctx));
  res.server.ssl.reset(SSL_new(server_ctx));
  BIO *cb = nullptr, *sb = nullptr;
  EXPECT_EQ(BIO_new_bio_pair(&cb, 0, &sb, 0), 1);
  SSL_set_bio(res.client.ssl.get(), cb, cb);
  SSL_set_bio(res.server.ssl.get(), sb, sb);
  SSL_set_connect_state(res.client.ssl.get());
  SSL_set_accept_state(res.server.ssl.get());
  if (tweak_client) tweak_client(res.client.ssl.get());
  for (int i = 0; i < 50; ++i) {
    bool progress = Step(res.client);
    progress |= Step(res.server);
    if (!progress && (res.client.done || res.client.failed) &&
        (res.server.done || res.server.failed))
      break;
  }
  return res;
}

class HandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    provider_.Set(Bundle(ca_, kClient));
    provider_.Set(Bundle(ca_, kServer));
  }
  std::shared_ptr<SSL_CTX> Ctx(const std::shared_ptr<CertBundle>& b, bool server) {
    auto ctx = TlsContextCache::BuildContext(*b, server);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }
  std::shared_ptr<SSL_CTX> ServerCtx() {
    auto ctx = cache_.ServerContext(kServer);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }
  std::shared_ptr<SSL_CTX> ClientCtx() {
    auto ctx = cache_.ClientContext(kClient);
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  }

  tls::CertificateAuthority ca_ = Root();
  StaticCertificateProvider provider_;
  TlsContextCache cache_{&provider_};
};

TEST_F(HandshakeTest, MutualTlsWithIdentityCheck) {
  auto r = Handshake(ClientCtx().get(), ServerCtx().get());
  ASSERT_TRUE(r.client.done && r.server.done);
  ASSERT_FALSE(r.client.failed || r.server.failed)
      << TlsFailureName(r.client.failure) << " / " << TlsFailureName(r.server.failure);
  EXPECT_EQ(SSL_version(r.client.ssl.get()), TLS1_3_VERSION);
  std::string cipher = SSL_get_cipher_name(r.client.ssl.get());
  EXPECT_EQ(cipher, "TLS_AES_128_GCM_SHA256");

  TlsFailure f = TlsFailure::kProtocol;
  EXPECT_TRUE(VerifyPeerIdentity(r.client.ssl.get(), kServer, &f).ok());
  EXPECT_EQ(f, TlsFailure::kNone);
  auto client_id = PeerIdentity(r.server.ssl.get(), &f);
  ASSERT_TRUE(client_id.ok()) << client_id.status();
  EXPECT_EQ(*client_id, kClient);

  // Application data flows both ways.
  ASSERT_EQ(SSL_write(r.client.ssl.get(), "ping", 4), 4);
  char buf[16];
  ASSERT_EQ(SSL_read(r.server.ssl.get(), buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "ping");
  ASSERT_EQ(SSL_write(r.server.ssl.get(), "pong", 4), 4);
  ASSERT_EQ(SSL_read(r.client.ssl.get(), buf, sizeof(buf)), 4);
  EXPECT_EQ(std::string(buf, 4), "pong");
  // No session tickets were issued.
  SSL_SESSION* sess = SSL_get0_session(r.client.ssl.get());
  ASSERT_NE(sess, nullptr);
  EXPECT_EQ(SSL_SESSION_has_ticket(sess), 0);
}

TEST_F(HandshakeTest, ContextSettings) {
  auto s = ServerCtx();
  auto c = ClientCtx();
  for (SSL_CTX* ctx : {s.get(), c.get()}) {
    EXPECT_EQ(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION);
    EXPECT_TRUE(SSL_CTX_get_options(ctx) & SSL_OP_NO_TICKET);
    long mode = SSL_CTX_get_mode(ctx);
    EXPECT_TRUE(mode & SSL_MODE_RELEASE_BUFFERS);
    EXPECT_TRUE(mode & SSL_MODE_ENABLE_PARTIAL_WRITE);
    EXPECT_TRUE(mode & SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    EXPECT_EQ(SSL_CTX_get_num_tickets(ctx), 0u);
  }
  EXPECT_EQ(SSL_CTX_get_verify_mode(s.get()), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT);
  EXPECT_EQ(SSL_CTX_get_verify_mode(c.get()), SSL_VERIFY_PEER);
}

TEST_F(HandshakeTest, CacheReusesAndRebuildsOnRotation) {
  auto a = ServerCtx();
  auto b = ServerCtx();
  EXPECT_EQ(a.get(), b.get());
  EXPECT_NE(ClientCtx().get(), a.get());  // client and server contexts are distinct
  provider_.Set(Bundle(ca_, kServer));    // rotation: a new bundle object
  auto rotated = ServerCtx();
  EXPECT_NE(rotated.get(), a.get());
  EXPECT_EQ(ServerCtx().get(), rotated.get());
  // The old context stays usable by connections that hold it.
  auto r = Handshake(ClientCtx().get(), a.get());
  EXPECT_TRUE(r.client.done && r.server.done && !r.server.failed);
  EXPECT_FALSE(cache_.ServerContext(SpiffeId{"cluster.local", "no", "such"}).ok());
}

TEST_F(HandshakeTest, IntermediateChainIsSent) {
  auto mid = ca_.CreateIntermediate("weft-mid", 12h);
  ASSERT_TRUE(mid.ok());
  auto server = Bundle(*mid, kServer);
  ASSERT_EQ(server->intermediates.size(), 1u);
  auto r = Handshake(ClientCtx().get(), Ctx(server, true).get());
  ASSERT_TRUE(r.client.done && r.server.done);
  EXPECT_FALSE(r.client.failed || r.server.failed) << TlsFailureName(r.client.failure);
  TlsFailure f;
  EXPECT_TRUE(VerifyPeerIdentity(r.client.ssl.get(), kServer, &f).ok());
}

// Issue 13 hole 7: a certificate chained to a trusted root but whose SPIFFE ID is in another
// trust domain is refused on both sides, unless that trust domain is a configured alias.
TEST_F(HandshakeTest, PeerFromAnotherTrustDomainIsRefusedUnlessAliased) {
  const SpiffeId foreign_client{"evil.org", "frontend", "web"};
  const SpiffeId foreign_server{"evil.org", "backend", "api"};
  // The foreign peer itself accepts cluster.local (an attacker would not check at all).
  auto foreign = [&](const std::shared_ptr<CertBundle>& b, bool srv) {
    auto ctx = TlsContextCache::BuildContext(*b, srv, {"cluster.local"});
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  };
  auto client = Bundle(ca_, foreign_client);
  auto r = Handshake(foreign(client, false).get(), ServerCtx().get());
  ASSERT_TRUE(r.server.failed) << "server accepted a client from trust domain evil.org";
  EXPECT_EQ(r.server.failure, TlsFailure::kTrustDomainMismatch) << r.server.detail;
  EXPECT_NE(r.server.detail.find("trust domain"), std::string::npos) << r.server.detail;

  auto server = Bundle(ca_, foreign_server);
  r = Handshake(ClientCtx().get(), foreign(server, true).get());
  ASSERT_TRUE(r.client.failed) << "client accepted a server from trust domain evil.org";
  EXPECT_EQ(r.client.failure, TlsFailure::kTrustDomainMismatch) << r.client.detail;

  // With evil.org as an alias of cluster.local both directions work.
  auto aliased = [&](const SpiffeId& id, bool srv) {
    auto ctx = TlsContextCache::BuildContext(*provider_.Get(id).value(), srv, {"evil.org"});
    EXPECT_TRUE(ctx.ok()) << ctx.status();
    return *ctx;
  };
  r = Handshake(foreign(client, false).get(), aliased(kServer, true).get());
  EXPECT_TRUE(r.client.done && r.server.done && !r.client.failed && !r.server.failed)
      << TlsFailureName(r.server.failure) << ": " << r.server.detail;
  r = Handshake(aliased(kClient, false).get(), foreign(server, true).get());
  EXPECT_TRUE(r.client.done && r.server.done && !r.client.failed && !r.server.failed)
      << TlsFailureName(r.client.failure) << ": " << r.client.detail;
  // The cache passes its aliases to the contexts it builds.
  TlsContextCache with_alias(&provider_, {"evil.org"});
  r = Handshake(foreign(client, false).get(), with_alias.ServerContext(kServer)->get());
  EXPECT_FALSE(r.server.failed) << r.server.detail;
}

TEST_F(HandshakeTest, ClientCertFromAnotherCa) {
  auto other = Root("intruder");
  auto client = Bundle(other, kClient);
  // The client trusts the mesh root (so it accepts the server) but its own cert is foreign.
  client->roots.clear();
  client->roots.push_back(*tls::CertFromPem(ca_.root_pem()));
  auto r = Handshake(Ctx(client, false).get(), ServerCtx().get());
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kUnknownCa);
  EXPECT_EQ(SSL_get_verify_result(r.server.ssl.get()),
            X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY);
  // The client learns through the unknown_ca alert.
  ASSERT_TRUE(r.client.failed);
  EXPECT_EQ(r.client.failure, TlsFailure::kUnknownCa);
}

TEST_F(HandshakeTest, ServerCertFromAnotherCa) {
  auto other = Root("intruder");
  auto server = Bundle(other, kServer);
  server->roots.clear();
  server->roots.push_back(*tls::CertFromPem(ca_.root_pem()));
  auto r = Handshake(ClientCtx().get(), Ctx(server, true).get());
  ASSERT_TRUE(r.client.failed);
  EXPECT_FALSE(r.client.done);
  EXPECT_EQ(r.client.failure, TlsFailure::kUnknownCa);
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kUnknownCa);
}

TEST_F(HandshakeTest, ExpiredClientCert) {
  auto client = Bundle(ca_, kClient, 1h, system_clock::now() - 3h);
  auto r = Handshake(Ctx(client, false).get(), ServerCtx().get());
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kExpired);
  EXPECT_NE(r.server.detail.find("certificate has expired"), std::string::npos) << r.server.detail;
  ASSERT_TRUE(r.client.failed);
  EXPECT_EQ(r.client.failure, TlsFailure::kExpired);  // certificate_expired alert
  EXPECT_NE(r.client.detail.find("alert certificate expired"), std::string::npos)
      << r.client.detail;
}

TEST_F(HandshakeTest, ExpiredServerCert) {
  auto server = Bundle(ca_, kServer, 1h, system_clock::now() - 3h);
  auto r = Handshake(ClientCtx().get(), Ctx(server, true).get());
  ASSERT_TRUE(r.client.failed);
  EXPECT_EQ(r.client.failure, TlsFailure::kExpired);
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kExpired);
}

TEST_F(HandshakeTest, NotYetValidClientCert) {
  auto client = Bundle(ca_, kClient, 1h, system_clock::now() + 2h);
  auto r = Handshake(Ctx(client, false).get(), ServerCtx().get());
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kNotYetValid);
  // OpenSSL sends bad_certificate for "not yet valid"; the client cannot tell it apart from
  // other chain rejections and reports unknown_ca.
  ASSERT_TRUE(r.client.failed);
  EXPECT_EQ(r.client.failure, TlsFailure::kUnknownCa);
}

TEST_F(HandshakeTest, ClientCertWithoutSpiffeId) {
  auto key = tls::GenerateKey();
  auto csr = tls::MakeCsr(key->get(), kClient);
  auto leaf = ca_.SignWithSans(csr->get(), {}, {"web.frontend.svc"}, 1h);
  ASSERT_TRUE(leaf.ok());
  auto client = Bundle(ca_, kClient);
  client->key = std::move(*key);
  client->leaf = std::move(*leaf);
  auto r = Handshake(Ctx(client, false).get(), ServerCtx().get());
  // The chain is valid, so TLS succeeds; the identity check is what rejects it.
  ASSERT_TRUE(r.server.done && !r.server.failed);
  TlsFailure f = TlsFailure::kNone;
  auto id = PeerIdentity(r.server.ssl.get(), &f);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(f, TlsFailure::kNoSpiffeId);
  EXPECT_NE(id.status().message().find("no URI SAN"), std::string::npos) << id.status();
}

TEST_F(HandshakeTest, ServerWithMalformedSpiffeId) {
  auto key = tls::GenerateKey();
  auto csr = tls::MakeCsr(key->get(), kServer);
  auto leaf = ca_.SignWithSans(csr->get(), {"spiffe://cluster.local/backend/api"}, {}, 1h);
  ASSERT_TRUE(leaf.ok());
  auto server = Bundle(ca_, kServer);
  server->key = std::move(*key);
  server->leaf = std::move(*leaf);
  auto r = Handshake(ClientCtx().get(), Ctx(server, true).get());
  ASSERT_TRUE(r.client.done && !r.client.failed);
  TlsFailure f = TlsFailure::kNone;
  EXPECT_FALSE(VerifyPeerIdentity(r.client.ssl.get(), kServer, &f).ok());
  EXPECT_EQ(f, TlsFailure::kNoSpiffeId);
}

TEST_F(HandshakeTest, WrongServerIdentity) {
  auto r = Handshake(ClientCtx().get(), ServerCtx().get());
  ASSERT_TRUE(r.client.done && !r.client.failed);
  TlsFailure f = TlsFailure::kNone;
  auto st = VerifyPeerIdentity(r.client.ssl.get(), SpiffeId{"cluster.local", "backend", "db"}, &f);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(f, TlsFailure::kIdentityMismatch);
  EXPECT_EQ(st.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_NE(st.message().find("spiffe://cluster.local/ns/backend/sa/api"), std::string::npos);
  // Same names in another trust domain are a different identity.
  EXPECT_FALSE(
      VerifyPeerIdentity(r.client.ssl.get(), SpiffeId{"other.td", "backend", "api"}, &f).ok());
  EXPECT_EQ(f, TlsFailure::kIdentityMismatch);
}

TEST_F(HandshakeTest, NoClientCert) {
  // A client context like ours but without a certificate.
  tls::SslCtxPtr c(SSL_CTX_new(TLS_method()));
  SSL_CTX_set_min_proto_version(c.get(), TLS1_3_VERSION);
  static const unsigned char kH2[] = {2, 'h', '2'};
  ASSERT_EQ(SSL_CTX_set_alpn_protos(c.get(), kH2, sizeof(kH2)), 0);
  SSL_CTX_set_verify(c.get(), SSL_VERIFY_PEER, nullptr);
  ASSERT_EQ(X509_STORE_add_cert(SSL_CTX_get_cert_store(c.get()), ca_.cert()), 1);
  auto r = Handshake(c.get(), ServerCtx().get());
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kNoClientCert);
  ASSERT_TRUE(r.client.failed);
  EXPECT_EQ(r.client.failure, TlsFailure::kNoClientCert);  // certificate_required alert
}

TEST_F(HandshakeTest, ClientWithoutAlpnCompletesButIsRejected) {
  // No ALPN extension at all: the server's select callback never runs, so the handshake
  // completes and PeerIdentity reports kNoAlpn on both sides.
  auto r = Handshake(ClientCtx().get(), ServerCtx().get(),
                     [](SSL* ssl) { ASSERT_EQ(SSL_set_alpn_protos(ssl, nullptr, 0), 0); });
  ASSERT_TRUE(r.server.done && !r.server.failed);
  TlsFailure f = TlsFailure::kNone;
  auto id = PeerIdentity(r.server.ssl.get(), &f);
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(f, TlsFailure::kNoAlpn);
  EXPECT_NE(id.status().message().find("h2"), std::string::npos);
  f = TlsFailure::kNone;
  EXPECT_FALSE(VerifyPeerIdentity(r.client.ssl.get(), kServer, &f).ok());
  EXPECT_EQ(f, TlsFailure::kNoAlpn);
}

TEST_F(HandshakeTest, ClientOfferingOtherAlpnFailsHandshake) {
  static const unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
  auto r = Handshake(ClientCtx().get(), ServerCtx().get(), [](SSL* ssl) {
    ASSERT_EQ(SSL_set_alpn_protos(ssl, kHttp11, sizeof(kHttp11)), 0);
  });
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kNoAlpn);
  ASSERT_TRUE(r.client.failed);
  EXPECT_EQ(r.client.failure, TlsFailure::kNoAlpn);  // no_application_protocol alert
}

TEST_F(HandshakeTest, Tls12ClientIsProtocolFailure) {
  auto client = Bundle(ca_, kClient);
  auto ctx = Ctx(client, false);
  tls::SslCtxPtr c12(SSL_CTX_new(TLS_method()));
  SSL_CTX_set_max_proto_version(c12.get(), TLS1_2_VERSION);
  ASSERT_EQ(SSL_CTX_use_certificate(c12.get(), client->leaf.get()), 1);
  ASSERT_EQ(SSL_CTX_use_PrivateKey(c12.get(), client->key.get()), 1);
  auto r = Handshake(c12.get(), ServerCtx().get());
  ASSERT_TRUE(r.server.failed);
  EXPECT_EQ(r.server.failure, TlsFailure::kProtocol);
  EXPECT_TRUE(r.client.failed);
}

TlsFailure FeedServer(SSL_CTX* ctx, std::string_view bytes) {
  tls::SslPtr ssl(SSL_new(ctx));
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  BIO_write(in, bytes.data(), static_cast<int>(bytes.size()));
  BIO_set_mem_eof_return(in, -1);  // "no more data yet", not EOF
  SSL_set_bio(ssl.get(), in, out);
  SSL_set_accept_state(ssl.get());
  ERR_clear_error();
  int r = SSL_do_handshake(ssl.get());
  EXPECT_NE(r, 1);
  if (SSL_get_error(ssl.get(), r) != SSL_ERROR_SSL) return TlsFailure::kNone;
  return ClassifyHandshakeFailure(ssl.get());
}

TEST_F(HandshakeTest, GarbageIntoServerIsProtocolFailure) {
  auto s = ServerCtx();
  EXPECT_EQ(FeedServer(s.get(), "GET / HTTP/1.1\r\nHost: example\r\n\r\n"), TlsFailure::kProtocol);
  EXPECT_EQ(FeedServer(s.get(), "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), TlsFailure::kProtocol);
  // A TLS record header announcing a handshake, followed by junk.
  std::string junk("\x16\x03\x01\x00\x20", 5);
  junk.append(32, '\xff');
  EXPECT_EQ(FeedServer(s.get(), junk), TlsFailure::kProtocol);
  EXPECT_EQ(ERR_peek_error(), 0u);  // the classifier cleared the queue
}

}  // namespace
}  // namespace weft::ztunnel
