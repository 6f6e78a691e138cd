// One thread policy for every quant tool (dmx-eval, dmx-search, dmx-train, dmx-generate,
// dmx-bench-forward). LibTorch's CPU build runs its element-wise ops on an OpenMP pool and its
// matrix products in OpenBLAS (Debian: the pthread build), which has a pool of its own; left alone
// both pools start one thread per core, and their spinning workers fight over the same cores
// (on 2 cores `--threads 2` was 2.7x slower than one thread). Here exactly one pool computes in
// parallel: OpenBLAS gets the N threads (the matrix products are nearly all of the work) and
// LibTorch's intra-op pool is kept at one thread, so the process never runs more than N busy
// threads.
#pragma once

#include <cstdint>
#include <string>

namespace dmx::quant {

struct ThreadChoice {
  int threads = 1;               // compute threads the process uses (what --threads means)
  int torch_threads = 1;         // LibTorch intra-op (OpenMP) threads
  int blas_threads = 1;          // OpenBLAS threads (0 when no OpenBLAS is loaded)
  bool defaulted = false;        // chosen from the work size (no --threads N)
  std::string describe() const;  // e.g. "2 threads (default for this work size)"
};

// Largest --threads accepted (a usage error above it).
constexpr int kMaxThreads = 1024;

// Work per forward pass, the size the default is chosen from: tokens per pass x hidden size.
int64_t thread_work_size(int64_t tokens_per_pass, int64_t hidden_size);

// Below this work size one thread is the default (OpenBLAS would split products too small to
// gain from it); at or above it, all cores. On the 2-core Xeon of reports/quant_forward.md two
// threads already gained at llama-tiny's 128-token windows (128 x 192 = 24,576); the threshold
// sits below that and above toy sizes (quant/README.md, "Threads").
constexpr int64_t kParallelWorkThreshold = 16 * 1024;

// The default thread count for a work size on this machine (1 below the threshold, else the
// number of cores the process may run on).
int default_threads(int64_t work_size);

// Applies the policy: requested > 0 is used exactly; 0 means default_threads(work_size).
// Throws std::invalid_argument (a one-line message) when requested is negative or above
// kMaxThreads.
ThreadChoice configure_threads(int64_t requested, int64_t work_size);

// Cores this process may run on (sched_getaffinity, else hardware_concurrency, at least 1).
int available_cores();

// OpenBLAS's current thread count, or 0 when no OpenBLAS is loaded.
int blas_threads();

}  // namespace dmx::quant
