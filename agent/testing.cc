#include "agent/testing.h"

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "common/netns.h"

namespace weft::agent::testing {

FakeZtunnel::FakeZtunnel(std::string path, std::string refused_uid)
    : refused_uid_(std::move(refused_uid)) {
  ztunnel::HandoffServer::Callbacks cb;
  cb.add = [this](const weft::inpod::v1::AddWorkload& add, UniqueFd netns) -> absl::Status {
    if (refuse_.load() && !refused_uid_.empty() && add.uid() == refused_uid_) {
      ++refusals_;
      return absl::ResourceExhaustedError(absl::StrCat("no room for ", refused_uid_, " yet"));
    }
    auto c = NetnsCookie(netns.get());
    if (!c.ok()) return c.status();
    std::lock_guard<std::mutex> lock(mu_);
    adds_.push_back({add, *c});
    return absl::OkStatus();
  };
  cb.del = [this](const std::string& uid) {
    std::lock_guard<std::mutex> lock(mu_);
    dels_.push_back(uid);
  };
  server_ = std::make_unique<ztunnel::HandoffServer>(std::move(path), cb);
  absl::Status st = server_->Start();
  EXPECT_TRUE(st.ok()) << st;
}

std::vector<FakeZtunnel::Add> FakeZtunnel::adds() {
  std::lock_guard<std::mutex> lock(mu_);
  return adds_;
}

std::vector<std::string> FakeZtunnel::dels() {
  std::lock_guard<std::mutex> lock(mu_);
  return dels_;
}

}  // namespace weft::agent::testing
