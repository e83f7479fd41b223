#include "agent/pod_netns.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <cctype>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "common/file.h"
#include "common/status.h"

namespace weft::agent {
namespace {

// True if `component` (one path element) is the pod's cgroup under either driver.
bool ComponentIsPod(std::string_view component, std::string_view uid,
                    std::string_view uid_underscored) {
  if (component == absl::StrCat("pod", Av(uid))) return true;  // cgroupfs
  // systemd: kubepods[-<qos>]-pod<uid_>.slice
  std::string suffix = absl::StrCat("pod", Av(uid_underscored), ".slice");
  return component.size() > suffix.size() &&
         component.substr(component.size() - suffix.size()) == suffix &&
         component.substr(0, 8) == "kubepods";
}

}  // namespace

bool IsKubernetesUid(std::string_view uid) {
  if (uid.empty() || uid.size() > 64) return false;
  for (char c : uid)
    if (!std::isxdigit(static_cast<unsigned char>(c)) && c != '-') return false;
  return true;
}

bool CgroupTextMentionsPod(std::string_view cgroup_text, std::string_view pod_uid) {
  std::string underscored = absl::StrReplaceAll(Av(pod_uid), {{"-", "_"}});
  for (absl::string_view line : absl::StrSplit(Av(cgroup_text), '\n')) {
    // hierarchy-id:controllers:path
    size_t c2 = line.find(':', line.find(':') + 1);
    if (c2 == absl::string_view::npos) continue;
    for (absl::string_view comp : absl::StrSplit(line.substr(c2 + 1), '/')) {
      if (ComponentIsPod(std::string_view(comp.data(), comp.size()), pod_uid, underscored))
        return true;
    }
  }
  return false;
}

absl::StatusOr<UniqueFd> FindPodNetns(std::string_view pod_uid, const PodNetnsOptions& opts) {
  if (!IsKubernetesUid(pod_uid)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pod UID \"", Av(pod_uid), "\" is not a Kubernetes UID (hex digits and '-')"));
  }
  DIR* d = ::opendir(opts.proc_root.c_str());
  if (!d) {
    return absl::UnavailableError(
        absl::StrCat("cannot list ", opts.proc_root, ": ", std::strerror(errno)));
  }
  struct stat host;
  // The agent runs in the host network namespace (hostNetwork DaemonSet; local mode: the
  // node netns): a pod in that same netns is a hostNetwork pod.
  bool have_host = ::stat((opts.proc_root + "/self/ns/net").c_str(), &host) == 0;
  bool host_network = false;
  std::string found_pid;
  while (dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
    std::string dir = absl::StrCat(opts.proc_root, "/", Av(name));
    auto text = ReadFile(dir + "/cgroup");
    if (!text.ok()) continue;  // exited meanwhile
    if (!CgroupTextMentionsPod(*text, pod_uid)) continue;
    struct stat ns;
    if (::stat((dir + "/ns/net").c_str(), &ns) != 0) continue;
    if (have_host && ns.st_dev == host.st_dev && ns.st_ino == host.st_ino) {
      host_network = true;
      continue;
    }
    found_pid = dir;
    break;
  }
  ::closedir(d);
  if (found_pid.empty()) {
    if (host_network) {
      return absl::FailedPreconditionError(absl::StrCat(
          "pod ", Av(pod_uid), " uses the host network namespace (hostNetwork); not enrolled"));
    }
    return absl::NotFoundError(absl::StrCat("no process of pod ", Av(pod_uid), " found under ",
                                            opts.proc_root, " (not started yet, or gone)"));
  }
  UniqueFd fd(::open((found_pid + "/ns/net").c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) {
    return absl::UnavailableError(
        absl::StrCat("opening ", found_pid, "/ns/net: ", std::strerror(errno)));
  }
  return fd;
}

}  // namespace weft::agent
