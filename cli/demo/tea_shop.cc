#include "cli/demo/tea_shop.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/netns.h"
#include "common/status.h"

namespace weft::cli::demo {
namespace {

constexpr size_t kMaxLine = 4096;

struct Tea {
  const char* name;
  const char* kind;
  const char* origin;
};

constexpr Tea kTeas[] = {
    {"sencha", "green", "japan"},
    {"gyokuro", "green", "japan"},
    {"matcha", "green", "japan"},
    {"longjing", "green", "china"},
    {"bi luo chun", "green", "china"},
    {"darjeeling", "black", "india"},
    {"assam", "black", "india"},
    {"keemun", "black", "china"},
    {"lapsang souchong", "black", "china"},
    {"ceylon", "black", "sri lanka"},
    {"tieguanyin", "oolong", "china"},
    {"da hong pao", "oolong", "china"},
    {"dong ding", "oolong", "taiwan"},
    {"silver needle", "white", "china"},
    {"white peony", "white", "china"},
    {"pu-erh", "dark", "china"},
    {"rooibos", "herbal", "south africa"},
    {"chamomile", "herbal", "egypt"},
};

std::string Lower(std::string_view s) {
  std::string r(s);
  for (char& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

// Splits "verb arg... [ref TOKEN]" into verb, argument and the optional ref suffix.
struct Request {
  std::string verb, arg, ref;
};

Request ParseRequest(std::string_view line) {
  Request r;
  if (size_t p = line.rfind(" ref "); p != std::string_view::npos) {
    r.ref = std::string(line.substr(p + 5));
    line = line.substr(0, p);
  }
  size_t sp = line.find(' ');
  r.verb = std::string(line.substr(0, sp));
  if (sp != std::string_view::npos) r.arg = std::string(line.substr(sp + 1));
  return r;
}

std::string WithRef(std::string reply, const std::string& ref) {
  if (!ref.empty()) absl::StrAppend(&reply, " [ref ", ref, "]");
  return reply;
}

struct Conn {
  UniqueFd fd;
  std::string in, out;
  bool closing = false;  // flush `out`, then close
};

}  // namespace

absl::StatusOr<std::unique_ptr<TeaServer>> TeaServer::Start(TeaService service,
                                                            const SockAddr& addr, int netns_fd) {
  WEFT_ASSIGN_OR_RETURN(UniqueFd fd, SocketInNetns(netns_fd, addr.ip.IsV4() ? AF_INET : AF_INET6,
                                                   SOCK_STREAM | SOCK_NONBLOCK, 0));
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss;
  socklen_t len = addr.ToSockaddr(&ss);
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0)
    return ErrnoError(errno, "tea shop: bind " + addr.ToString());
  if (listen(fd.get(), 512) != 0) return ErrnoError(errno, "tea shop: listen");
  WEFT_ASSIGN_OR_RETURN(SockAddr bound, LocalAddress(fd.get()));
  std::unique_ptr<TeaServer> s(new TeaServer(service, std::move(fd), bound));
  s->thread_ = std::thread([p = s.get()] { p->Run(); });
  return s;
}

TeaServer::TeaServer(TeaService service, UniqueFd listen, SockAddr addr)
    : service_(service), listen_(std::move(listen)), addr_(addr) {}

TeaServer::~TeaServer() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
}

std::string TeaServer::Handle(std::string_view line) {
  requests_++;
  Request r = ParseRequest(line);
  if (service_ == TeaService::kCatalogue) {
    if (r.verb == "count" && r.arg.empty())
      return WithRef(absl::StrCat("catalogue: ", std::size(kTeas), " teas"), r.ref);
    if (r.verb == "search" && !r.arg.empty()) {
      std::string word = Lower(r.arg);
      std::vector<std::string> hits;
      for (const Tea& t : kTeas) {
        if (std::string_view(t.name).find(word) != std::string_view::npos || word == t.kind ||
            word == t.origin)
          hits.emplace_back(t.name);
      }
      return WithRef(absl::StrCat("catalogue: ", hits.size(), " teas matching '", word,
                                  "': ", hits.empty() ? "none" : absl::StrJoin(hits, ", ")),
                     r.ref);
    }
    return "error: catalogue understands 'count' and 'search <word>'";
  }
  if (r.verb == "add" && !r.arg.empty()) {
    std::string tea = Lower(r.arg);
    bool known = std::any_of(std::begin(kTeas), std::end(kTeas),
                             [&](const Tea& t) { return tea == t.name; });
    if (!known) return WithRef("error: no tea called '" + tea + "'", r.ref);
    int64_t n;
    {
      std::lock_guard<std::mutex> l(mu_);
      n = ++cart_items_;
    }
    return WithRef(absl::StrCat("cart: added ", tea, ", ", n, " items in the cart"), r.ref);
  }
  return "error: cart understands 'add <tea>'";
}

void TeaServer::Run() {
  std::vector<Conn> conns;
  std::vector<pollfd> pfds;
  while (!stop_) {
    pfds.assign(1, pollfd{listen_.get(), POLLIN, 0});
    for (const Conn& c : conns)
      pfds.push_back({c.fd.get(), static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
    if (poll(pfds.data(), pfds.size(), 100) <= 0) continue;
    // Serve existing connections first: `conns` and `pfds[1..]` line up until new ones arrive.
    for (size_t i = 0; i < conns.size(); i++) {
      Conn& c = conns[i];
      short ev = pfds[i + 1].revents;
      if (ev == 0) continue;
      if (ev & POLLIN) {
        char buf[4096];
        ssize_t n = read(c.fd.get(), buf, sizeof buf);
        if (n <= 0) {
          c.closing = true;
          c.out.clear();
          continue;
        }
        c.in.append(buf, static_cast<size_t>(n));
        size_t nl;
        while ((nl = c.in.find('\n')) != std::string::npos) {
          std::string line = c.in.substr(0, nl);
          c.in.erase(0, nl + 1);
          if (!line.empty() && line.back() == '\r') line.pop_back();
          c.out += Handle(line) + "\n";
        }
        if (c.in.size() > kMaxLine) {
          c.out += "error: request line longer than 4096 bytes\n";
          c.closing = true;
        }
      }
      if (ev & (POLLERR | POLLHUP | POLLNVAL) && !(ev & POLLIN)) {
        c.closing = true;
        c.out.clear();
      }
      if (!c.out.empty()) {
        ssize_t k = send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (k > 0) {
          c.out.erase(0, static_cast<size_t>(k));
        } else if (k < 0 && errno != EAGAIN && errno != EINTR) {
          c.closing = true;
          c.out.clear();
        }
      }
    }
    conns.erase(std::remove_if(conns.begin(), conns.end(),
                               [](const Conn& c) { return c.closing && c.out.empty(); }),
                conns.end());
    if (pfds[0].revents & POLLIN) {
      while (true) {
        int fd = accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) break;
        connections_++;
        conns.push_back(Conn{UniqueFd(fd), {}, {}, false});
      }
    }
  }
}

absl::StatusOr<std::string> TeaCall(int netns_fd, const SockAddr& to, std::string_view request,
                                    std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  auto left_ms = [&] {
    auto d = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<int64_t>(0, d.count()));
  };
  WEFT_ASSIGN_OR_RETURN(UniqueFd fd, SocketInNetns(netns_fd, to.ip.IsV4() ? AF_INET : AF_INET6,
                                                   SOCK_STREAM | SOCK_NONBLOCK, 0));
  sockaddr_storage ss;
  socklen_t len = to.ToSockaddr(&ss);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    if (errno != EINPROGRESS) return ErrnoError(errno, "connect " + to.ToString());
    pollfd p{fd.get(), POLLOUT, 0};
    int r;
    while ((r = poll(&p, 1, left_ms())) < 0 && errno == EINTR) {
    }
    if (r == 0) return absl::DeadlineExceededError("connect " + to.ToString() + ": timed out");
    int err = 0;
    socklen_t el = sizeof err;
    getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el);
    if (err != 0) return ErrnoError(err, "connect " + to.ToString());
  }
  std::string out = std::string(request) + "\n", in;
  size_t off = 0;
  while (true) {
    size_t nl = in.find('\n');
    if (nl != std::string::npos) return in.substr(0, nl);
    if (in.size() > kMaxLine) return absl::DataLossError("reply line longer than 4096 bytes");
    int ms = left_ms();
    if (ms == 0)
      return absl::DeadlineExceededError(
          absl::StrCat("no reply from ", to.ToString(), " within ", timeout.count(), " ms"));
    pollfd p{fd.get(), static_cast<short>(off < out.size() ? POLLOUT : POLLIN), 0};
    int r = poll(&p, 1, ms);
    if (r < 0 && errno != EINTR) return ErrnoError(errno, "poll");
    if (r <= 0) continue;
    if (off < out.size()) {
      ssize_t k = send(fd.get(), out.data() + off, out.size() - off, MSG_NOSIGNAL);
      if (k < 0 && errno != EAGAIN && errno != EINTR)
        return ErrnoError(errno, "send to " + to.ToString());
      if (k > 0) off += static_cast<size_t>(k);
      continue;
    }
    char buf[4096];
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n == 0)
      return absl::UnavailableError("connection to " + to.ToString() + " closed before a reply");
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return ErrnoError(errno, "read from " + to.ToString());
    }
    in.append(buf, static_cast<size_t>(n));
  }
}

}  // namespace weft::cli::demo
