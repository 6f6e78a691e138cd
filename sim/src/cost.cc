// GEMM costs: the format-independent tiling, composition of simulated tiles, functional runs.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <unordered_map>

#include "accelerator.h"
#include "dmx/sim.h"

namespace dmx::sim {

using detail::TileJob;

namespace {
int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
}  // namespace

namespace detail {
std::vector<TileJob> make_tiles(const ArchConfig& a, const GemmShape& s,
                                const GemmPlacement& place) {
  const Tiling tl = choose_tiling(a, s);
  const int64_t KB = ceil_div(s.k, kBlockSize);
  const int64_t MT = ceil_div(s.m, tl.mt), NT = ceil_div(s.n, tl.nt), KT = ceil_div(KB, tl.kbt);
  // Bounded before anything is allocated: a schedule of more tiles than this is no real layer on
  // a real buffer size (Llama-3.1-405B's largest Linear, m = 2048 tokens x n = 53248 x k = 16384,
  // needs 243,712 tiles on the edge config).
  constexpr int64_t kMaxTiles = int64_t(1) << 20;
  if (double(MT) * double(NT) * double(KT) > double(kMaxTiles))
    throw ConfigError("GEMM m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                      " k=" + std::to_string(s.k) + " needs " +
                      std::to_string(int64_t(double(MT) * double(NT) * double(KT))) +
                      " SRAM tiles on " + a.name + " (at most " + std::to_string(kMaxTiles) + ")");
  std::vector<TileJob> tiles;
  tiles.reserve(size_t(MT * NT * KT));
  for (int64_t mi = 0; mi < MT; ++mi)
    for (int64_t ni = 0; ni < NT; ++ni)
      for (int64_t ki = 0; ki < KT; ++ki) {
        TileJob t;
        t.m0 = mi * tl.mt;
        t.mt = std::min(tl.mt, s.m - t.m0);
        t.n0 = ni * tl.nt;
        t.nt = std::min(tl.nt, s.n - t.n0);
        t.kb0 = ki * tl.kbt;
        t.kbt = std::min(tl.kbt, KB - t.kb0);
        t.load_a = place.a_from_dram && !(KT == 1 && ni > 0);
        t.load_b = !(KT == 1 && NT == 1 && mi > 0);
        t.first_k = ki == 0;
        t.write_c = ki == KT - 1;
        t.c_dram = place.c_to_dram;
        tiles.push_back(t);
      }
  return tiles;
}
}  // namespace detail

static EnergyBreakdown energy_of(const ArchConfig& a, MxFormat w, MxFormat f, const GemmCost& c) {
  EnergyBreakdown e;
  e.mac = double(c.macs) * a.mac_pj[int(w)][int(f)];
  e.sram_read = double(c.sram_read_bytes) * a.sram_read_pj_per_byte;
  e.sram_write = double(c.sram_write_bytes) * a.sram_write_pj_per_byte;
  e.dram = double(c.dram_bytes) * a.dram_pj_per_byte;
  e.static_ = a.static_mw * 1e9 * c.seconds;  // mW x s = mJ = 1e9 pJ
  return e;
}

namespace {

void check_shape(const GemmShape& s) {
  // Bounds keep M*N*K and the byte counts inside int64 (and a table's run time in seconds).
  constexpr int64_t kMaxDim = int64_t(1) << 24;
  if (s.m < 1 || s.n < 1 || s.k < 1 || s.m > kMaxDim || s.n > kMaxDim || s.k > kMaxDim)
    throw ConfigError("GEMM shape m=" + std::to_string(s.m) + " n=" + std::to_string(s.n) +
                      " k=" + std::to_string(s.k) + ": each must be in [1, 16777216]");
}

GemmCost finish_cost(const ArchConfig& a, const GemmShape& s, MxFormat w, MxFormat f,
                     const detail::JobStats& st, int64_t tiles, int64_t simulated) {
  GemmCost c;
  c.cycles = st.cycles;
  c.seconds = double(st.cycles) / (a.clock_ghz * 1e9);
  c.dram_bytes = st.dram_bytes;
  c.sram_read_bytes = st.sram_read;
  c.sram_write_bytes = st.sram_write;
  c.macs = s.m * s.n * ceil_div(s.k, kBlockSize) * kBlockSize;
  c.energy = energy_of(a, w, f, c);
  c.energy_pj = c.energy.total();
  c.utilization =
      st.cycles ? double(c.macs) / (double(st.cycles) * a.peak_macs_per_cycle(w, f)) : 0;
  c.tiles = tiles;
  c.simulated_tiles = simulated;
  return c;
}

// A tile's timing signature: everything about it that the timing simulation depends on.
struct Sig {
  int64_t mt, nt, kbt;
  uint8_t flags;
  bool operator==(const Sig& o) const {
    return mt == o.mt && nt == o.nt && kbt == o.kbt && flags == o.flags;
  }
};
Sig sig_of(const TileJob& t) {
  return {
      t.mt, t.nt, t.kbt,
      uint8_t(t.load_a | (t.load_b << 1) | (t.first_k << 2) | (t.write_c << 3) | (t.c_dram << 4))};
}
TileJob tile_of(const Sig& s) {
  TileJob t;
  t.mt = s.mt;
  t.nt = s.nt;
  t.kbt = s.kbt;
  t.load_a = s.flags & 1;
  t.load_b = s.flags & 2;
  t.first_k = s.flags & 4;
  t.write_c = s.flags & 8;
  t.c_dram = s.flags & 16;
  return t;
}

}  // namespace

struct TileCache::Impl {
  std::unordered_map<std::string, detail::JobStats> windows;
  std::unordered_map<std::string, GemmCost> gemms;
  int64_t simulations = 0;

  detail::JobStats window(const ArchConfig& a, MxFormat w, MxFormat f, const std::vector<Sig>& sigs,
                          int64_t* simulated_tiles) {
    std::ostringstream key;
    key << a.fingerprint() << '|' << int(w) << ',' << int(f);
    for (const Sig& s : sigs)
      key << '|' << s.mt << ',' << s.nt << ',' << s.kbt << ',' << int(s.flags);
    auto it = windows.find(key.str());
    if (it != windows.end()) return it->second;
    std::vector<TileJob> tiles;
    for (const Sig& s : sigs) tiles.push_back(tile_of(s));
    detail::JobStats st = detail::run_job(a, w, f, tiles);
    ++simulations;
    *simulated_tiles += int64_t(tiles.size());
    windows.emplace(key.str(), st);
    return st;
  }
};

TileCache::TileCache() : impl_(std::make_unique<Impl>()) {}
TileCache::~TileCache() = default;
size_t TileCache::size() const { return impl_->windows.size(); }
int64_t TileCache::simulations() const { return impl_->simulations; }

GemmCost simulate_gemm(const ArchConfig& a, const GemmShape& s, MxFormat w, MxFormat f,
                       const GemmPlacement& place) {
  check_shape(s);
  auto tiles = detail::make_tiles(a, s, place);
  detail::JobStats st = detail::run_job(a, w, f, tiles);
  return finish_cost(a, s, w, f, st, int64_t(tiles.size()), int64_t(tiles.size()));
}

// Composition: the schedule is a double-buffered pipeline whose state depends on the last few
// tiles, so a tile's cost is its marginal cost after its C = 3 predecessors:
//   T(s_0..s_n-1) ~= T(s_0..s_C-1) + sum_{i>=C} [T(s_i-C..s_i) - T(s_i-C..s_i-1)]
// where T(window) is a cycle simulation of just those tiles, cached by the tiles' signatures.
// Bytes are additive, so they compose exactly; cycles are checked against simulate_gemm (tests).
GemmCost cost_gemm(const ArchConfig& a, const GemmShape& s, MxFormat w, MxFormat f,
                   TileCache* cache, const GemmPlacement& place) {
  check_shape(s);
  TileCache local;
  TileCache::Impl& c = (cache ? cache : &local)->impl();
  std::ostringstream gkey;
  gkey << a.fingerprint() << '|' << int(w) << ',' << int(f) << '|' << s.m << ',' << s.n << ','
       << s.k << '|' << place.a_from_dram << place.c_to_dram;
  auto hit = c.gemms.find(gkey.str());
  if (hit != c.gemms.end()) {
    const GemmCost& r = hit->second;
    // Energy recomputed: the cache key leaves energy parameters out.
    return finish_cost(a, s, w, f, {r.cycles, r.dram_bytes, r.sram_read_bytes, r.sram_write_bytes},
                       r.tiles, 0);
  }
  const auto tiles = detail::make_tiles(a, s, place);
  std::vector<Sig> sigs;
  sigs.reserve(tiles.size());
  for (const auto& t : tiles) sigs.push_back(sig_of(t));
  int64_t simulated = 0;
  detail::JobStats total;
  constexpr size_t kContext = 3;  // tiles of history that a tile's marginal cost depends on
  if (sigs.size() <= kContext + 1) {
    total = c.window(a, w, f, sigs, &simulated);
  } else {
    total = c.window(a, w, f, {sigs.begin(), sigs.begin() + kContext}, &simulated);
    // Runs of identical windows are frequent; remember the last marginal.
    std::vector<Sig> last;
    detail::JobStats marg;
    for (size_t i = kContext; i < sigs.size(); ++i) {
      std::vector<Sig> win(sigs.begin() + (i - kContext), sigs.begin() + i + 1);
      if (win != last) {
        detail::JobStats with = c.window(a, w, f, win, &simulated);
        detail::JobStats without = c.window(a, w, f, {win.begin(), win.end() - 1}, &simulated);
        marg = {with.cycles - without.cycles, with.dram_bytes - without.dram_bytes,
                with.sram_read - without.sram_read, with.sram_write - without.sram_write};
        last = win;
      }
      total.cycles += marg.cycles;
      total.dram_bytes += marg.dram_bytes;
      total.sram_read += marg.sram_read;
      total.sram_write += marg.sram_write;
    }
  }
  GemmCost r = finish_cost(a, s, w, f, total, int64_t(tiles.size()), simulated);
  c.gemms.emplace(gkey.str(), r);
  return r;
}

GemmRun run_gemm(const ArchConfig& a, const MxMatrix& A, const MxMatrix& B) {
  if (A.cols != B.cols || A.cols % kBlockSize != 0 || A.cols <= 0)
    throw ConfigError("run_gemm: shape mismatch: A is " + std::to_string(A.rows) + "x" +
                      std::to_string(A.cols) + ", B (weights, N x K) is " + std::to_string(B.rows) +
                      "x" + std::to_string(B.cols) + " (K must match and be a multiple of 32)");
  const size_t kb = size_t(A.cols / kBlockSize);
  if (A.codes.size() != size_t(A.rows * A.cols) || B.codes.size() != size_t(B.rows * B.cols) ||
      A.scales.size() != size_t(A.rows) * kb || B.scales.size() != size_t(B.rows) * kb)
    throw ConfigError("run_gemm: operand buffers do not match their shapes");
  GemmShape s{A.rows, B.rows, A.cols};
  auto tiles = detail::make_tiles(a, s, {});
  std::vector<uint32_t> c_bits(size_t(s.m * s.n), 0x80000000u);
  detail::JobData d{&A, &B, &c_bits};
  detail::JobStats st = detail::run_job(a, B.format, A.format, tiles, d);
  GemmRun r;
  r.cost = finish_cost(a, s, B.format, A.format, st, int64_t(tiles.size()), int64_t(tiles.size()));
  r.c.resize(c_bits.size());
  for (size_t i = 0; i < c_bits.size(); ++i) r.c[i] = fp32_from_bits(c_bits[i]);
  return r;
}

GemmCost cost_transfer(const ArchConfig& a, int64_t read_bytes, int64_t write_bytes) {
  if (read_bytes < 0 || write_bytes < 0) throw ConfigError("transfer bytes must be >= 0");
  GemmCost c;
  const int64_t bytes = read_bytes + write_bytes;
  if (bytes > 0)  // the DRAM model's channel time (accelerator.cc) plus one latency
    c.cycles = int64_t(std::ceil(double(bytes) / a.dram_bytes_per_cycle())) +
               int64_t(std::llround(a.dram_latency_ns * a.clock_ghz));
  c.seconds = double(c.cycles) / (a.clock_ghz * 1e9);
  c.dram_bytes = bytes;
  c.sram_write_bytes = read_bytes;                             // DRAM -> SRAM
  c.sram_read_bytes = write_bytes;                             // SRAM -> DRAM
  c.energy = energy_of(a, MxFormat::E4M3, MxFormat::E4M3, c);  // no MACs
  c.energy_pj = c.energy.total();
  return c;
}

}  // namespace dmx::sim
