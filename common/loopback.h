// A connected TCP pair on loopback, for self-tests (bpf::SelfTestRelay) and tests.
#pragma once

#include "absl/status/status.h"
#include "common/unique_fd.h"

namespace weft {

// A connected TCP pair on 127.0.0.1 in the caller's netns (port picked by the kernel): out[0]
// the connecting side, out[1] the accepted one; both blocking.
absl::Status LoopbackTcpPair(UniqueFd out[2]);

}  // namespace weft
