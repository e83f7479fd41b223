// weft-cni: the chained CNI plugin (cni/plugin.h). The runtime passes CNI_* variables and the
// network configuration on stdin; the result or error goes to stdout.
#include <cstdio>
#include <iostream>
#include <iterator>
#include <map>
#include <string>

#include "cni/plugin.h"

extern char** environ;

int main() {
  std::map<std::string, std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    size_t eq = kv.find('=');
    if (eq != std::string::npos && kv.rfind("CNI_", 0) == 0)
      env[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  std::string config;
  if (env["CNI_COMMAND"] != "VERSION")  // VERSION needs no configuration
    config.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  weft::cni::PluginOutput o = weft::cni::RunPlugin(env, config);
  std::fputs(o.out.c_str(), stdout);
  std::fputs(o.log.c_str(), stderr);
  return o.exit_code;
}
