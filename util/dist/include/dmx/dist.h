// dMX dist: running a dmx-* tool as one rank of several processes, on LibTorch's own distributed
// engine (c10d: a TCPStore for the rendezvous and small messages, ProcessGroupGloo for the
// collectives). Launched the way PyTorch users do: MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE (as
// torchrun sets them) or the flags of add_dist_options, which override them. Without any of them a
// tool runs single-process and nothing here opens a socket.
//
// Faults: every blocking call (the rendezvous, a collective, a store read) gives up after the
// launch's timeout with a one-line DistError naming the rank and the operation; a peer that exits
// makes the collectives fail at once (its sockets close). The timeout must exceed the longest
// time one rank may legitimately wait for another (e.g. the imbalance of a search step).
//
// Neither this header nor dmx_dist needs LibTorch: the c10d part is a module (libdmx_dist_c10d.so)
// that join() loads only for a group of more than one, so a single-process tool never loads
// LibTorch for it. A build without LibTorch or the Gloo headers runs single-process and refuses
// WORLD_SIZE > 1 with an error.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace dmx::dist {

// A distributed operation failed (a peer exited, a timeout, a refused rendezvous): exit 1.
class DistError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Where and as what this process joins. world_size 1: single-process (the default).
struct Launch {
  std::string master_addr = "127.0.0.1";
  int master_port = 0;
  int rank = 0;
  int world_size = 1;
  double timeout_s = 300;  // every blocking distributed call
  bool distributed() const { return world_size > 1; }
};

// The flags' values before they are merged with the environment (-1 / "" = not given).
struct LaunchFlags {
  std::string master_addr;
  int master_port = -1, rank = -1, world_size = -1;
  double timeout_s = -1;
};

// Adds --master-addr, --master-port, --rank, --world-size and --dist-timeout to a CLI11 app.
void add_dist_options(CLI::App& app, LaunchFlags& f);

// Merges the flags with MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE and DMX_DIST_TIMEOUT (flags
// win). Throws dmx::UsageError (exit 2) naming the variable or flag for a value that is not a
// number, out of range (RANK >= WORLD_SIZE, a port outside 1..65535), or a distributed launch
// without MASTER_PORT. Nothing set: a single-process Launch.
Launch resolve_launch(const LaunchFlags& f);

// One rank's membership in the group. Single-process (world 1): every collective is the identity
// and nothing touches the network.
class Group {
 public:
  // Joins: rank 0 hosts the TCPStore at master_addr:master_port, every rank checks in with its
  // WORLD_SIZE, `tool` and `fingerprint` (the options that must agree, one per line); rank 0
  // refuses a mismatch, a rank claimed twice or a rank that does not join within the timeout, and
  // every rank gets the same one-line error. Then the Gloo process group is created.
  static std::unique_ptr<Group> join(const Launch& launch, const std::string& tool,
                                     const std::string& fingerprint);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int rank() const { return launch_.rank; }
  int size() const { return launch_.world_size; }
  bool root() const { return launch_.rank == 0; }
  const Launch& launch() const { return launch_; }
  // "rank 1 of 2" for messages.
  std::string who() const;

  // Sums `v` over the ranks in place (Gloo, FP64); every rank ends with the same bytes.
  void allreduce_sum(std::vector<double>& v);
  // Rank `root`'s bytes to every rank.
  void broadcast(std::string& bytes, int root = 0);
  void barrier();

  // The store as a mailbox (small values): put, a non-blocking take (nullopt when absent), and a
  // blocking get that fails after the timeout naming `what`.
  void put(const std::string& key, const std::string& value);
  std::optional<std::string> try_get(const std::string& key);
  std::string get(const std::string& key, const std::string& what);

 private:
  explicit Group(Launch l);
  template <class F>
  auto call(const std::string& what, F&& f) -> decltype(f());
  struct Impl;
  Launch launch_;
  std::unique_ptr<Impl> impl_;
  int64_t seq_ = 0;  // broadcast sequence number (its store keys)
};

// Thread default for a rank: LOCAL_WORLD_SIZE ranks on this machine share its cores (0: no
// LOCAL_WORLD_SIZE, the tool's own default applies).
int local_world_size();

}  // namespace dmx::dist
