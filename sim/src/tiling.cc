// The SRAM tiling of a GEMM: a function of the shape and the architecture only (see sim.h).
#include <algorithm>

#include "dmx/sim.h"

namespace dmx::sim {
namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// Largest value <= x that is a multiple of `q` when x >= q (else x itself), and >= 1.
int64_t round_down_to(int64_t x, int64_t q) {
  if (x >= q) x = x / q * q;
  return x < 1 ? 1 : x;
}
}  // namespace

Tiling choose_tiling(const ArchConfig& a, const GemmShape& s) {
  const int64_t KB = ceil_div(s.k, kBlockSize);
  // Sized for the widest operands (8-bit elements + scale) and rounded to the widest the array
  // gets, so that one schedule serves every format pair (see sim.h: monotone costs).
  int64_t bb = 0;
  for (MxFormat f : kAllFormats) bb = std::max(bb, block_bytes(f));
  const int64_t bba = bb, bbw = bb;
  // Each buffer is double-buffered: a tile may use half of it.
  const double cap_a = a.sram_a_kib * 1024 / 2, cap_b = a.sram_b_kib * 1024 / 2;
  const double cap_c = a.sram_c_kib * 1024 / 2;
  const int64_t R = a.units, Ce = int64_t(a.lanes) * a.max_throughput();
  const int64_t mt0 = std::min<int64_t>(s.m, R), nt0 = std::min<int64_t>(s.n, Ce);
  // For each candidate K depth (whole K, then halves), size M and N tiles to fill the buffers,
  // and keep the candidate with the least DRAM traffic (A is re-read per N tile unless K fits in
  // one tile; B is re-read per M tile).
  Tiling best;
  double best_traffic = 0;
  for (int64_t kbt = KB;; kbt = ceil_div(kbt, 2)) {
    Tiling t;
    t.kbt = kbt;
    t.mt = round_down_to(std::min<int64_t>(s.m, int64_t(cap_a / double(kbt * bba))), R);
    t.nt = round_down_to(std::min<int64_t>(s.n, int64_t(cap_b / double(kbt * bbw))), Ce);
    while (double(t.mt) * t.nt * 4 > cap_c && (t.mt > 1 || t.nt > 1)) {
      if (t.nt >= t.mt && t.nt > 1)
        t.nt = round_down_to(t.nt / 2, Ce);
      else
        t.mt = round_down_to(t.mt / 2, R);
    }
    const int64_t MT = ceil_div(s.m, t.mt), NT = ceil_div(s.n, t.nt), KT = ceil_div(KB, kbt);
    const bool fits = mt0 * kbt * bba <= cap_a && nt0 * kbt * bbw <= cap_b;
    const double traffic = double(s.m * KB * bba) * (KT == 1 ? 1 : NT) +
                           double(s.n * KB * bbw) * (KT == 1 && NT == 1 ? 1 : MT);
    if ((fits || kbt == 1) && (best.kbt == 0 || traffic < best_traffic)) {
      best = t;
      best_traffic = traffic;
    }
    if (kbt == 1) break;
  }
  return best;
}

}  // namespace dmx::sim
