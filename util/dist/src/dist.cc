// dMX dist: the launch variables and the group; the rendezvous and the collectives are in the
// c10d module (backend.h, c10d_backend.cc), loaded on the first join of more than one process.
#include "dmx/dist.h"

#include <dlfcn.h>
#include <dmx/util.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <thread>

#include "backend.h"

namespace dmx::dist {

namespace fs = std::filesystem;
constexpr const char* kModuleName = "libdmx_dist_c10d.so";

namespace {

// A whole decimal integer in [lo, hi]; `what` names the variable or flag in the error.
int parse_int(const std::string& text, const std::string& what, long lo, long hi) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
    throw UsageError(what + "='" + text + "' is not an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return static_cast<int>(v);
}

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}

}  // namespace

void add_dist_options(CLI::App& app, LaunchFlags& f) {
  app.add_option("--master-addr", f.master_addr,
                 "distributed: address of rank 0, which hosts the rendezvous (env MASTER_ADDR; "
                 "default 127.0.0.1)");
  app.add_option("--master-port", f.master_port, "distributed: its TCP port (env MASTER_PORT)");
  app.add_option("--rank", f.rank, "distributed: this process's rank, 0..world-1 (env RANK)");
  app.add_option("--world-size", f.world_size,
                 "distributed: number of processes (env WORLD_SIZE; 1 = single-process)");
  app.add_option("--dist-timeout", f.timeout_s,
                 "distributed: seconds any rank waits for another before failing (env "
                 "DMX_DIST_TIMEOUT; default 300)");
}

Launch resolve_launch(const LaunchFlags& f) {
  Launch l;
  if (f.world_size != -1) {
    if (f.world_size < 1 || f.world_size > 4096)
      throw UsageError("--world-size " + std::to_string(f.world_size) + " is not in [1, 4096]");
    l.world_size = f.world_size;
  } else if (auto v = env("WORLD_SIZE")) {
    l.world_size = parse_int(*v, "WORLD_SIZE", 1, 4096);
  }
  const char* rank_src = "RANK";
  if (f.rank != -1) {
    if (f.rank < 0) throw UsageError("--rank " + std::to_string(f.rank) + " is negative");
    l.rank = f.rank;
    rank_src = "--rank";
  } else if (auto v = env("RANK")) {
    l.rank = parse_int(*v, "RANK", 0, INT_MAX);
  } else if (l.world_size > 1) {
    throw UsageError("WORLD_SIZE=" + std::to_string(l.world_size) +
                     " but no RANK (set RANK or --rank for every process)");
  }
  if (l.rank >= l.world_size)
    throw UsageError(std::string(rank_src) + "=" + std::to_string(l.rank) +
                     " is not below WORLD_SIZE=" + std::to_string(l.world_size));
  if (!f.master_addr.empty()) {
    l.master_addr = f.master_addr;
  } else if (auto v = env("MASTER_ADDR")) {
    if (v->empty()) throw UsageError("MASTER_ADDR is set but empty");
    l.master_addr = *v;
  }
  if (f.master_port != -1) {
    if (f.master_port < 1 || f.master_port > 65535)
      throw UsageError("--master-port " + std::to_string(f.master_port) + " is not in [1, 65535]");
    l.master_port = f.master_port;
  } else if (auto v = env("MASTER_PORT")) {
    l.master_port = parse_int(*v, "MASTER_PORT", 1, 65535);
  } else if (l.world_size > 1) {
    throw UsageError("WORLD_SIZE=" + std::to_string(l.world_size) +
                     " but no MASTER_PORT (set MASTER_PORT or --master-port for every process)");
  }
  if (f.timeout_s != -1) {
    if (!(f.timeout_s > 0 && f.timeout_s <= 86400))
      throw UsageError("--dist-timeout must be in (0, 86400] seconds");
    l.timeout_s = f.timeout_s;
  } else if (auto v = env("DMX_DIST_TIMEOUT")) {
    char* end = nullptr;
    const double t = std::strtod(v->c_str(), &end);
    if (v->empty() || *end != '\0' || !(t > 0 && t <= 86400))
      throw UsageError("DMX_DIST_TIMEOUT='" + *v + "' is not a number of seconds in (0, 86400]");
    l.timeout_s = t;
  }
  return l;
}

int local_world_size() {
  auto v = env("LOCAL_WORLD_SIZE");
  if (!v) return 0;
  char* end = nullptr;
  const long n = std::strtol(v->c_str(), &end, 10);
  return (!v->empty() && *end == '\0' && n >= 1 && n <= 4096) ? int(n) : 0;
}

// ---- the group
// -----------------------------------------------------------------------------------
struct Group::Impl {
  std::unique_ptr<Backend> backend;
};

Group::Group(Launch l) : launch_(std::move(l)) {}
Group::~Group() = default;

std::string Group::who() const {
  return "rank " + std::to_string(rank()) + " of " + std::to_string(size());
}

#ifdef DMX_DIST_MODULE_PATH
namespace {
// The c10d module: next to the executable's build tree (bin/../lib), else where CMake built it.
CreateBackend load_backend() {
  static CreateBackend create = nullptr;
  if (create) return create;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  std::vector<std::string> paths;
  if (const char* p = std::getenv("DMX_DIST_MODULE")) paths.push_back(p);
  if (!ec) paths.push_back((exe.parent_path().parent_path() / "lib" / kModuleName).string());
  paths.push_back(DMX_DIST_MODULE_PATH);
  std::string why;
  for (const auto& path : paths) {
    if (!fs::exists(path)) continue;
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!h) {
      const char* e = dlerror();
      why = path + ": " + (e ? e : "dlopen failed");
      continue;
    }
    create = reinterpret_cast<CreateBackend>(dlsym(h, kCreateBackendSymbol));
    if (create) return create;
    why = path + ": no " + kCreateBackendSymbol;
  }
  throw DistError("cannot load the distributed engine (" +
                  (why.empty() ? std::string(kModuleName) + " not found next to the tool" : why) +
                  ")");
}
}  // namespace
#endif

std::unique_ptr<Group> Group::join(const Launch& l, const std::string& tool,
                                   const std::string& fingerprint) {
  std::unique_ptr<Group> g(new Group(l));
  g->impl_ = std::make_unique<Impl>();
  if (!l.distributed()) return g;
#ifndef DMX_DIST_MODULE_PATH
  (void)tool;
  (void)fingerprint;
  throw UsageError("WORLD_SIZE=" + std::to_string(l.world_size) +
                   ": this build has no distributed engine (LibTorch's c10d and the Gloo headers, "
                   "libgloo-dev, are needed; configure with DMX_WITH_TORCH=ON)");
#else
  const CreateBackend create = load_backend();
  std::string error;
  // Ranks of another tool on the same port differ in the first line.
  Backend* b = create(l, "tool " + tool + "\n" + fingerprint, &error);
  if (!b) throw DistError(error);
  g->impl_->backend.reset(b);
  return g;
#endif
}

// Runs one backend call; its failure becomes one line naming this rank and the operation.
template <class F>
auto Group::call(const std::string& what, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    throw DistError(who() + ": " + what +
                    " failed: another rank exited or did not answer within the timeout (" +
                    first_line(e.what()) + ")");
  }
}

void Group::allreduce_sum(std::vector<double>& v) {
  if (size() == 1 || v.empty()) return;
  call("allreduce", [&] { impl_->backend->allreduce_sum(v); });
}

void Group::barrier() {
  if (size() == 1) return;
  call("barrier", [&] { impl_->backend->barrier(); });
}

void Group::put(const std::string& key, const std::string& value) {
  if (size() == 1) throw std::logic_error("dist::Group::put on a single-process group");
  call("store write of " + key, [&] { impl_->backend->set(key, value); });
}

std::optional<std::string> Group::try_get(const std::string& key) {
  if (size() == 1) throw std::logic_error("dist::Group::try_get on a single-process group");
  return call("store read of " + key, [&] { return impl_->backend->try_get(key); });
}

std::string Group::get(const std::string& key, const std::string& what) {
  if (size() == 1) throw std::logic_error("dist::Group::get on a single-process group");
  return call("waiting for " + what, [&] { return impl_->backend->get(key); });
}

void Group::broadcast(std::string& bytes, int from) {
  if (size() == 1) return;
  const std::string key = "bc/" + std::to_string(seq_++);
  if (rank() == from)
    put(key, bytes);
  else
    bytes = get(key, "rank " + std::to_string(from) + "'s broadcast");
}

}  // namespace dmx::dist
