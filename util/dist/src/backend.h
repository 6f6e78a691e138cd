// The interface between dmx_dist (torch-free, linked into every tool) and its c10d backend, a
// module (libdmx_dist_c10d.so) that dmx_dist loads only when a process joins a group of more
// than one: a tool started single-process never loads LibTorch for it (dmx-sim's sweep points
// stay fast to start). Errors cross the boundary as std::runtime_error with a one-line message.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "dmx/dist.h"

namespace dmx::dist {

class Backend {
 public:
  virtual ~Backend() = default;
  virtual void allreduce_sum(std::vector<double>& v) = 0;  // in place, FP64
  virtual void barrier() = 0;
  virtual void set(const std::string& key, const std::string& value) = 0;
  virtual std::optional<std::string> try_get(const std::string& key) = 0;
  virtual std::string get(const std::string& key) = 0;  // waits up to the launch's timeout
};

// The module's entry point: rendezvous as Group::join describes, then the Gloo group. Returns null
// with *error set (one line) on failure.
using CreateBackend = Backend* (*)(const Launch& launch, const std::string& fingerprint,
                                   std::string* error);
constexpr const char* kCreateBackendSymbol = "dmx_dist_c10d_create";

}  // namespace dmx::dist
