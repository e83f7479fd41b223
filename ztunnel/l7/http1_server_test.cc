#include "ztunnel/l7/http1_server.h"

#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace weft::ztunnel::l7 {
namespace {

using State = Http1ServerConnection::State;

// One connection with a gate that denies every request whose path starts with "/deny", and
// everything the connection hands out recorded.
struct Harness {
  explicit Harness(Http1Limits limits = {})
      : conn(
            limits,
            [this](HttpRequestAttributes& r) -> std::optional<LocalReply> {
              gated.push_back(r);
              if (absl::StartsWith(r.path, "/deny")) return LocalReply{};
              if (r.path == "/a/../b") r.path = "/b";  // a gate that normalises
              if (absl::StartsWith(r.path, "/trace")) r.add_headers = {{"traceparent", "t"}};
              return std::nullopt;
            },
            [this](const Exchange& e) { done.push_back(e); }) {}

  void Client(std::string_view bytes) {
    conn.FromClient(bytes, [this](std::string_view b) { server.append(b); });
  }
  // Feeds one byte at a time (a slow client, or a head split over many reads).
  void ClientByBytes(std::string_view bytes) {
    for (char c : bytes) Client(std::string_view(&c, 1));
  }
  void Server(std::string_view bytes) {
    conn.FromServer(bytes, [this](std::string_view b) { server.append(b); });
  }

  Http1ServerConnection conn;
  std::string server;  // what reached the server
  std::vector<HttpRequestAttributes> gated;
  std::vector<Exchange> done;
};

const std::string kGet = "GET /a?x=1 HTTP/1.1\r\nHost: svc:80\r\nX-Trace: t1\r\n\r\n";
const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

TEST(Http1ServerTest, AllowedRequestPassesByteForByteAndIsReportedWithItsResponse) {
  Harness h;
  h.Client(kGet);
  EXPECT_EQ(h.server, kGet);
  ASSERT_EQ(h.gated.size(), 1u);
  EXPECT_EQ(h.gated[0].method, "GET");
  EXPECT_EQ(h.gated[0].path, "/a?x=1");
  EXPECT_EQ(h.gated[0].authority, "svc:80");
  ASSERT_EQ(h.gated[0].headers.size(), 2u);
  EXPECT_EQ(h.gated[0].headers[1], (std::pair<std::string, std::string>{"x-trace", "t1"}));
  EXPECT_TRUE(h.done.empty()) << "reported before its response";
  h.Server(kOk);
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 200);
  EXPECT_FALSE(h.done[0].local_reply);
  EXPECT_EQ(h.done[0].request_bytes, kGet.size());
  EXPECT_EQ(h.done[0].response_bytes, kOk.size());
  EXPECT_EQ(h.conn.state(), State::kHttp);
  EXPECT_TRUE(h.conn.TakeLocalReply().empty());
}

TEST(Http1ServerTest, HeadTimeoutAnswers408OnlyWhenNoResponseIsInProgress) {
  Harness h;
  EXPECT_TRUE(h.conn.Idle());
  h.conn.HeadTimedOut();  // no head under way: nothing happens
  EXPECT_EQ(h.conn.state(), State::kHttp);
  h.ClientByBytes("GET /slow HTTP/1.1\r\nHo");
  EXPECT_TRUE(h.conn.InHead());
  EXPECT_FALSE(h.conn.Idle());
  h.conn.HeadTimedOut();
  EXPECT_EQ(h.conn.state(), State::kClosing);
  std::string reply = h.conn.TakeLocalReply();
  EXPECT_TRUE(absl::StartsWith(reply, "HTTP/1.1 408 Request Timeout\r\n")) << reply;
  EXPECT_TRUE(absl::EndsWith(reply, "\r\n\r\nrequest timeout")) << reply;
  EXPECT_EQ(h.server, "") << "an incomplete head never reaches the server";
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 408);
  EXPECT_TRUE(h.done[0].local_reply);

  // A response still owed to an earlier request: no reply can go between its bytes.
  Harness p;
  p.Client(kGet);
  EXPECT_FALSE(p.conn.Idle()) << "a request in flight";
  p.Client("GET /next HTTP/1.1\r\n");
  p.conn.HeadTimedOut();
  EXPECT_EQ(p.conn.state(), State::kBroken);
  EXPECT_TRUE(p.conn.TakeLocalReply().empty());
}

TEST(Http1ServerTest, RefusalsOfTheCodecAreMarkedAsSuchAndGateRepliesAreNot) {
  Harness denied;
  denied.Client("GET /deny HTTP/1.1\r\nHost: svc\r\n\r\n");
  ASSERT_EQ(denied.done.size(), 1u);
  EXPECT_TRUE(denied.done[0].local_reply);
  EXPECT_FALSE(denied.done[0].refused_by_codec);
  for (const char* bad : {"GET / HTTP/1.1\r\n\r\n",  // no Host
                          "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                          "GET / HTTP/1.1\r\nHost: a\r\nBad Field\r\n\r\n"}) {
    Harness h;
    h.Client(bad);
    ASSERT_EQ(h.done.size(), 1u) << bad;
    EXPECT_EQ(h.done[0].status, 400) << bad;
    EXPECT_TRUE(h.done[0].refused_by_codec) << bad;
  }
  Harness big(Http1Limits{.max_head_bytes = 64, .max_fields = 100});
  big.Client("GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(100, 'x') + "\r\n\r\n");
  ASSERT_EQ(big.done.size(), 1u);
  EXPECT_EQ(big.done[0].status, 431);
  EXPECT_TRUE(big.done[0].refused_by_codec);
}

TEST(Http1ServerTest, IdleOnlyBetweenRequests) {
  Harness h;
  h.Client("POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\n\r\nab");
  EXPECT_FALSE(h.conn.Idle()) << "body under way";
  h.Client("cd");
  h.Server(kOk);
  EXPECT_TRUE(h.conn.Idle());
}

TEST(Http1ServerTest, TargetChangedByTheGateRewritesOnlyTheRequestLine) {
  Harness h;
  h.Client("GET /a/../b HTTP/1.1\r\nHost: svc\r\n\r\n");
  EXPECT_EQ(h.server, "GET /b HTTP/1.1\r\nHost: svc\r\n\r\n");
}

TEST(Http1ServerTest, FieldsTheGateAddsEndTheForwardedHead) {
  Harness h;
  h.Client(
      "GET /trace HTTP/1.1\r\nHost: svc\r\n\r\nGET /trace/../a/../b HTTP/1.1\r\nHost: svc\r\n\r\n");
  EXPECT_EQ(h.server,
            "GET /trace HTTP/1.1\r\nHost: svc\r\ntraceparent: t\r\n\r\n"
            "GET /trace/../a/../b HTTP/1.1\r\nHost: svc\r\ntraceparent: t\r\n\r\n");
  h.Client(
      "GET /trace HTTP/1.1\r\nHost: svc\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "HTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n");
  EXPECT_TRUE(
      absl::EndsWith(h.server, "GET /trace HTTP/1.1\r\nhost: svc\r\ntraceparent: t\r\n\r\n"))
      << h.server;
}

TEST(Http1ServerTest, DeniedRequestGetsEnvoys403AndNothingReachesTheServer) {
  Harness h;
  h.Client("POST /deny/orders HTTP/1.1\r\nHost: store\r\nContent-Length: 5\r\n\r\nhello");
  EXPECT_EQ(h.server, "");
  std::string reply = h.conn.TakeLocalReply();
  EXPECT_TRUE(absl::StartsWith(reply, "HTTP/1.1 403 Forbidden\r\n")) << reply;
  EXPECT_TRUE(absl::EndsWith(reply, "\r\n\r\nRBAC: access denied")) << reply;
  EXPECT_TRUE(absl::StrContains(reply, "connection: close")) << reply;
  EXPECT_EQ(h.conn.state(), State::kClosing);
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 403);
  EXPECT_TRUE(h.done[0].local_reply);
  h.Client("GET / HTTP/1.1\r\nHost: store\r\n\r\n");
  EXPECT_EQ(h.server, "") << "nothing passes after a local reply";
}

TEST(Http1ServerTest, PipelinedDenialWaitsForTheEarlierResponse) {
  Harness h;
  h.Client(absl::StrCat(kGet, "GET /deny HTTP/1.1\r\nHost: svc\r\n\r\n", kGet));
  EXPECT_EQ(h.server, kGet) << "only the first request passes";
  EXPECT_EQ(h.gated.size(), 2u) << "the third is never looked at";
  EXPECT_TRUE(h.conn.TakeLocalReply().empty()) << "the 403 would overtake the 200";
  h.Server(kOk.substr(0, 10));
  EXPECT_TRUE(h.conn.TakeLocalReply().empty());
  h.Server(kOk.substr(10));
  EXPECT_TRUE(absl::StartsWith(h.conn.TakeLocalReply(), "HTTP/1.1 403"));
  ASSERT_EQ(h.done.size(), 2u);
  EXPECT_EQ(h.done[0].status, 403) << "the denial is reported when decided";
  EXPECT_EQ(h.done[1].status, 200);
}

TEST(Http1ServerTest, HeadSplitIntoSingleBytesIsGatedOnceWhenComplete) {
  Harness h;
  std::string head(kGet);
  h.ClientByBytes(head.substr(0, head.size() - 1));
  EXPECT_EQ(h.server, "");
  EXPECT_TRUE(h.gated.empty());
  EXPECT_TRUE(h.conn.InHead());
  h.Client(head.substr(head.size() - 1));
  EXPECT_EQ(h.server, head);
  EXPECT_EQ(h.gated.size(), 1u);
  EXPECT_FALSE(h.conn.InHead());
}

TEST(Http1ServerTest, ChunkedBodyWithTrailersStreamsThroughUnchanged) {
  Harness h;
  std::string req =
      "POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-checksum: 1\r\n\r\n";
  h.Client(req.substr(0, 70));
  // Body bytes pass as they arrive; only a chunk delimiter still incomplete waits.
  EXPECT_TRUE(absl::StartsWith(req, h.server));
  EXPECT_TRUE(absl::EndsWith(h.server, "hello")) << h.server;
  h.ClientByBytes(req.substr(70));
  EXPECT_EQ(h.server, req);
  h.Client(kGet);  // the next request on the connection is parsed as one
  EXPECT_EQ(h.gated.size(), 2u);
  h.Server(absl::StrCat(kOk, kOk));
  ASSERT_EQ(h.done.size(), 2u);
  EXPECT_EQ(h.done[0].request_bytes, req.size());
}

// RFC 9112's framing rules: a request whose body length is ambiguous is refused with 400 and
// never reaches the server (request smuggling).
TEST(Http1ServerTest, AmbiguousFramingIsRefusedWith400) {
  for (std::string_view req : {
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 4\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: "
           "chunked\r\n\r\n",
           "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
           "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
           "GET / HTTP/1.1\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
           "GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
           "GET / HTTP/1.1\nHost: a\n\n",
           "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
       }) {
    Harness h;
    h.Client(req);
    SCOPED_TRACE(req);
    EXPECT_EQ(h.server, "");
    std::string reply = h.conn.TakeLocalReply();
    // Without a reply, the connection is broken (a request line the parser cannot read as
    // HTTP/1.x) or still waiting for the rest of an incomplete head: never forwarded.
    if (reply.empty()) {
      EXPECT_TRUE(h.conn.InHead() || h.conn.state() == State::kBroken);
      continue;
    }
    EXPECT_TRUE(absl::StartsWith(reply, "HTTP/1.1 400 Bad Request\r\n")) << reply;
    EXPECT_EQ(h.conn.state(), State::kClosing);
    ASSERT_EQ(h.done.size(), 1u);
    EXPECT_EQ(h.done[0].status, 400);
    EXPECT_FALSE(h.done[0].reason.empty());
  }
}

TEST(Http1ServerTest, OversizedHeadAndTooManyFieldsGet431) {
  Http1Limits limits;
  limits.max_head_bytes = 1024;
  limits.max_fields = 10;
  {
    Harness h(limits);
    h.Client(absl::StrCat("GET / HTTP/1.1\r\nHost: a\r\nX-Big: ", std::string(2000, 'a')));
    EXPECT_TRUE(absl::StartsWith(h.conn.TakeLocalReply(), "HTTP/1.1 431 "));
    EXPECT_EQ(h.server, "");
  }
  {
    Harness h(limits);
    std::string req = "GET / HTTP/1.1\r\nHost: a\r\n";
    for (int i = 0; i < 11; ++i) absl::StrAppend(&req, "X-", i, ": v\r\n");
    h.Client(absl::StrCat(req, "\r\n"));
    EXPECT_TRUE(absl::StartsWith(h.conn.TakeLocalReply(), "HTTP/1.1 431 "));
    ASSERT_EQ(h.done.size(), 1u);
    EXPECT_EQ(h.done[0].reason, "too many header fields");
  }
}

TEST(Http1ServerTest, Http2PriorKnowledgeIsNotHttp1AndBreaksTheConnection) {
  Harness h;
  h.Client("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  EXPECT_EQ(h.server, "");
  EXPECT_EQ(h.conn.state(), State::kBroken);
  EXPECT_TRUE(absl::StrContains(h.conn.error(), "not HTTP/1.x")) << h.conn.error();
}

TEST(Http1ServerTest, WebSocketUpgradeSwitchesToAByteRelayAfter101) {
  Harness h;
  std::string req =
      "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
      "Sec-WebSocket-Key: x\r\nSec-WebSocket-Version: 13\r\n\r\n";
  h.Client(absl::StrCat(req, "\x81\x85early"));
  EXPECT_EQ(h.server, req) << "bytes after the upgrade request wait for the answer";
  EXPECT_EQ(h.conn.state(), State::kAwaitSwitch);
  h.Server("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
  EXPECT_EQ(h.conn.state(), State::kPassthrough);
  EXPECT_EQ(h.server, absl::StrCat(req, "\x81\x85early"));
  h.Client("GET /deny HTTP/1.1\r\n\r\n");  // just bytes of the new protocol now
  EXPECT_TRUE(absl::EndsWith(h.server, "GET /deny HTTP/1.1\r\n\r\n"));
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 101);
}

TEST(Http1ServerTest, DeclinedUpgradeResumesHttpParsingOfTheHeldBytes) {
  Harness h;
  std::string req = "GET /chat HTTP/1.1\r\nHost: a\r\nConnection: upgrade\r\nUpgrade: foo\r\n\r\n";
  h.Client(absl::StrCat(req, "GET /deny HTTP/1.1\r\nHost: a\r\n\r\n"));
  EXPECT_EQ(h.server, req);
  h.Server(kOk);
  EXPECT_EQ(h.conn.state(), State::kClosing) << "the held request was parsed and denied";
  EXPECT_EQ(h.server, req);
  EXPECT_TRUE(absl::StartsWith(h.conn.TakeLocalReply(), "HTTP/1.1 403"));
}

TEST(Http1ServerTest, H2cUpgradeOfferIsRemovedSoTheServerStaysOnHttp1) {
  Harness h;
  h.Client(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings, keep-alive\r\n"
      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nAccept: */*\r\n\r\n");
  EXPECT_EQ(h.server, "GET / HTTP/1.1\r\nhost: a\r\nconnection: keep-alive\r\naccept: */*\r\n\r\n");
  EXPECT_EQ(h.conn.state(), State::kHttp);
  h.Server(kOk);
  EXPECT_EQ(h.done.size(), 1u);
}

const std::string kH2cOffer =
    "GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";

TEST(Http1ServerTest, AnAcceptedH2cOfferIsHandedOverWithTheBytesAfterIt) {
  Harness h;
  h.conn.AcceptH2cUpgrade();
  h.Client(absl::StrCat(kH2cOffer, "PRI * HTTP/2.0"));
  EXPECT_EQ(h.conn.state(), State::kH2cUpgrade);
  EXPECT_EQ(h.server, "") << "the server is never offered the upgrade";
  EXPECT_TRUE(h.gated.empty()) << "the HTTP/2 codec gates it as stream 1";
  h.Client("\r\n\r\nSM");
  auto up = h.conn.TakeH2cUpgrade();
  ASSERT_TRUE(up.has_value());
  EXPECT_EQ(up->request.method, "GET");
  EXPECT_EQ(up->request.path, "/up");
  EXPECT_EQ(up->request.authority, "a");
  EXPECT_EQ(up->head_bytes, kH2cOffer.size());
  EXPECT_EQ(up->settings.size(), 18u) << "three SETTINGS entries, base64url-decoded";
  EXPECT_EQ(up->rest, "PRI * HTTP/2.0\r\n\r\nSM");
  EXPECT_FALSE(h.conn.TakeH2cUpgrade().has_value()) << "once";
}

TEST(Http1ServerTest, AnH2cOfferThatDoesNotQualifyIsStrippedEvenWhenAccepted) {
  const std::string with_body =
      "POST /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\nContent-Length: 2\r\n\r\nhi";
  const std::string bad_settings =
      "GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\n"
      "Upgrade: h2c\r\nHTTP2-Settings: AAMA\r\n\r\n";  // 3 bytes: not whole entries
  const std::string no_connection_token =
      "GET /up HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\n"
      "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n";
  for (const std::string& req : {with_body, bad_settings, no_connection_token}) {
    Harness h;
    h.conn.AcceptH2cUpgrade();
    h.Client(req);
    EXPECT_EQ(h.conn.state(), State::kHttp) << req;
    EXPECT_FALSE(absl::StrContains(h.server, "h2c")) << h.server;
    EXPECT_EQ(h.gated.size(), 1u) << req;
  }
  // Pipelined behind a request still waiting for its response: stays HTTP/1.1 too.
  Harness h;
  h.conn.AcceptH2cUpgrade();
  h.Client(absl::StrCat(kGet, kH2cOffer));
  EXPECT_EQ(h.conn.state(), State::kHttp);
  EXPECT_EQ(h.gated.size(), 2u);
}

TEST(Http1ServerTest, HeadResponseHasNoBodyWhateverItsLengthSays) {
  Harness h;
  h.Client("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n");
  h.Client(kGet);
  h.Server(absl::StrCat("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", kOk));
  ASSERT_EQ(h.done.size(), 2u);
  EXPECT_EQ(h.done[1].response_bytes, kOk.size());
}

TEST(Http1ServerTest, ExpectContinueInterimResponseDoesNotEndTheExchange) {
  Harness h;
  h.Client("PUT /f HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  h.Server("HTTP/1.1 100 Continue\r\n\r\n");
  EXPECT_TRUE(h.done.empty());
  h.Client("data");
  h.Server("HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 201);
  EXPECT_TRUE(absl::EndsWith(h.server, "\r\n\r\ndata"));
}

TEST(Http1ServerTest, ResponseDelimitedByCloseEndsAtServerEof) {
  Harness h;
  h.Client("GET / HTTP/1.0\r\n\r\n");
  h.Server("HTTP/1.0 200 OK\r\n\r\nuntil the end");
  EXPECT_TRUE(h.done.empty());
  h.conn.ServerEof();
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 200);
}

TEST(Http1ServerTest, UnansweredRequestsAreReportedWithoutStatusAtTheEnd) {
  Harness h;
  h.Client(kGet);
  h.conn.Finish();
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 0);
  EXPECT_EQ(h.done[0].ended, Exchange::End::kClientEnded) << "the client left first: DC";
}

// Which side ended first decides Envoy's response flag (UC or DC) in the request metrics.
TEST(Http1ServerTest, ExchangesRecordWhichSideCutThemShort) {
  Harness h;
  h.Client(kGet);
  h.Server(kOk);
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].ended, Exchange::End::kComplete);
  h.Client(kGet);
  h.conn.ServerEof();  // the server closed without answering
  ASSERT_EQ(h.done.size(), 2u);
  EXPECT_EQ(h.done[1].status, 0);
  EXPECT_EQ(h.done[1].ended, Exchange::End::kServerEnded);
  h.conn.Finish();
  EXPECT_EQ(h.done.size(), 2u) << "reported once";

  Harness r;  // reset in the middle of a close-delimited response: cut short, with its status
  r.Client("GET / HTTP/1.0\r\n\r\n");
  r.Server("HTTP/1.0 200 OK\r\n\r\npartial");
  r.conn.ServerReset();
  ASSERT_EQ(r.done.size(), 1u);
  EXPECT_EQ(r.done[0].status, 200);
  EXPECT_EQ(r.done[0].ended, Exchange::End::kServerEnded);

  Harness c;  // the client leaves in the middle of a response
  c.Client(kGet);
  c.Server("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n12");
  c.conn.Finish();
  ASSERT_EQ(c.done.size(), 1u);
  EXPECT_EQ(c.done[0].status, 200);
  EXPECT_EQ(c.done[0].ended, Exchange::End::kClientEnded);
}

TEST(Http1ServerTest, LocalRepliesReportTheirOwnBytes) {
  Harness h;
  h.Client("GET /deny HTTP/1.1\r\nHost: a\r\n\r\n");
  std::string reply = h.conn.TakeLocalReply();
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 403);
  EXPECT_EQ(h.done[0].ended, Exchange::End::kComplete);
  EXPECT_EQ(h.done[0].response_bytes, reply.size());
  Harness bad;
  bad.Client("GET / HTTP/1.1\r\n\r\n");  // no Host: 400
  std::string r400 = bad.conn.TakeLocalReply();
  ASSERT_EQ(bad.done.size(), 1u);
  EXPECT_EQ(bad.done[0].status, 400);
  EXPECT_EQ(bad.done[0].response_bytes, r400.size());
  EXPECT_FALSE(r400.empty());
}

TEST(Http1ServerTest, ConnectSwitchesOn2xx) {
  Harness h;
  const std::string req = "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n";
  h.Client(req + std::string("\x00\x01", 2));
  EXPECT_EQ(h.conn.state(), State::kAwaitSwitch);
  h.Server(std::string_view("HTTP/1.1 200 OK\r\n\r\n\x00\x02", 21));
  EXPECT_EQ(h.conn.state(), State::kPassthrough);
  EXPECT_TRUE(absl::EndsWith(h.server, absl::string_view("\r\n\r\n\x00\x01", 6)));
}

TEST(Http1ServerTest, EarlyResponseBeforeTheBodyEndsIsHandled) {
  Harness h;
  h.Client("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n12345");
  h.Server("HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n\r\n");
  ASSERT_EQ(h.done.size(), 1u);
  EXPECT_EQ(h.done[0].status, 413);
  h.Client("67890");
  EXPECT_TRUE(absl::EndsWith(h.server, "1234567890"));
}

TEST(Http1ServerTest, ResponseToNoRequestOrGarbageResponseBreaksTheConnection) {
  {
    Harness h;
    h.Server(kOk);
    EXPECT_EQ(h.conn.state(), State::kBroken);
  }
  {
    Harness h;
    h.Client(kGet);
    h.Server("SSH-2.0-OpenSSH\r\n\r\n");
    EXPECT_EQ(h.conn.state(), State::kBroken);
  }
}

// fuzz.http1_server: after the last chunk, a trailer's first bytes (fewer than 5) made Beast's
// chunk parser assert (and read past the buffer in a release build).
TEST(Http1ServerTest, ShortRemainderAfterTheLastChunkWaitsForMore) {
  Harness h;
  h.Client("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nhell");
  EXPECT_EQ(h.conn.state(), State::kHttp);
  h.Client("o: x\r\n\r\n");
  EXPECT_TRUE(absl::EndsWith(h.server, "0\r\nhello: x\r\n\r\n")) << h.server;
  h.Client("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_EQ(h.gated.size(), 2u);
  Harness g;
  g.Client("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nhell");
  g.Client("HTTP/\r\n\r\n");  // not a trailer field: refused, never a crash
  EXPECT_NE(g.conn.state(), State::kHttp);
}

TEST(Http1ServerTest, MalformedChunkAfterTheHeadBreaksTheConnection) {
  Harness h;
  h.Client("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n");
  EXPECT_EQ(h.conn.state(), State::kBroken);
  EXPECT_TRUE(absl::StrContains(h.conn.error(), "malformed request body")) << h.conn.error();
}

}  // namespace
}  // namespace weft::ztunnel::l7
