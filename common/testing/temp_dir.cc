#include "common/testing/temp_dir.h"

#include <stdlib.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace weft::testing {

TempDir::TempDir() {
  const char* base = getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/weft-test-XXXXXX";
  if (!mkdtemp(tmpl.data())) {
    // Nothing sensible can run without its directory (it would write into the wrong place).
    fprintf(stderr, "TempDir: mkdtemp(%s): %s\n", tmpl.c_str(), strerror(errno));
    std::abort();
  }
  path_ = tmpl;
}

TempDir::~TempDir() {
  if (getenv("WEFT_KEEP_TMP")) {  // debugging: keep logs, configs and captures
    fprintf(stderr, "keeping %s\n", path_.c_str());
    return;
  }
  std::error_code ec;  // best effort: a destructor must not throw
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::Write(const std::string& name, const std::string& content) const {
  std::string p = path_ + "/" + name;
  std::string tmp = p + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    f << content;
  }
  ::rename(tmp.c_str(), p.c_str());
  return p;
}

}  // namespace weft::testing
