// Finding a Kubernetes pod's network namespace from its UID, as the agent does in a cluster
// (local mode gives the path directly). The kubelet puts every container of a pod in a cgroup
// whose path names the pod UID:
//   cgroupfs driver:  .../kubepods/<qos>/pod<uid>/<container>
//   systemd driver:   .../kubepods-<qos>-pod<uid with '-' as '_'>.slice/cri-...scope
// so a process whose /proc/<pid>/cgroup mentions the pod is one of its containers (or its
// sandbox), and /proc/<pid>/ns/net is the pod's netns.
#pragma once

#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "common/unique_fd.h"

namespace weft::agent {

struct PodNetnsOptions {
  std::string proc_root = "/proc";  // tests: a directory laid out like /proc
};

// Opens the netns of the pod `pod_uid` (any process of the pod). Errors: InvalidArgument for
// an empty or malformed UID; NotFound when no process of the pod runs (not started yet, or
// already gone); FailedPrecondition when the pod uses the host's network namespace
// (hostNetwork pods are never enrolled; "host" = the agent's own netns, which is the host's in a
// cluster and the node's in local mode).
absl::StatusOr<UniqueFd> FindPodNetns(std::string_view pod_uid, const PodNetnsOptions& opts = {});

// Whether `uid` has the form of a Kubernetes UID (hex digits and '-', at most 64 characters).
bool IsKubernetesUid(std::string_view uid);

// Whether a /proc/<pid>/cgroup text places the process in pod `pod_uid` (either driver).
bool CgroupTextMentionsPod(std::string_view cgroup_text, std::string_view pod_uid);

}  // namespace weft::agent
