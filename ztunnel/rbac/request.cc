// Request-target normalisation for L7 authorization, as Istio's default does it.
//
// Istio's default meshConfig.pathNormalization is BASE: "This applies the normalize_path option
// on Envoy proxies, which follows RFC 3986 with extra normalization to convert backslashes to
// forward slashes" (istio.io, docs/ops/best-practices/security, "Customize your system on path
// normalization"; pilot sets HttpConnectionManager.normalize_path=true, merge_slashes=false and
// path_with_escaped_slashes_action=KEEP_UNCHANGED for BASE). Envoy's normalize_path runs
// Chromium's URL path canonicaliser (url::CanonicalizePath) on the part of :path before '?'
// (envoy source/common/http/path_utility.cc, PathTransformer::rfcNormalize). What that does,
// implemented here from its documented behaviour (Envoy's snapshot of it is
// source/common/chromium_url/url_canon_path.cc):
//   - '\' is a slash;
//   - "." and ".." segments are removed (RFC 3986 5.2.4), "%2e"/"%2E" counting as a dot;
//     ".." at the root stays at the root ("/../a" -> "/a"), it never fails;
//   - a percent-escape of an unreserved character (ALPHA, DIGIT, '-', '_', '~', and '.')
//     is decoded ("%41" -> "A"); every other escape is kept exactly as sent, hex case
//     included ("%2f" stays "%2f": BASE does not decode slashes);
//   - a '%' that starts no valid escape is kept as is ("%zz" stays), with the nested-escape
//     guard ("%%30%30" must not become "%00");
//   - characters that are not allowed in a path are percent-encoded (space, '"', '#', '<', '>',
//     '?', '^', '`', '{', '|', '}', controls, DEL, bytes >= 0x80);
//   - a NUL byte, raw or as "%00", makes the whole path invalid: Envoy answers 400.
//   - repeated slashes are NOT merged ("/a//b" stays; that is MERGE_SLASHES, not the default).
// Istio's own expectations for BASE are in istio/istio
// tests/integration/security/normalization_test.go; request_test.cc checks every one of them.
//
// Targets: Envoy answers 404 to a :path that does not start with '/' (conn_manager_impl.cc,
// "Currently we only support relative paths"), which includes OPTIONS "*"; its HTTP/1.1 codec
// turns an absolute-form target into :authority and :path first (RFC 9112 3.2.2: the target's
// authority replaces Host). The query and fragment are not part of the path attribute (Envoy's
// RBAC url_path matcher strips them).
#include "ztunnel/rbac/request.h"

#include <cstddef>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "common/status.h"

namespace weft::ztunnel {
namespace {

bool IsSlash(char c) {
  return c == '/' || c == '\\';
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A valid escape "%XY" at s[i] (s[i] itself is not checked, as in Chromium).
std::optional<unsigned char> DecodeEscape(std::string_view s, size_t i) {
  if (i + 3 > s.size()) return std::nullopt;
  int hi = HexValue(s[i + 1]), lo = HexValue(s[i + 2]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return static_cast<unsigned char>(hi * 16 + lo);
}

// Length of a dot at s[i]: 1 for '.', 3 for "%2e"/"%2E", 0 otherwise.
size_t DotLength(std::string_view s, size_t i) {
  if (i >= s.size()) return 0;
  if (s[i] == '.') return 1;
  if (s[i] == '%' && i + 3 <= s.size() && s[i + 1] == '2' && (s[i + 2] == 'e' || s[i + 2] == 'E')) {
    return 3;
  }
  return 0;
}

// Escaped characters that are decoded in canonical output ('.' is handled as a dot).
bool IsUnreserved(unsigned char c) {
  return absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '~';
}

// Characters that must be percent-encoded in canonical output.
bool MustEscape(unsigned char c) {
  if (c < 0x20 || c >= 0x7f) return true;
  switch (c) {
    case ' ':
    case '"':
    case '#':
    case '<':
    case '>':
    case '?':
    case '^':
    case '`':
    case '{':
    case '|':
    case '}':
      return true;
    default:
      return false;
  }
}

void AppendEscaped(unsigned char c, std::string* out) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out->push_back('%');
  out->push_back(kHex[c >> 4]);
  out->push_back(kHex[c & 0xf]);
}

enum class Dot { kNotSpecial, kCurrent, kUp };

// What a dot at `after_dot - dot_len` preceded by a slash means; *consumed is how many input
// characters after the dot belong to it.
Dot ClassifyDot(std::string_view s, size_t after_dot, size_t* consumed) {
  *consumed = 0;
  if (after_dot == s.size()) return Dot::kCurrent;
  if (IsSlash(s[after_dot])) {
    *consumed = 1;
    return Dot::kCurrent;
  }
  size_t second = DotLength(s, after_dot);
  if (second == 0) return Dot::kNotSpecial;
  size_t after_second = after_dot + second;
  if (after_second == s.size()) {
    *consumed = second;
    return Dot::kUp;
  }
  if (IsSlash(s[after_second])) {
    *consumed = second + 1;
    return Dot::kUp;
  }
  return Dot::kNotSpecial;
}

// `out` ends with '/': drop the last segment, never above the first slash.
void BackUpOneSegment(std::string* out) {
  size_t i = out->size() - 1;
  if (i == 0) return;
  --i;
  while (i > 0 && (*out)[i] != '/') --i;
  out->resize(i + 1);
}

// After decoding an escape within two characters of an earlier lone '%', make sure the output
// does not now read as a new escape ("%%30%30" -> "%%300" would decode later to NUL): the lone
// '%' becomes "%25". `next` is the next input index.
void GuardNestedEscape(std::string_view in, size_t next, size_t lone_percent, std::string* out) {
  const size_t length = out->size();
  const char last = out->back();
  const bool append_next = lone_percent + 2 == length;
  if (append_next) {
    if (next == in.size() || static_cast<unsigned char>(in[next]) >= 0x80) return;
    out->push_back(in[next]);
  }
  if (DecodeEscape(*out, lone_percent).has_value()) {
    if (!append_next) {
      const char second = (*out)[lone_percent + 1];
      out->push_back(second);
    }
    (*out)[lone_percent + 1] = '2';
    (*out)[lone_percent + 2] = '5';
    out->push_back(last);
  } else if (append_next) {
    out->resize(length);
  }
}

}  // namespace

std::optional<std::string> NormalizePathBase(std::string_view in) {
  std::string out;
  out.reserve(in.size() + 1);
  if (in.empty() || !IsSlash(in.front())) out.push_back('/');
  bool ok = true;
  std::optional<size_t> lone_percent;  // output index of the last '%' that began no escape
  for (size_t i = 0; i < in.size(); ++i) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (size_t dot = DotLength(in, i); dot > 0) {
      size_t consumed = 0;
      Dot kind = out.back() == '/' ? ClassifyDot(in, i + dot, &consumed) : Dot::kNotSpecial;
      if (kind == Dot::kNotSpecial) out.push_back('.');
      if (kind == Dot::kUp) BackUpOneSegment(&out);
      i += dot + consumed - 1;
    } else if (c == '\\') {
      out.push_back('/');
    } else if (c == '%') {
      std::optional<unsigned char> v = DecodeEscape(in, i);
      if (!v.has_value()) {
        lone_percent = out.size();
        out.push_back('%');
      } else if (IsUnreserved(*v)) {
        out.push_back(static_cast<char>(*v));
        i += 2;
        if (lone_percent.has_value() && *lone_percent + 3 >= out.size() &&
            *lone_percent + 1 < out.size()) {
          GuardNestedEscape(in, i + 1, *lone_percent, &out);
        }
      } else {
        out.append(in.substr(i, 3));
        if (*v == 0) ok = false;
        i += 2;
      }
    } else if (c == 0) {
      AppendEscaped(c, &out);
      ok = false;
    } else if (MustEscape(c)) {
      AppendEscaped(c, &out);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

RequestTarget NormalizeRequestTarget(std::string_view method, std::string_view target) {
  RequestTarget t;
  if (method == "CONNECT" && !target.starts_with('/')) {
    // authority-form (HTTP/1.1) or no :path (HTTP/2): there is no path to match.
    t.kind = RequestTarget::Kind::kNoPath;
    return t;
  }
  std::string_view rest = target;
  if (!target.starts_with('/')) {
    std::string_view scheme_end = "://";
    size_t colon = target.find(scheme_end);
    std::string_view scheme = colon == std::string_view::npos ? "" : target.substr(0, colon);
    if (!absl::EqualsIgnoreCase(Av(scheme), "http") &&
        !absl::EqualsIgnoreCase(Av(scheme), "https")) {
      t.error = target == "*" ? "the request-target \"*\" is not a path"
                              : "the request-target is neither origin-form nor an http(s) URL";
      return t;
    }
    rest = target.substr(colon + scheme_end.size());
    size_t auth_end = rest.find_first_of("/?#");
    std::string_view authority = rest.substr(0, auth_end);
    if (authority.empty() || authority.find('@') != std::string_view::npos) {
      t.error = "the absolute-form request-target has no authority or carries userinfo";
      return t;
    }
    t.authority = std::string(authority);
    rest = auth_end == std::string_view::npos ? std::string_view() : rest.substr(auth_end);
  }
  size_t path_end = rest.find_first_of("?#");
  std::string_view path = rest.substr(0, path_end);
  if (path_end != std::string_view::npos && rest[path_end] == '?') {
    std::string_view query = rest.substr(path_end);
    t.query = std::string(query.substr(0, query.find('#')));
  }
  std::optional<std::string> normalized = NormalizePathBase(path);
  if (!normalized.has_value()) {
    t.error = "the path contains a NUL byte, which path normalisation rejects";
    return t;
  }
  t.kind = RequestTarget::Kind::kPath;
  t.path = std::move(*normalized);
  return t;
}

std::string_view AuthorityHost(std::string_view authority) {
  size_t colon = authority.rfind(':');
  if (colon == std::string_view::npos) return authority;
  if (authority.starts_with('[')) {
    // IP literal: the port follows "]".
    if (colon == 0 || authority[colon - 1] != ']') return authority;
  } else if (authority.find(':') != colon) {
    return authority;  // more than one ':' without brackets: not host:port
  }
  std::string_view port = authority.substr(colon + 1);
  for (char c : port) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) return authority;
  }
  return authority.substr(0, colon);
}

}  // namespace weft::ztunnel
