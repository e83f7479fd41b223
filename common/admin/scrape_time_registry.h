// A prometheus::Registry that appends families computed when it is collected (at each scrape):
// for figures that live elsewhere and are read on demand (ztunnel's open sockets, the agent's
// eBPF decision counters in pinned per-CPU maps).
#pragma once

#include <functional>
#include <vector>

#include "prometheus/registry.h"

namespace weft {

class ScrapeTimeRegistry : public prometheus::Registry {
 public:
  std::function<void(std::vector<prometheus::MetricFamily>*)> extra;
  // Runs first: brings registered metrics that mirror figures kept elsewhere up to date (ztunnel's
  // deny-at-connect counters from BPF). Set before the registry is served, or under the owner's
  // own synchronisation.
  std::function<void()> before;
  std::vector<prometheus::MetricFamily> Collect() const override {
    if (before) before();
    auto v = Registry::Collect();
    if (extra) extra(&v);
    return v;
  }
};

}  // namespace weft
