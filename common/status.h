// Small status helpers: Debian's abseil (20220623) has no RETURN_IF_ERROR/ASSIGN_OR_RETURN.
#pragma once

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

#define WEFT_CONCAT_INNER_(a, b) a##b
#define WEFT_CONCAT_(a, b) WEFT_CONCAT_INNER_(a, b)

// Returns the status from the enclosing function if `expr` is not OK.
#define WEFT_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::absl::Status weft_status_ = (expr);        \
    if (!weft_status_.ok()) return weft_status_; \
  } while (0)

// `WEFT_ASSIGN_OR_RETURN(auto x, f());` declares/assigns x or returns f()'s error.
#define WEFT_ASSIGN_OR_RETURN(lhs, expr) \
  WEFT_ASSIGN_OR_RETURN_IMPL_(WEFT_CONCAT_(weft_statusor_, __LINE__), lhs, expr)
#define WEFT_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()

// "Cannot happen" invariants crash loudly (Envoy's rule); input errors never use this.
#define WEFT_CHECK(cond)                                                                  \
  do {                                                                                    \
    if (!(cond)) {                                                                        \
      std::fprintf(stderr, "%s:%d: invariant violated: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                       \
    }                                                                                     \
  } while (0)

namespace weft {
// errno-carrying error: "what: strerror(errno)" with a matching absl code.
absl::Status ErrnoError(int err, std::string_view what);

// `st` with "context: " before its message and the same code (OK stays OK): says what the
// caller was doing, e.g. WithContext(ReadFile(p).status(), "reading the kubeconfig").
inline absl::Status WithContext(const absl::Status& st, std::string_view context) {
  if (st.ok()) return st;
  return absl::Status(st.code(), absl::StrCat(absl::string_view(context.data(), context.size()),
                                              ": ", st.message()));
}
}  // namespace weft

namespace weft {
// Debian's abseil is built with ABSL_OPTION_USE_STD_STRING_VIEW=0: absl::string_view is its own
// type and std::string_view does not convert to it. Wrap std::string_view arguments to absl
// string functions (StrCat, StrSplit, SimpleAtoi, ...) with Av().
inline absl::string_view Av(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}
}  // namespace weft
