// Packet capture inside a netns and pcap inspection.

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "cli/testbed/internal.h"
#include "cli/testbed/testbed.h"
#include "common/file.h"
#include "common/status.h"

namespace weft::testbed {
namespace {

bool OnPath(const char* prog) {
  for (const char* dir :
       {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    std::string p = absl::StrCat(dir, "/", prog);
    if (::access(p.c_str(), X_OK) == 0) return true;
  }
  return false;
}

struct CaptureTool {
  std::vector<std::string> argv;
  std::string ready_marker;  // printed on stderr once packets are being captured
};

absl::StatusOr<CaptureTool> ChooseTool(const std::string& iface, const std::string& pcap,
                                       const std::string& filter) {
  CaptureTool t;
  // dumpcap is what tshark runs underneath; calling it directly leaves one process to stop and
  // writes straight into the file.
  if (OnPath("dumpcap")) {
    t.argv = {"dumpcap", "-i", iface, "-w", pcap, "-P"};
    if (!filter.empty()) t.argv.insert(t.argv.end(), {"-f", filter});
    // dumpcap prints "Capturing on" before it opens the interface, and "File:" once the
    // interface is open with its filter set and the output file is created.
    t.ready_marker = "File: ";
  } else if (OnPath("tshark")) {
    t.argv = {"tshark", "-i", iface, "-w", pcap, "-F", "pcap"};
    if (!filter.empty()) t.argv.insert(t.argv.end(), {"-f", filter});
    t.ready_marker = "Capturing on";
  } else if (OnPath("tcpdump")) {
    t.argv = {"tcpdump", "-i", iface, "-w", pcap, "-U", "-n"};
    if (!filter.empty()) t.argv.push_back(filter);
    t.ready_marker = "listening on";
  } else {
    return absl::FailedPreconditionError(
        "no capture program found: install tshark (apt-get install tshark) or tcpdump");
  }
  return t;
}

}  // namespace

absl::StatusOr<Capture> StartCapture(const std::string& netns, const std::string& iface,
                                     const std::string& pcap_path, const std::string& bpf_filter,
                                     std::chrono::milliseconds timeout) {
  if (iface.empty()) return absl::InvalidArgumentError("StartCapture: empty interface name");
  if (pcap_path.empty()) return absl::InvalidArgumentError("StartCapture: empty pcap path");
  WEFT_ASSIGN_OR_RETURN(CaptureTool tool, ChooseTool(iface, pcap_path, bpf_filter));
  std::string log_path = pcap_path + ".log";
  SpawnOptions so;
  WEFT_ASSIGN_OR_RETURN(Process proc, Spawn(netns, tool.argv, log_path, so));

  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (true) {
    auto log = ReadFile(log_path);
    if (log.ok() && log->find(tool.ready_marker) != std::string::npos) break;
    if (!proc.Alive()) {
      return absl::InternalError(absl::StrCat(
          tool.argv[0], " on ", iface, " in netns '", netns, "' exited with status ",
          proc.exit_status().value_or(-1), " before capturing: ", log.ok() ? *log : std::string()));
    }
    if (std::chrono::steady_clock::now() > deadline) {
      proc.Terminate(std::chrono::milliseconds(500));
      return absl::DeadlineExceededError(
          absl::StrCat(tool.argv[0], " on ", iface, " in netns '", netns, "' did not report '",
                       tool.ready_marker, "' within ", timeout.count(),
                       " ms; log: ", log.ok() ? *log : std::string()));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  Capture c;
  c.proc_ = std::move(proc);
  c.pcap_path_ = pcap_path;
  return c;
}

Capture::~Capture() {
  (void)Stop();
}

absl::Status Capture::Stop() {
  if (!proc_.valid()) return absl::OkStatus();
  Process p = std::move(proc_);
  // libpcap's TPACKET_V3 ring hands a partly filled block to the program only when its
  // 250 ms block timeout expires, and on SIGINT the program exits without reading that block.
  // So wait until the file has stopped growing for longer than that timeout.
  off_t last_size = -1;
  auto quiet_since = std::chrono::steady_clock::now();
  auto give_up = quiet_since + std::chrono::seconds(5);
  while (p.Alive() && std::chrono::steady_clock::now() < give_up) {
    struct stat st;
    off_t size = ::stat(pcap_path_.c_str(), &st) == 0 ? st.st_size : -1;
    auto now = std::chrono::steady_clock::now();
    if (size != last_size) {
      last_size = size;
      quiet_since = now;
    } else if (now - quiet_since > std::chrono::milliseconds(400)) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (p.Alive()) WEFT_RETURN_IF_ERROR(p.Kill(SIGINT));
  auto st = p.Wait(std::chrono::seconds(10));
  if (!st.ok()) {
    p.Terminate(std::chrono::milliseconds(500));
    return absl::DeadlineExceededError(
        absl::StrCat("capture into ", pcap_path_, " did not stop within 10 s after SIGINT"));
  }
  if (*st != 0) {
    auto log = ReadFile(p.log_path());
    return absl::InternalError(absl::StrCat("capture into ", pcap_path_, " exited with status ",
                                            *st, ": ", log.ok() ? *log : std::string()));
  }
  return absl::OkStatus();
}

absl::StatusOr<bool> PcapContains(const std::string& pcap_path, std::string_view needle) {
  if (needle.empty()) return absl::InvalidArgumentError("PcapContains: empty needle");
  WEFT_ASSIGN_OR_RETURN(std::string data, ReadFile(pcap_path));
  return std::string_view(data).find(needle) != std::string_view::npos;
}

absl::StatusOr<PcapStats> PcapSummary(const std::string& pcap_path,
                                      const std::vector<uint16_t>& tls_ports) {
  struct stat st;
  if (::stat(pcap_path.c_str(), &st) != 0)
    return ErrnoError(errno, absl::StrCat("stat ", pcap_path));
  std::vector<std::string> argv = {"tshark", "-r", pcap_path, "-n", "-T", "fields", "-E",
                                   "separator=/t", "-E", "aggregator=,", "-e", "frame.number", "-e",
                                   "tcp.len", "-e", "tls.record.content_type",
                                   // TLS 1.3 records after the hello carry the outer type here.
                                   "-e", "tls.record.opaque_type"};
  for (uint16_t port : tls_ports)
    argv.insert(argv.end(), {"-d", absl::StrCat("tcp.port==", port, ",tls")});
  WEFT_ASSIGN_OR_RETURN(std::string out, Exec("", argv, {}, std::chrono::seconds(60)));
  PcapStats s;
  for (absl::string_view line : absl::StrSplit(out, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, '\t');
    s.frames++;
    if (f.size() > 1 && !f[1].empty()) {
      s.tcp_packets++;
      int64_t len = 0;
      if (absl::SimpleAtoi(f[1], &len) && len > 0) {
        s.tcp_payload_packets++;
        s.tcp_payload_bytes += len;
      }
    }
    for (size_t col = 2; col < f.size() && col <= 3; col++) {
      if (f[col].empty()) continue;
      for (absl::string_view ct : absl::StrSplit(f[col], ',', absl::SkipEmpty())) {
        int type = 0;
        if (!absl::SimpleAtoi(ct, &type)) continue;
        s.tls_records++;
        if (type == 22) s.tls_handshake_records++;
        if (type == 23) s.tls_app_data_records++;
      }
    }
  }
  return s;
}

}  // namespace weft::testbed
