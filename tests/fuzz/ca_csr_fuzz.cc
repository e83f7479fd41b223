// libFuzzer target for certificate signing requests at weftd's CA (what a node sends in
// weft.ca.v1 CreateCertificate after authentication): Issuer::Issue parses the requested
// identity, the CSR PEM, checks key type/size, self-signature and SPIFFE SAN, and signs.
//
// Input: "<requested identity>\n<ttl seconds>\n<CSR>". The CSR is used as is when it starts
// with "-----BEGIN"; otherwise it is taken as DER and wrapped in PEM first (what a node would
// send), so mutations reach the DER parser instead of breaking the base64.
// Oracle: a CSR is either rejected with InvalidArgument, or the issued leaf verifies against the
// CA's root and names exactly the requested identity.
#include <openssl/evp.h>

#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/tls.h"
#include "controlplane/ca/ca.h"

namespace {

constexpr size_t kMaxInput = 16 * 1024;  // a P-384/RSA-4096 CSR is ~2 KiB of PEM

const weft::cp::Issuer& TheIssuer() {
  static const weft::cp::Issuer* issuer = [] {
    auto ca = weft::tls::CertificateAuthority::CreateRoot("fuzz", std::chrono::hours(24 * 365));
    WEFT_CHECK(ca.ok());
    return new weft::cp::Issuer(std::move(*ca), weft::cp::IssuerOptions{});
  }();
  return *issuer;
}

std::string_view NextLine(std::string_view& in) {
  size_t nl = in.find('\n');
  std::string_view line = in.substr(0, nl);
  in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
  return line;
}

std::string DerToPem(std::string_view der) {
  std::string b64(4 * ((der.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(b64.data()),
                          reinterpret_cast<const unsigned char*>(der.data()),
                          static_cast<int>(der.size()));
  b64.resize(static_cast<size_t>(n));
  std::string pem = "-----BEGIN CERTIFICATE REQUEST-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) pem += b64.substr(i, 64) + "\n";
  return pem + "-----END CERTIFICATE REQUEST-----\n";
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  const weft::cp::Issuer& issuer = TheIssuer();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::string_view identity = NextLine(in);
  int64_t ttl_s = 0;
  std::string_view ttl_text = NextLine(in);
  std::from_chars(ttl_text.data(), ttl_text.data() + ttl_text.size(), ttl_s);
  std::string csr = in.starts_with("-----BEGIN") ? std::string(in) : DerToPem(in);

  auto chain = issuer.Issue(csr, identity, std::chrono::seconds(ttl_s));
  if (!chain.ok()) {
    WEFT_CHECK(chain.status().code() == absl::StatusCode::kInvalidArgument);
    return 0;
  }
  // Issued: the leaf must chain to our root and carry exactly the requested identity.
  WEFT_CHECK(chain->size() >= 2);
  auto leaf = weft::tls::CertFromPem((*chain)[0]);
  WEFT_CHECK(leaf.ok());
  auto roots = weft::tls::CertsFromPem(issuer.root_pem());
  WEFT_CHECK(roots.ok());
  auto verified = weft::tls::VerifyChain(leaf->get(), {}, *roots);
  if (!verified.ok()) {
    std::fprintf(stderr, "issued leaf does not verify: %s\n", verified.ToString().c_str());
    std::abort();
  }
  auto got = weft::tls::CertSpiffeId(leaf->get());
  WEFT_CHECK(got.ok());
  auto want = weft::SpiffeId::Parse(identity);
  WEFT_CHECK(want.ok() && *got == *want);
  return 0;
}
