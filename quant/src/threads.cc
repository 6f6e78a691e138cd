// The thread policy shared by the quant tools: OpenBLAS computes with N threads, LibTorch's
// intra-op pool with one (see threads.h).
#include "dmx/quant/threads.h"

#include <ATen/Parallel.h>
#include <dlfcn.h>
#include <sched.h>

#include <stdexcept>
#include <thread>

namespace dmx::quant {
namespace {

// OpenBLAS is loaded by LibTorch (through libblas.so.3); looked up at run time so that nothing
// breaks with another BLAS (then only LibTorch's pool is set).
using SetFn = void (*)(int);
using GetFn = int (*)();

SetFn blas_setter() {
  static SetFn f = reinterpret_cast<SetFn>(::dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  return f;
}
GetFn blas_getter() {
  static GetFn f = reinterpret_cast<GetFn>(::dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  return f;
}

}  // namespace

std::string ThreadChoice::describe() const {
  std::string s = std::to_string(threads) + (threads == 1 ? " thread" : " threads");
  if (defaulted) s += " (default for this work size)";
  return s;
}

int64_t thread_work_size(int64_t tokens_per_pass, int64_t hidden_size) {
  if (tokens_per_pass <= 0 || hidden_size <= 0) return 0;
  const double w = double(tokens_per_pass) * double(hidden_size);
  return w > 9e18 ? int64_t(9e18) : int64_t(w);
}

int available_cores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
  const unsigned hc = std::thread::hardware_concurrency();
  return hc > 0 ? static_cast<int>(hc) : 1;
}

int default_threads(int64_t work_size) {
  return work_size < kParallelWorkThreshold ? 1 : available_cores();
}

int blas_threads() {
  GetFn get = blas_getter();
  return get ? get() : 0;
}

ThreadChoice configure_threads(int64_t requested, int64_t work_size) {
  if (requested < 0)
    throw std::invalid_argument("--threads " + std::to_string(requested) +
                                ": must be 0 (default) or a positive count");
  if (requested > kMaxThreads)
    throw std::invalid_argument("--threads " + std::to_string(requested) + ": more than " +
                                std::to_string(kMaxThreads));
  ThreadChoice c;
  c.defaulted = requested == 0;
  c.threads = requested > 0 ? static_cast<int>(requested) : default_threads(work_size);
  SetFn set = blas_setter();
  if (set) {
    set(c.threads);
    c.blas_threads = blas_threads();
    c.torch_threads = 1;
  } else {  // no OpenBLAS: LibTorch's pool is the only one
    c.blas_threads = 0;
    c.torch_threads = c.threads;
  }
  at::set_num_threads(c.torch_threads);
  return c;
}

}  // namespace dmx::quant
