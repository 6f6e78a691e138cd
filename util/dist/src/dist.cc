// dMX dist: the launch variables, the rendezvous and the collectives on LibTorch's c10d (see
// dmx/dist.h). Built with DMX_DIST_C10D where LibTorch is found; without it only world size 1 runs.
#include "dmx/dist.h"

#include <dmx/util.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <sstream>
#include <thread>

#ifdef DMX_DIST_C10D
#include <ATen/ATen.h>

#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif
#ifdef DMX_DIST_GLOG
#include <glog/logging.h>
#endif

namespace dmx::dist {

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

std::string one_line(const std::exception& e) {
#ifdef DMX_DIST_C10D
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e))
    return first_line(ce->what_without_backtrace());
#endif
  return first_line(e.what());
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

std::pair<int64_t, int64_t> shard(int64_t n, int rank, int world) {
  return {n * rank / world, n * (rank + 1) / world};
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
#ifdef DMX_DIST_C10D
struct Group::Impl {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;  // destroyed before the store
  std::chrono::milliseconds timeout{0};
};
#else
struct Group::Impl {};
#endif

Group::Group(Launch l) : launch_(std::move(l)) {}
Group::~Group() = default;

std::string Group::who() const {
  return "rank " + std::to_string(rank()) + " of " + std::to_string(size());
}

#ifdef DMX_DIST_C10D
namespace {
bool is_loopback(const std::string& a) {
  return a == "localhost" || a == "::1" || a.rfind("127.", 0) == 0;
}

// The first line of `b` that differs from `a` ("" when equal), for the rendezvous' error.
std::string first_differing_line(const std::string& a, const std::string& b) {
  std::istringstream sa(a), sb(b);
  std::string la, lb;
  while (true) {
    const bool ga = bool(std::getline(sa, la)), gb = bool(std::getline(sb, lb));
    if (!ga && !gb) return "";
    if (!ga || !gb || la != lb) {
      std::string s = gb ? lb : "(nothing)";
      if (s.size() > 120) s = s.substr(0, 117) + "...";
      return s;
    }
  }
}
}  // namespace
#endif

std::unique_ptr<Group> Group::join(const Launch& l, const std::string& tool,
                                   const std::string& fingerprint) {
  std::unique_ptr<Group> g(new Group(l));
  g->tool_ = tool;
  g->impl_ = std::make_unique<Impl>();
  if (!l.distributed()) return g;
#ifndef DMX_DIST_C10D
  (void)fingerprint;
  throw UsageError("WORLD_SIZE=" + std::to_string(l.world_size) +
                   ": this build has no distributed engine (LibTorch's c10d; configure with "
                   "DMX_WITH_TORCH=ON)");
#else
#ifdef DMX_DIST_GLOG
  // c10d logs each failed connect and closed socket through glog (several lines, before the
  // tool's own error); the errors reach the user as DistError's one line instead. GLOG_minloglevel
  // in the environment still wins.
  if (!std::getenv("GLOG_minloglevel")) FLAGS_minloglevel = google::GLOG_FATAL;
#endif
  const std::string where = l.master_addr + ":" + std::to_string(l.master_port);
  const std::string me = g->who();
  Impl& im = *g->impl_;
  im.timeout = std::chrono::milliseconds(static_cast<int64_t>(l.timeout_s * 1000));
  c10d::TCPStoreOptions so;
  so.port = static_cast<uint16_t>(l.master_port);
  so.isServer = l.rank == 0;
  so.numWorkers = l.world_size;
  so.waitWorkers = false;  // the check-in below waits, with errors naming the missing ranks
  so.timeout = im.timeout;
  try {
    im.store = c10::make_intrusive<c10d::TCPStore>(l.master_addr, so);
  } catch (const std::exception& e) {
    if (l.rank == 0)
      throw DistError(me + ": cannot host the rendezvous at MASTER_ADDR:MASTER_PORT " + where +
                      " (" + one_line(e) + ")");
    throw DistError(me + ": cannot reach the master (rank 0) at MASTER_ADDR:MASTER_PORT " + where +
                    " within " + std::to_string(int(l.timeout_s)) + " s (" + one_line(e) + ")");
  }
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  auto text = [](const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); };
  const std::string ws = std::to_string(l.world_size);
  try {
    const int64_t claims = im.store->add("dmx/claim/" + std::to_string(l.rank), 1);
    if (claims > 1)
      throw DistError(me + ": RANK=" + std::to_string(l.rank) +
                      " is already taken by another process of this group (master " + where + ")");
    im.store->set("dmx/join/" + std::to_string(l.rank), bytes(ws + "\n" + fingerprint));
    std::string verdict;
    if (l.rank == 0) {
      const auto deadline = std::chrono::steady_clock::now() + im.timeout;
      std::vector<int> missing;
      while (true) {
        missing.clear();
        for (int r = 1; r < l.world_size; ++r)
          if (!im.store->check({"dmx/join/" + std::to_string(r)})) missing.push_back(r);
        if (missing.empty() || std::chrono::steady_clock::now() > deadline) break;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (!missing.empty()) {
        std::string list;
        for (int r : missing) list += (list.empty() ? "" : ",") + std::to_string(r);
        verdict = "rank(s) " + list + " did not join within " + std::to_string(int(l.timeout_s)) +
                  " s (WORLD_SIZE=" + ws + ", master " + where + ")";
      }
      for (int r = 1; r < l.world_size && verdict.empty(); ++r) {
        const std::string info = text(im.store->get("dmx/join/" + std::to_string(r)));
        const std::string theirs = info.substr(0, info.find('\n'));
        const std::string their_fp =
            info.find('\n') == std::string::npos ? "" : info.substr(info.find('\n') + 1);
        if (theirs != ws)
          verdict = "rank " + std::to_string(r) + " was started with WORLD_SIZE=" + theirs +
                    ", rank 0 with WORLD_SIZE=" + ws;
        else if (their_fp != fingerprint)
          verdict = "rank " + std::to_string(r) +
                    " runs with other options than rank 0 (every rank needs the same command); "
                    "first difference: " +
                    first_differing_line(fingerprint, their_fp);
      }
      im.store->set("dmx/verdict", bytes(verdict.empty() ? "ok " + ws : verdict));
      if (!verdict.empty()) {
        // Keep the store up until the ranks that joined have read the verdict (at most 5 s), so
        // that they report it instead of a closed connection.
        const int joined = l.world_size - 1 - static_cast<int>(missing.size());
        const auto until = std::chrono::steady_clock::now() +
                           std::min(im.timeout, std::chrono::milliseconds(5000));
        while (im.store->add("dmx/verdict_read", 0) < joined &&
               std::chrono::steady_clock::now() < until)
          std::this_thread::sleep_for(std::chrono::milliseconds(10));
        throw DistError(me + ": " + verdict);
      }
    } else {
      try {
        im.store->wait({"dmx/verdict"}, im.timeout);
      } catch (const std::exception& e) {
        throw DistError(me + ": rank 0 did not complete the rendezvous at " + where + " within " +
                        std::to_string(int(l.timeout_s)) + " s (" + one_line(e) + ")");
      }
      verdict = text(im.store->get("dmx/verdict"));
      im.store->add("dmx/verdict_read", 1);
      if (verdict.rfind("ok ", 0) != 0) throw DistError(me + ": " + verdict);
      if (verdict != "ok " + ws)
        throw DistError(me + ": started with WORLD_SIZE=" + ws +
                        ", rank 0 with WORLD_SIZE=" + verdict.substr(3));
    }
  } catch (const DistError&) {
    throw;
  } catch (const std::exception& e) {
    throw DistError(me + ": rendezvous at " + where + " failed (" + one_line(e) + ")");
  }
  try {
    auto opts = c10d::ProcessGroupGloo::Options::create(im.timeout);
    if (auto ifname = env("GLOO_SOCKET_IFNAME"))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(*ifname));
    else if (is_loopback(l.master_addr))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    opts->threads = 1;
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("gloo", im.store);
    im.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(prefixed, l.rank, l.world_size, opts);
  } catch (const std::exception& e) {
    throw DistError(me + ": cannot connect the Gloo process group (" + one_line(e) + ")");
  }
  return g;
#endif
}

#ifdef DMX_DIST_C10D
#define DMX_DIST_TRY(what, ...)                                                             \
  try {                                                                                     \
    __VA_ARGS__;                                                                            \
  } catch (const DistError&) {                                                              \
    throw;                                                                                  \
  } catch (const std::exception& e) {                                                       \
    throw DistError(who() + ": " + what +                                     \
                    " failed: another rank exited or did not answer within the timeout (" + \
                    one_line(e) + ")");                                                     \
  }
#endif

void Group::allreduce_sum(std::vector<double>& v) {
  if (size() == 1 || v.empty()) return;
#ifdef DMX_DIST_C10D
  DMX_DIST_TRY("allreduce", {
    std::vector<at::Tensor> t{at::from_blob(v.data(), {int64_t(v.size())}, at::kDouble)};
    impl_->pg->allreduce(t)->wait(impl_->timeout);
  });
#endif
}

void Group::barrier() {
  if (size() == 1) return;
#ifdef DMX_DIST_C10D
  DMX_DIST_TRY("barrier", impl_->pg->barrier()->wait(impl_->timeout));
#endif
}

void Group::put(const std::string& key, const std::string& value) {
  if (size() == 1) throw std::logic_error("dist::Group::put on a single-process group");
#ifdef DMX_DIST_C10D
  DMX_DIST_TRY("store write of " + key,
               impl_->store->set("u/" + key, std::vector<uint8_t>(value.begin(), value.end())));
#endif
}

std::optional<std::string> Group::try_get(const std::string& key) {
  if (size() == 1) throw std::logic_error("dist::Group::try_get on a single-process group");
#ifdef DMX_DIST_C10D
  std::optional<std::string> out;
  DMX_DIST_TRY("store read of " + key, {
    if (impl_->store->check({"u/" + key})) {
      const auto v = impl_->store->get("u/" + key);
      out = std::string(v.begin(), v.end());
    }
  });
  return out;
#else
  return std::nullopt;
#endif
}

std::string Group::get(const std::string& key, const std::string& what) {
  if (size() == 1) throw std::logic_error("dist::Group::get on a single-process group");
#ifdef DMX_DIST_C10D
  std::string out;
  DMX_DIST_TRY("waiting for " + what, {
    impl_->store->wait({"u/" + key}, impl_->timeout);
    const auto v = impl_->store->get("u/" + key);
    out.assign(v.begin(), v.end());
  });
  return out;
#else
  (void)what;
  return "";
#endif
}

void Group::broadcast(std::string& bytes, int from) {
  if (size() == 1) return;
  const std::string key = "bc/" + std::to_string(seq_++);
  if (rank() == from)
    put(key, bytes);
  else
    bytes = get(key, "rank " + std::to_string(from) + "'s broadcast");
}

std::vector<std::string> Group::gather(const std::string& mine) {
  if (size() == 1) return {mine};
  const std::string key = "ga/" + std::to_string(seq_++) + "/";
  if (!root()) {
    put(key + std::to_string(rank()), mine);
    return {};
  }
  std::vector<std::string> out{mine};
  for (int r = 1; r < size(); ++r)
    out.push_back(get(key + std::to_string(r), "rank " + std::to_string(r) + "'s results"));
  return out;
}

}  // namespace dmx::dist
