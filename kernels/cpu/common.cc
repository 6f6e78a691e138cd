// Path selection, the thread pool, decode tables and the exact scalar block step.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "internal.h"

namespace dmx::kernels {

const char* path_name(KernelPath p) {
  switch (p) {
    case KernelPath::Scalar:
      return "scalar";
    case KernelPath::AVX2:
      return "avx2";
    case KernelPath::AVX512:
      return "avx512";
  }
  return "?";
}

bool path_available(KernelPath p) {
  __builtin_cpu_init();
  switch (p) {
    case KernelPath::Scalar:
      return true;
    case KernelPath::AVX2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case KernelPath::AVX512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni") &&
             __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  return false;
}

KernelPath default_path() {
  static const KernelPath chosen = [] {
    KernelPath best = KernelPath::Scalar;
    for (KernelPath p : kAllPaths)
      if (path_available(p)) best = p;
    if (const char* env = std::getenv("DMX_KERNEL_PATH"); env && *env) {
      for (KernelPath p : kAllPaths) {
        if (std::string(env) == path_name(p)) {
          if (path_available(p)) return p;
          std::fprintf(stderr,
                       "dmx kernels: DMX_KERNEL_PATH=%s not supported by this CPU, using %s\n", env,
                       path_name(best));
          return best;
        }
      }
      std::fprintf(stderr,
                   "dmx kernels: DMX_KERNEL_PATH=%s unknown (scalar|avx2|avx512), using %s\n", env,
                   path_name(best));
    }
    return best;
  }();
  return chosen;
}

int default_threads() {
  if (const char* env = std::getenv("DMX_THREADS"); env && *env) {
    int t = std::atoi(env);
    if (t > 0) return t;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

BlockSumKind block_sum_kind(MxFormat a, MxFormat b) {
  const FormatInfo& ia = format_info(a);
  const FormatInfo& ib = format_info(b);
  // INT8's code 0x80 (-128) has one more unit than max_magnitude.
  const double ma = ia.max_magnitude + (ia.is_int ? 1 : 0);
  const double mb = ib.max_magnitude + (ib.is_int ? 1 : 0);
  const double span = ma * mb * kBlockSize;  // largest |block sum| in units of both quanta
  if (!ia.has_inf && !ia.has_nan && !ib.has_inf && !ib.has_nan && ma <= 32767 && mb <= 32767 &&
      span < 16777216.0)
    return BlockSumKind::Int16;
  // Double: every partial sum is a multiple of the product quantum below 2^53 of them.
  if (span < 9007199254740992.0) return BlockSumKind::Double;
  return BlockSumKind::Wide;
}

const char* block_sum_kind_name(BlockSumKind k) {
  switch (k) {
    case BlockSumKind::Int16:
      return "int16";
    case BlockSumKind::Double:
      return "double";
    case BlockSumKind::Wide:
      return "wide";
  }
  return "?";
}

void pad_rows(const float* in, size_t rows, size_t cols, float* out) {
  const size_t pc = padded_length(cols);
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(out + r * pc, in + r * cols, cols * sizeof(float));
    std::fill(out + r * pc + cols, out + (r + 1) * pc, 0.0f);
  }
}

void pad_rows_bf16(const uint16_t* in, size_t rows, size_t cols, uint16_t* out) {
  const size_t pc = padded_length(cols);
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(out + r * pc, in + r * cols, cols * sizeof(uint16_t));
    std::fill(out + r * pc + cols, out + (r + 1) * pc, uint16_t{0});
  }
}

namespace detail {

const FormatTable& table(MxFormat f) {
  static const std::vector<FormatTable> tables = [] {
    std::vector<FormatTable> t(kNumFormats);
    for (MxFormat fmt : kAllFormats) {
      FormatTable& ft = t[static_cast<int>(fmt)];
      const FormatInfo& info = format_info(fmt);
      const int ncodes = 1 << info.bits;
      for (int c = 0; c < 256; ++c) {
        const uint8_t code = static_cast<uint8_t>(c < ncodes ? c : 0);
        const ElementValue v = decode_element_exact(fmt, code);
        ft.unit[c] = decode_element(fmt, code);
        ft.unit_d[c] = ft.unit[c];
        ft.mag[c] = v.magnitude;
        ft.neg[c] = v.negative;
        ft.special[c] = v.is_nan ? 1 : v.is_inf ? 2 : 0;
        ft.value[c] = v;
        const int64_t sm = v.negative ? -int64_t(v.magnitude) : int64_t(v.magnitude);
        ft.q16[c] = (sm >= -32768 && sm <= 32767) ? static_cast<int16_t>(sm) : 0;
      }
    }
    return t;
  }();
  return tables[static_cast<int>(f)];
}

double scale_factor_d(uint8_t scale, int extra) {
  if (scale == kScaleNaN) return std::numeric_limits<double>::quiet_NaN();
  // Built from the bits (ldexp is slow): the exponent stays far inside double's normal range.
  const uint64_t bits = uint64_t(int64_t(scale) - kScaleBias + extra + 1023) << 52;
  double d;
  std::memcpy(&d, &bits, sizeof d);
  return d;
}

float exact_block(MxFormat fa, uint8_t sa, const uint8_t* ca, MxFormat fb, uint8_t sb,
                  const uint8_t* cb) {
  const FormatTable& ta = table(fa);
  const FormatTable& tb = table(fb);
  core::BlockSum sum;
  for (int i = 0; i < kBlockSize; ++i) sum.add(ta.value[ca[i]], tb.value[cb[i]]);
  const int qsum = format_info(fa).quantum_exp + format_info(fb).quantum_exp;
  return fp32_from_bits(sum.result_bits(qsum, sa, sb));
}

void unpack_range(MxFormat f, const uint8_t* row, size_t k0, size_t n, uint8_t* out) {
  const int bits = format_bits(f);
  if (bits == 8) {
    std::memcpy(out, row + k0, n);
  } else if (bits == 4) {
    const uint8_t* p = row + k0 / 2;
    for (size_t i = 0; i < n / 2; ++i) {
      out[2 * i] = p[i] & 0xF;
      out[2 * i + 1] = p[i] >> 4;
    }
  } else {  // 6 bits: four elements in three bytes, little-endian
    const uint8_t* p = row + k0 / 4 * 3;
    for (size_t i = 0; i < n / 4; ++i) {
      const uint32_t w = p[3 * i] | (uint32_t(p[3 * i + 1]) << 8) | (uint32_t(p[3 * i + 2]) << 16);
      out[4 * i] = w & 63;
      out[4 * i + 1] = (w >> 6) & 63;
      out[4 * i + 2] = (w >> 12) & 63;
      out[4 * i + 3] = (w >> 18) & 63;
    }
  }
}

// A persistent pool: workers wait for a new generation, then grab task indices from a shared
// counter; the caller takes part. The caller waits for the region's tasks to be done, not for
// every worker to check in: a worker that wakes late (a busy machine, a slow wake-up) finds no
// task left and the caller has already returned. A worker inside a region is counted (in_work_);
// the next region starts only when none is, so a late worker never sees the next region's
// counter or function.
namespace {
// Waits spin (with pause) up to DMX_POOL_SPIN_US microseconds (default 50; 0: block at once)
// before blocking on a condition variable, so back-to-back small calls (a GEMV of tens of
// microseconds) do not pay a futex wake-up each.
int64_t spin_ns() {
  static const int64_t ns = [] {
    const char* e = std::getenv("DMX_POOL_SPIN_US");
    const long us = e ? std::strtol(e, nullptr, 10) : 50;
    return int64_t(std::max(0L, us)) * 1000;
  }();
  return ns;
}

// Spins until done() or spin_ns() have passed; true if done() became true.
template <class Done>
bool spin_until(const Done& done) {
  const int64_t limit = spin_ns();
  if (done()) return true;
  if (limit == 0) return false;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 1;; ++i) {
    if (done()) return true;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
    if (i % 64 == 0 && std::chrono::steady_clock::now() - t0 > std::chrono::nanoseconds(limit))
      return false;
  }
}

class Pool {
 public:
  void run(size_t tasks, int threads, const std::function<void(size_t)>& fn) {
    std::lock_guard<std::mutex> run_lock(run_mu_);  // one parallel region at a time
    const int helpers = std::min<int>(threads - 1, int(tasks) - 1);
    ensure(helpers);
    {
      std::unique_lock<std::mutex> lk(mu_);
      idle_cv_.wait(lk, [&] { return in_work_ == 0; });  // late workers of the last region
      fn_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      done_.store(0);
      wanted_ = helpers;
      ++generation_;
    }
    cv_.notify_all();
    work();
    if (!spin_until([&] { return done_.load(std::memory_order_acquire) == tasks; })) {
      std::unique_lock<std::mutex> lk(mu_);
      done_cv_.wait(lk, [&] { return done_.load(std::memory_order_acquire) == tasks_; });
    }
  }
  ~Pool() {
    {
      std::unique_lock<std::mutex> lk(mu_);
      idle_cv_.wait(lk, [&] { return in_work_ == 0; });
      stop_ = true;
      ++generation_;
    }
    cv_.notify_all();
    for (auto& t : workers_) t.join();
  }

 private:
  void ensure(int n) {
    while (int(workers_.size()) < n) {
      const int id = int(workers_.size());
      // The worker starts from the generation current now (before run() bumps it), so it cannot
      // miss the region it was created for.
      uint64_t gen;
      {
        std::lock_guard<std::mutex> lk(mu_);
        gen = generation_;
      }
      workers_.emplace_back([this, id, gen] { loop(id, gen); });
    }
  }
  // Runs tasks until none is left; the thread that completes the last one wakes the caller.
  void work() {
    const size_t tasks = tasks_;
    for (size_t t; (t = next_.fetch_add(1)) < tasks;) {
      (*fn_)(t);
      if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == tasks) {
        std::lock_guard<std::mutex> lk(mu_);
        done_cv_.notify_all();
      }
    }
  }
  void loop(int id, uint64_t seen) {
    for (;;) {
      spin_until([&] { return generation_.load(std::memory_order_relaxed) != seen; });
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (stop_) return;
        if (id >= wanted_) continue;
        ++in_work_;
      }
      work();
      std::lock_guard<std::mutex> lk(mu_);
      if (--in_work_ == 0) idle_cv_.notify_all();
    }
  }
  std::mutex run_mu_, mu_;
  std::condition_variable cv_, done_cv_, idle_cv_;
  std::vector<std::thread> workers_;
  const std::function<void(size_t)>* fn_ = nullptr;
  size_t tasks_ = 0;
  std::atomic<size_t> next_{0}, done_{0};
  int in_work_ = 0, wanted_ = 0;
  std::atomic<uint64_t> generation_{0};  // written under mu_; read without it only to spin
  bool stop_ = false;
};
}  // namespace

void parallel_for(size_t tasks, int threads, const std::function<void(size_t)>& fn) {
  if (tasks == 0) return;
  if (threads <= 1 || tasks == 1) {
    for (size_t t = 0; t < tasks; ++t) fn(t);
    return;
  }
  static Pool pool;
  pool.run(tasks, threads, fn);
}

}  // namespace detail
}  // namespace dmx::kernels
