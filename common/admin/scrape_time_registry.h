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
  std::vector<prometheus::MetricFamily> Collect() const override {
    auto v = Registry::Collect();
    if (extra) extra(&v);
    return v;
  }
};

}  // namespace weft
