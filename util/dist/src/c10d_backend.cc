// dmx_dist's c10d backend (a module, see backend.h): the rendezvous on a TCPStore hosted by rank 0
// and the collectives on ProcessGroupGloo. Built only where LibTorch and the Gloo headers are.
#include <ATen/ATen.h>
#include <dmx/util.h>

#include <chrono>
#include <cstdlib>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <thread>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "backend.h"
#ifdef DMX_DIST_GLOG
#include <glog/logging.h>
#endif

namespace dmx::dist {
namespace {

// A refused rendezvous (its message is final, not rewrapped).
struct Refusal : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string one_line(const std::exception& e) {
  if (const auto* ce = dynamic_cast<const c10::Error*>(&e))
    return first_line(ce->what_without_backtrace());
  return first_line(e.what());
}

std::optional<std::string> env(const char* name) {
  const char* v = std::getenv(name);
  if (!v) return std::nullopt;
  return std::string(v);
}
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

struct C10dBackend final : Backend {
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;  // destroyed before the store
  std::chrono::milliseconds timeout{0};

  void allreduce_sum(std::vector<double>& v) override {
    std::vector<at::Tensor> t{at::from_blob(v.data(), {int64_t(v.size())}, at::kDouble)};
    wrap([&] { pg->allreduce(t)->wait(timeout); });
  }
  void barrier() override {
    wrap([&] { pg->barrier()->wait(timeout); });
  }
  void set(const std::string& key, const std::string& value) override {
    wrap([&] { store->set("u/" + key, std::vector<uint8_t>(value.begin(), value.end())); });
  }
  std::optional<std::string> try_get(const std::string& key) override {
    std::optional<std::string> out;
    wrap([&] {
      if (store->check({"u/" + key})) {
        const auto v = store->get("u/" + key);
        out = std::string(v.begin(), v.end());
      }
    });
    return out;
  }
  std::string get(const std::string& key) override {
    std::string out;
    wrap([&] {
      store->wait({"u/" + key}, timeout);
      const auto v = store->get("u/" + key);
      out.assign(v.begin(), v.end());
    });
    return out;
  }
  template <class F>
  static void wrap(F&& f) {
    try {
      f();
    } catch (const std::exception& e) {
      throw std::runtime_error(one_line(e));  // c10::Error carries a backtrace; one line only
    }
  }
};

std::unique_ptr<C10dBackend> join(const Launch& l, const std::string& fingerprint) {
  auto b = std::make_unique<C10dBackend>();
  using Impl = C10dBackend;
#ifdef DMX_DIST_GLOG
  // c10d logs each failed connect and closed socket through glog (several lines, before the
  // tool's own error); the errors reach the user as DistError's one line instead. GLOG_minloglevel
  // in the environment still wins.
  if (!std::getenv("GLOG_minloglevel")) FLAGS_minloglevel = google::GLOG_FATAL;
#endif
  const std::string where = l.master_addr + ":" + std::to_string(l.master_port);
  const std::string me = "rank " + std::to_string(l.rank) + " of " + std::to_string(l.world_size);
  Impl& im = *b;
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
      throw std::runtime_error(me + ": cannot host the rendezvous at MASTER_ADDR:MASTER_PORT " +
                               where + " (" + one_line(e) + ")");
    throw std::runtime_error(me + ": cannot reach the master (rank 0) at MASTER_ADDR:MASTER_PORT " +
                             where + " within " + std::to_string(int(l.timeout_s)) + " s (" +
                             one_line(e) + ")");
  }
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  auto text = [](const std::vector<uint8_t>& v) { return std::string(v.begin(), v.end()); };
  const std::string ws = std::to_string(l.world_size);
  try {
    const int64_t claims = im.store->add("dmx/claim/" + std::to_string(l.rank), 1);
    if (claims > 1)
      throw Refusal(me + ": RANK=" + std::to_string(l.rank) +
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
        throw Refusal(me + ": " + verdict);
      }
    } else {
      try {
        im.store->wait({"dmx/verdict"}, im.timeout);
      } catch (const std::exception& e) {
        throw Refusal(me + ": rank 0 did not complete the rendezvous at " + where + " within " +
                      std::to_string(int(l.timeout_s)) + " s (" + one_line(e) + ")");
      }
      verdict = text(im.store->get("dmx/verdict"));
      im.store->add("dmx/verdict_read", 1);
      if (verdict.rfind("ok ", 0) != 0) throw Refusal(me + ": " + verdict);
      if (verdict != "ok " + ws)
        throw Refusal(me + ": started with WORLD_SIZE=" + ws +
                      ", rank 0 with WORLD_SIZE=" + verdict.substr(3));
    }
  } catch (const Refusal& e) {
    throw std::runtime_error(e.what());
  } catch (const std::exception& e) {
    throw std::runtime_error(me + ": rendezvous at " + where + " failed (" + one_line(e) + ")");
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
    throw std::runtime_error(me + ": cannot connect the Gloo process group (" + one_line(e) + ")");
  }
  return b;
}

}  // namespace
}  // namespace dmx::dist

extern "C" __attribute__((visibility("default"))) dmx::dist::Backend* dmx_dist_c10d_create(
    const dmx::dist::Launch& launch, const std::string& fingerprint, std::string* error) {
  try {
    return dmx::dist::join(launch, fingerprint).release();
  } catch (const std::exception& e) {
    *error = dmx::first_line(e.what());
    return nullptr;
  }
}
