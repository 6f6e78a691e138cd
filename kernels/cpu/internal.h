// Internal helpers shared by the CPU kernel sources (not installed, not part of the API).
#pragma once

#include <dmx/golden.h>
#include <dmx/kernels.h>

#include <cstddef>
#include <cstdint>
#include <functional>

namespace dmx::kernels::detail {

// Per-format decode tables, built once from golden's element definitions.
struct FormatTable {
  float unit[256];          // element value (scale 2^0), NaN/Inf included
  double unit_d[256];       // same as double
  int16_t q16[256];         // signed magnitude in units of 2^quantum_exp (valid if int16-able)
  uint32_t mag[256];        // magnitude in units of 2^quantum_exp
  uint8_t neg[256];         // sign bit set
  uint8_t special[256];     // 0 finite, 1 NaN, 2 Inf
  ElementValue value[256];  // the MX core's decode (exact_block's operand)
};
const FormatTable& table(MxFormat f);

// The path a call runs: the requested one if the CPU has it, else the best available.
inline KernelPath usable_path(KernelPath p) { return path_available(p) ? p : default_path(); }

// The exact dot_blocked block step from unpacked codes (128-bit integer sum): the scalar path
// and the slow corner cases (zero sums, Wide pairs) of the SIMD paths.
float exact_block(MxFormat fa, uint8_t sa, const uint8_t* ca, MxFormat fb, uint8_t sb,
                  const uint8_t* cb);

// 2^(scale - 127 + extra) as double; NaN for scale 0xFF.
double scale_factor_d(uint8_t scale, int extra);

// Unpacks codes [k0, k0 + n) of one packed row into bytes (k0, n multiples of 32).
void unpack_range(MxFormat f, const uint8_t* row, size_t k0, size_t n, uint8_t* out);

// Runs fn(task) for task in [0, tasks) on up to `threads` threads (a persistent pool; the caller
// takes part). Tasks are handed out in increasing order, dynamically.
void parallel_for(size_t tasks, int threads, const std::function<void(size_t)>& fn);

// Path-specific kernels, defined in simd_avx2.cc / simd_avx512.cc (compiled with target
// attributes; only called when path_available() says so).
//
// MX x MX tile: 8 weight rows. Adec: M rows of decoded A (int16 or double, stride lda elements),
// Wt: blocks [j0, j1) of the tile, layout [j - j0][r][32]; afac[m * nb + j], wfac[(j - j0) * 8 + r]
// the exact scale factors; acc[m * 8 + r] accumulates r_j in increasing j. Lanes whose integer
// block sum is zero are recomputed by fix(m, r, j) (the sign of a zero sum needs the codes).
struct TileArgs {
  size_t M, nb, j0, j1, lda;
  const void* Adec;
  const void* Wt;
  const double* afac;
  const double* wfac;
  float* acc;
  const std::function<float(size_t m, int r, size_t j)>* fix;
};
void double_tile_avx2(const TileArgs& t);
void double_tile_avx512(const TileArgs& t);
// MX x MX integer tile (block sums exact in int32, |sum| < 2^24). Wt: [j - j0][r][32] weights as
// u8 (signed value in quanta + offset; int8 kernel) or int16; Adec: M rows of s8 / int16 values in
// quanta (stride lda). acorr[m * nb + j] (int8 kernel) = offset * sum of A's block, subtracted.
// Scale exponents e = scale - 127 + quantum_exp: aexp/afac_f/afac_d per [m * nb + j] (aexp =
// kNaNExp for a NaN scale), wfac_f/wfac_d per [(j - j0) * 8 + r], wexp_min/max per j - j0.
inline constexpr int kNaNExp = 100000;
// The exponent of scale code `scale` with the element format's quantum 2^q folded in (kNaNExp
// for the NaN code).
inline int scale_exp(int scale, int q) {
  return scale == kScaleNaN ? kNaNExp : scale - kScaleBias + q;
}
struct IntTileArgs {
  size_t M, nb, j0, j1, lda;
  const void* Adec;
  const void* Wt;
  const int32_t* acorr;
  const int32_t* aexp;
  const float* afac_f;
  const double* afac_d;
  const int32_t* wexp_min;
  const int32_t* wexp_max;
  const float* wfac_f;
  const double* wfac_d;
  float* acc;
  const std::function<float(size_t m, int r, size_t j)>* fix;
};
void int8_tile_avx2(const IntTileArgs& t);
void int16_tile_avx2(const IntTileArgs& t);
// FP6: nblocks blocks of 24 packed bytes -> 32 codes each (the same as unpack_range); and 6-bit
// codes -> s8 values through a 32-entry magnitude table (sign in bit 5), n a multiple of 32.
void unpack_fp6_avx2(const uint8_t* packed, size_t nblocks, uint8_t* out);
void decode_fp6_s8_avx2(const uint8_t* codes, size_t n, const int8_t* mag32, int8_t* out);
// Codes below 64 -> lut64[code] (n a multiple of 32; four vpshufb and three blends per 32 bytes).
void lut64_bytes_avx2(const uint8_t* codes, size_t n, const uint8_t* lut64, uint8_t* out);
// Codes below 64 -> int16 lut64[code] (n a multiple of 32): the byte tables of the low and high
// bytes, then interleaved.
void lut64_i16_avx2(const uint8_t* codes, size_t n, const int16_t* lut64, int16_t* out);

// Interleaved integer GEMM (MX x MX, BlockSumKind::Int16, M >= 2). W is packed per call, per K
// chunk, into tiles of 8 columns: int8 kernel [group of 4 k][8 columns][4 s8] (one 256-bit vector
// = 8 columns x 4 k), int16 kernel [pair of k][8 columns][2 int16]. A rows are broadcast 4 bytes
// (u8 = value + ra) or 2 int16 at a time; the micro-kernel covers 4 A rows x 2 tiles (16 columns).
// int8: vpmaddubsw products summed in int16 over runs of G groups (the run's lane sums are true
// products sums bounded by 2G * ra * rw <= 32767; the lanes start at -ra * sum(w) of the run, so
// the A offset cancels and intermediate wrap-around is harmless), vpmaddwd with ones per run, int32
// over the block. int16: vpmaddwd + vpaddd. Block step: when every ea + eb of the micro-tile lies
// in
// [-126, 103], r_j = s * 2^(ea+eb) is exact and acc = fma(float(s), 2^(ea+eb), acc) equals
// acc + r_j; otherwise slow(r, t, j, s[8], acc[8]) does the exact FP64 step. Zero sums give +0 (the
// sign of a zero r_j shows only in a zero result, which the driver recomputes exactly).
struct IntMicroArgs {
  size_t nbc;                // blocks of the chunk
  const void* a[4];          // A rows at the chunk start (u8 + ra, or int16)
  const int32_t* aexp23[4];  // per block: ea << 23 (chunk start)
  const int32_t* ga_min;     // per block: min / max ea of the 4 rows (kNaNExp for NaN)
  const int32_t* ga_max;
  const void* w[2];          // packed W tiles at the chunk start
  const int16_t* corr[2];    // int8: per block, per run, 16 int16 lane starts
  const int32_t* wexp23[2];  // per block: 8 x (eb + 127) << 23
  const int32_t* gw_min;     // per block: min / max eb of the 16 columns
  const int32_t* gw_max;
  float* acc;  // acc[r * acc_stride + t * 8 + l]: FP32 running sums
  size_t acc_stride;
  bool init;  // the chunk starts the sums: acc is taken as -0 before block 0 (not read)
  // slow(r, ...): r counts rows from the first group's row 0 (4 * gi + row in group gi).
  const std::function<void(int r, int t, size_t j, const int32_t* s, float* acc8)>* slow;
  // Row groups of this call: group gi's A rows at a[r] + gi * 4 * a_stride (elements), its
  // exponents at aexp23[r] + gi * 4 * e_stride, ga_min / ga_max + gi * g_stride, its sums at
  // acc + (4 * gi + r) * acc_stride.
  size_t ngroups = 1, a_stride = 0, e_stride = 0, g_stride = 0;
};
void int8_micro_avx2(const IntMicroArgs& t, int G);
void int16_micro_avx2(const IntMicroArgs& t);
// 8 rows of ndw dwords (row r at in + r * in_stride, ndw a multiple of 8) -> out[d * 8 + r].
void transpose_dwords8_avx2(const int32_t* in, size_t in_stride, size_t ndw, int32_t* out);
// int8 packed tile (ngroups groups of 32 bytes): per run of G groups, the 16 int16 lane starts
// -ra * (w[4g] + w[4g+1]) / -ra * (w[4g+2] + w[4g+3]) summed over the run.
void int8_corrections_avx2(const int8_t* wp, size_t ngroups, int G, int ra, int16_t* corr);

// Interleaved FP64 GEMM (MX x MX, BlockSumKind::Double, and Wide pairs block by block): W packed
// per panel and K chunk as [k][12 columns] doubles (element values at scale 1), A rows as doubles;
// the micro-kernel covers 4 A rows x 12 columns, one 256-bit FMA per (row, 4 columns, k), the
// block sums start at -0 (the dot_blocked zero sign) and are exact while every partial sum stays
// a multiple of the product quantum below 2^53 of them (always for Double pairs; for Wide pairs
// where fast[j] says the block's exponent span allows it). r_j = float(sum * wfac * afac) (exact
// products of powers of two, one rounding); acc += r_j in FP32. Blocks with fast[j] == 0 call
// slow(r, c, j, &acc) for each of the 48 sums.
struct F64MicroArgs {
  size_t nbc;
  const double* a[4];     // A rows at the chunk start
  const double* afac[4];  // per block: 2^(sa - 127) (NaN for a NaN scale), chunk start
  const double* w;        // packed W: [k][12] from the chunk start
  const double* wfac;     // per block: 12 x 2^(sb - 127)
  const uint8_t* fast;    // per block (null: every block)
  float* acc;             // acc[r * acc_stride + c]
  size_t acc_stride;
  bool init;
  const std::function<void(int r, int c, size_t j, float* acc1)>* slow;
};
void f64_micro_avx2(const F64MicroArgs& t);

// MX x MX GEMV (M = 1), FP4 weights in the int8 scheme, 8 weight rows straight from the packed
// codes. a: A as s8 permuted per block pair (64 bytes: even elements of blocks j, j+1, then odd
// ones), zero-padded to an even block count; acorr/aexp/afac_d per block as in IntTileArgs;
// sc: the 8 rows' scale codes, row r at sc + r * sc_stride, readable 4 bytes past nb; acc: 8 sums.
struct Fp4GemvArgs {
  size_t nb;
  const int8_t* a;
  const int32_t* acorr;
  const int32_t* aexp;
  const double* afac_d;
  const uint8_t* rows[8];
  const uint8_t* sc;
  size_t sc_stride;
  int qw;
  const int8_t* lut16;
  float* acc;
  const std::function<float(size_t m, int r, size_t j)>* fix;
  // Optional: the next 8 rows' codes (contiguous, pf_bytes), prefetched linearly alongside.
  const uint8_t* pf;
  size_t pf_bytes;
  // Every ea + eb of the tile lies in [-126, 103] (no NaN scale): the block step is
  // acc = fma(float(s), 2^(ea+eb), acc) (exact product, so acc + r_j), no per-block checks;
  // zero sums give +0, so the caller recomputes zero results exactly.
  bool fast;
};
void fp4_gemv_rows8_avx2(const Fp4GemvArgs& t);
// FP4 blocks (16 packed bytes each) -> 32 bytes via a 16-entry table (u8/s8), or widened to int16;
// block j written at out + j * out_stride (elements).
void decode_fp4_blocks_avx2(const uint8_t* packed, size_t nblocks, const int8_t* lut16, bool to_i16,
                            void* out, size_t out_stride);
void widen_i8_blocks_avx2(const int8_t* in, size_t nblocks, int16_t* out, size_t out_stride);
// Mixed GEMV (M = 1) over 8 weight rows, weights decoded in registers (FP4 and 8-bit formats;
// false for FP6): lanes[r * 8 + l] accumulate k = l mod 8 in increasing k, as mixed_tile_avx2.
// pf / pf_bytes (optional): the next rows' codes, prefetched linearly alongside.
bool mixed_gemv_rows8_avx2(MxFormat f, const float* a, const uint8_t* const* rows,
                           const uint8_t* const* scales, size_t nb, float* lanes,
                           const uint8_t* pf = nullptr, size_t pf_bytes = 0);
// Mixed tile: 8 dequantized weight rows Wf[r][kc] (kc = chunk length), A rows (stride lda) from
// column k0, kc columns; Wf row r at Wf + r * ldw; lanes[(m * 8 + r) * 8 + l] are the 8
// interleaved FP32 accumulators.
void mixed_tile_avx2(size_t M, const float* A, size_t lda, size_t k0, size_t kc, const float* Wf,
                     size_t ldw, float* lanes);
// One block of unpacked codes -> int16 quantum magnitudes (FP4, INT8) or exact doubles (8-bit
// formats); false where the format has no vector decoder (the caller then uses the tables).
bool decode_block_int16_avx2(MxFormat f, const uint8_t* codes, int16_t* out);
bool decode_block_double_avx2(MxFormat f, const uint8_t* codes, double* out);
// Quantize / dequantize rows with default options (FLOOR, SAT, NAN_SCALE), canonical packing.
void quantize_rows_avx2(MxFormat f, const float* x, size_t cols, uint8_t* codes, uint8_t* scales);
void dequantize_row_avx2(MxFormat f, const uint8_t* codes, const uint8_t* scales, size_t cols,
                         float* out);

}  // namespace dmx::kernels::detail

namespace dmx::kernels::detail {

// ---- M = 1 MX x MX GEMV straight from the packed weights -------------------------------------
// gemv_mx.cc drives, the kernels are in simd_avx512_gemv.cc / simd_avx2_gemv.cc. Each weight row is
// read once; A is prepared once per call for the route:
//   I8   (W in E2M1/E2M3/INT8, A in E2M1/E2M3/INT8): W codes -> u8 = w + 128 (w in quanta) by a
//        64-entry byte table, A as s8 in quanta, int32 block sums (vpdpbusd); acorr[j] =
//        128 * sum of A's block j is subtracted.
//   I16  (W in E2M1/E2M3/E3M2, A in any integer format): W -> int16 via low/high byte tables, A as
//        int16 in the kernel's element order (a64_order), int32 block sums (vpdpwssd).
//   F64  (W and A in E4M3/E5M2): W -> FP16 bit patterns -> FP32 -> FP64, A as exact doubles; FP64
//        block sums, exact where the block pair's exponent span fits 53 bits (every E4M3 pair;
//        for E5M2 the driver flags A blocks whose span could exceed it as unsafe: those r_j come
//        from patch()).
// Block step (all routes): r_j = float(double(s) * 2^(ea + eb)) (exact product, one rounding),
// acc += r_j in FP32 in increasing j, acc starting at -0. Zero integer sums give +0 (the driver
// recomputes zero results exactly).
//   I16S (AVX-512, E4M3 x E4M3, A without NaN codes): each E4M3 magnitude in quanta (< 2^18) is
//        split by binade into lo (values < 2^11) or hi (values >= 2^11, stored / 2^8), both int16;
//        T0 = lo*lo, T8 = lo*hi + hi*lo, T16 = hi*hi summed with vpdpwssd (each element pair
//        lands in exactly one, |T| < 2^27), s = T0 + 2^8 T8 + 2^16 T16 exactly in FP64. A tile
//        holding a W NaN code reports it (saw_nan) and the driver reruns it on the F64 route.
enum class GemvRoute : uint8_t { I8, I16, F64, I16S };
struct MxGemvArgs {
  GemvRoute route;
  MxFormat wf;
  size_t nb;              // blocks per row
  const void* a;          // A for the route, nb rounded up to even, zero padded
  const int32_t* acorr;   // I8: per block, subtracted from the sums; else null
  const int32_t* aexp;    // per block: ea, or kNaNExp for a NaN scale
  int wexp_off;           // eb = sb - 127 + wexp_off
  const uint8_t* lut;     // I8: 64 bytes (u8 codes); I16: 64 low bytes then 64 high bytes
  const int16_t* lut16w;  // AVX2: W's values in quanta per code (64 entries, FP4 repeated)
  const void* a2;         // I16S: A's hi parts (a holds the lo parts), same order as I16
  const uint8_t* lut4;    // I16S: 4 x 128 bytes: lo part low / high bytes, hi part low / high
  bool* saw_nan;          // I16S: set when a W NaN code was seen (the results are then invalid)
  const uint8_t* rows[8];
  const uint8_t* wsc;     // the 8 rows' scales transposed: wsc[j * 8 + r], nb rounded up to even
  const uint8_t* unsafe;  // per block (null: none): r_j of the 8 rows from patch
  const std::function<void(size_t j, float* r8)>* patch;
  float* out;  // 8 results
  // Integer routes: every ea + eb of the tile lies in [-126, 103] (no NaN scale), so r_j =
  // float(s) * 2^(ea+eb) exactly (|s| < 2^24) with the factor built from FP32 exponent fields.
  bool fast;
  // Optional: the next tile's codes (contiguous, pf_bytes), prefetched linearly alongside.
  const uint8_t* pf;
  size_t pf_bytes;
};
// Needs avx512 f/bw/vl/vnni/vbmi (I8, I16) and f/bw/vl (F64).
void mx_gemv_rows8_avx512(const MxGemvArgs& t);
// FP32 activations x MX weights, M = 1, 8 weight rows (the mixed contract's lanes, as
// mixed_gemv_rows8_avx2): lanes[r * 8 + l]. wsc: the rows' scales transposed ([j * 8 + r]);
// table: element values (scale 2^0) of codes 0-15 (FP4) or of the magnitudes 0-31 (FP6).
struct MixedGemvArgs {
  MxFormat f;
  const float* a;
  const uint8_t* rows[8];
  const uint8_t* wsc;
  size_t nb;
  const float* table;
  float* lanes;
  const uint8_t* pf;
  size_t pf_bytes;
};
void mixed_gemv_rows8_avx512(const MixedGemvArgs& t);  // avx512 f/bw/vl/vbmi/dq
// gemm_f32 with M = 1 on the AVX-512 path (gemv_fp.cc).
void gemv_f32_avx512(const float* x, const MxMatrixView& W, float* y, int threads);

// AVX2 (+F16C): routes I16 (A int16 in element order, every integer pair) and F64.
void mx_gemv_rows8_avx2(const MxGemvArgs& t);
void transpose_scales8_avx2(const uint8_t* const* sc, size_t nb, uint8_t* wsc, int* smin,
                            int* smax);
// wsc[j * 8 + r] = sc[r][j], j < nb; *smin / *smax: the smallest / largest code.
void transpose_scales8_avx512(const uint8_t* const* sc, size_t nb, uint8_t* wsc, int* smin,
                              int* smax);
// I16 kernel order of A for one pair of blocks (64 elements): position p holds element
// a64_order(p) (the low/high byte interleave of vpunpck{l,h}bw within 128-bit lanes).
inline int a64_order(int p) {
  const int half = p / 32, q = p % 32, lane = q / 8, i = q % 8;
  return lane * 16 + half * 8 + i;
}
bool cpu_has_avx512_vbmi();
bool s8_range(MxFormat f);  // values in quanta fit s8 (E2M1, E2M3, INT8)  // and avx512dq: the GEMV
                            // kernels' extra features
// The route of a format pair on a path (false: no M = 1 kernel for it).
bool gemv_route(MxFormat fa, MxFormat fw, KernelPath path, GemvRoute* route);
// The path whose M = 1 MX x MX kernels run for `path` (AVX-512 without VBMI / DQ: AVX2).
inline KernelPath gemv_path(KernelPath path) {
  return path == KernelPath::AVX512 && !cpu_has_avx512_vbmi() ? KernelPath::AVX2 : path;
}
// gemv_mx serves this pair on this path (the CPU has every feature its kernel uses).
bool gemv_mx_available(MxFormat fa, MxFormat fw, KernelPath path);
// y[N] = W x (A: one row), bit-exact to dot_blocked; threads over tiles of 8 weight rows.
void gemv_mx(const MxMatrixView& A, const MxMatrixView& W, float* y, int threads, KernelPath path);

}  // namespace dmx::kernels::detail
