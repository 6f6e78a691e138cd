// M = 1 MX x MX GEMV driver: picks the route of a format pair (internal.h, GemvRoute), prepares A
// once, runs the 8-row kernels over the weight rows on the pool (each weight row read once,
// straight from its packed codes), patches the blocks whose FP64 sum could be inexact and
// recomputes zero results exactly. The scalar reference of every route is the exact block step
// (detail::exact_block), which is what each route computes bit for bit.
#include <algorithm>
#include <cstring>
#include <vector>

#include "internal.h"

namespace dmx::kernels::detail {
namespace {

constexpr int kRows = 8;

bool int_format(MxFormat f) { return f != MxFormat::E4M3 && f != MxFormat::E5M2; }
bool s8_format(MxFormat f) { return s8_range(f); }

// floor(log2 m) + 1 for m > 0.
int bit_len(uint32_t m) { return 32 - __builtin_clz(m); }

}  // namespace

bool s8_range(MxFormat f) {
  return f == MxFormat::E2M1 || f == MxFormat::E2M3 || f == MxFormat::INT8;
}

bool cpu_has_avx512_vbmi() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("avx512dq");
}

bool gemv_route(MxFormat fa, MxFormat fw, KernelPath path, GemvRoute* route) {
  if (!int_format(fa) && !int_format(fw)) {
    *route = path == KernelPath::AVX512 && fa == MxFormat::E4M3 && fw == MxFormat::E4M3
                 ? GemvRoute::I16S
                 : GemvRoute::F64;
    return true;
  }
  if (!int_format(fa) || !int_format(fw)) return false;
  if (path == KernelPath::AVX2) {
    *route = GemvRoute::I16;
    return true;
  }
  if (s8_format(fa) && s8_format(fw)) {
    *route = GemvRoute::I8;
    return true;
  }
  if (fw != MxFormat::INT8) {
    *route = GemvRoute::I16;
    return true;
  }
  return false;
}

bool gemv_mx_available(MxFormat fa, MxFormat fw, KernelPath path) {
  GemvRoute route;
  if (!path_available(path) || !gemv_route(fa, fw, path, &route)) return false;
  // FP4 weights with an s8-range A: the packed-nibble int8 GEMV (gemm.cc, AVX2 instructions) is
  // as fast or faster on both paths (medians of 5 interleaved runs, 2 threads: 4096 x 14336
  // 4.15 vs 3.99 ms, 8192 x 2048 1.22 vs 1.23 ms, 3072 x 1024 0.25 vs 0.37 ms for the VNNI
  // kernel), so it keeps those pairs.
  if (format_bits(fw) == 4 && s8_format(fa)) return false;
  if (path == KernelPath::AVX512) return cpu_has_avx512_vbmi();
  return path == KernelPath::AVX2;
}

void gemv_mx(const MxMatrixView& A, const MxMatrixView& W, float* y, int threads, KernelPath path) {
  GemvRoute route{};
  gemv_route(A.format, W.format, path, &route);
  const bool avx2 = path == KernelPath::AVX2;
  const size_t N = W.rows, K = W.cols, nb = K / kBlockSize, nbe = (nb + 1) / 2 * 2;
  const FormatTable& ta = table(A.format);
  const FormatTable& tw = table(W.format);
  const int qa = format_info(A.format).quantum_exp, qw = format_info(W.format).quantum_exp;

  // A, once: codes, per-block exponents, the route's values.
  std::vector<uint8_t> ac(nbe * kBlockSize, 0);
  unpack_range(A.format, A.codes, 0, K, ac.data());
  if (route == GemvRoute::I16S)  // NaN codes in A: the F64 route carries them
    for (size_t k = 0; k < K; ++k)
      if (ta.special[ac[k]]) route = GemvRoute::F64;
  std::vector<int32_t> aexp(nbe, 0), acorr(nbe, 0);
  std::vector<int8_t> a8;
  std::vector<int16_t> a16;
  std::vector<double> a64;
  std::vector<int16_t> alo, ahi;        // I16S parts
  std::vector<int32_t> aexp_f(nbe, 0);  // I16S: the F64 route's exponents (NaN-tile fallback)
  alignas(64) uint8_t lut4[512] = {};
  std::vector<uint8_t> unsafe;
  alignas(64) uint8_t lut[128] = {};
  alignas(64) int16_t lut16w[64] = {};
  int wexp_off = qw;
  int amin = kNaNExp, amax = -kNaNExp;  // ea range (kNaNExp if a scale is NaN)
  for (size_t j = 0; j < nb; ++j) {
    const uint8_t s = A.scales[j];
    aexp[j] = route == GemvRoute::F64 ? scale_exp(s, 0) : scale_exp(s, qa);
    aexp_f[j] = scale_exp(s, 0);
    amin = std::min(amin, aexp[j]);
    amax = std::max(amax, aexp[j]);
  }
  if (route == GemvRoute::I8) {
    a8.assign(nbe * kBlockSize, 0);
    for (size_t k = 0; k < K; ++k) a8[k] = int8_t(ta.q16[ac[k]]);
    for (size_t j = 0; j < nb; ++j) {
      int32_t sum = 0;
      for (int i = 0; i < kBlockSize; ++i) sum += a8[j * kBlockSize + i];
      acorr[j] = 128 * sum;
    }
    const int ncodes = 1 << format_bits(W.format);
    for (int c = 0; c < 64; ++c) lut[c] = uint8_t(tw.q16[c % std::min(ncodes, 64)] + 128);
  } else if (route == GemvRoute::I16) {
    a16.assign(nbe * kBlockSize, 0);
    for (size_t j = 0; j < nbe; j += 2)
      for (int p = 0; p < 2 * kBlockSize; ++p) {
        const size_t k = j * kBlockSize + (avx2 ? p : a64_order(p));
        a16[j * kBlockSize + p] = k < K ? ta.q16[ac[k]] : 0;
      }
    const int ncodes = std::min(64, 1 << format_bits(W.format));
    for (int c = 0; c < 64; ++c) {
      const uint16_t v = uint16_t(tw.q16[c % ncodes]);
      lut16w[c] = int16_t(v);
      lut[c] = uint8_t(v & 0xFF);
      lut[64 + c] = uint8_t(v >> 8);
    }
  }
  if (route == GemvRoute::I16S) {
    // Binade split: lo = values below 2^11 quanta, hi = the others / 2^8 (exact: multiples).
    const auto split = [](uint32_t mag, bool hi) -> int16_t {
      if (mag < 2048) return hi ? 0 : int16_t(mag);
      return hi ? int16_t(mag >> 8) : 0;
    };
    alo.assign(nbe * kBlockSize, 0);
    ahi.assign(nbe * kBlockSize, 0);
    for (size_t j = 0; j < nbe; j += 2)
      for (int p = 0; p < 2 * kBlockSize; ++p) {
        const size_t k = j * kBlockSize + a64_order(p);
        if (k >= K) continue;
        const uint8_t c = ac[k];
        const int sg = ta.neg[c] ? -1 : 1;
        alo[j * kBlockSize + p] = int16_t(sg * split(ta.mag[c], false));
        ahi[j * kBlockSize + p] = int16_t(sg * split(ta.mag[c], true));
      }
    for (int c = 0; c < 128; ++c) {
      const uint16_t lo = uint16_t(split(tw.mag[c], false)), hi = uint16_t(split(tw.mag[c], true));
      lut4[c] = uint8_t(lo & 0xFF);
      lut4[128 + c] = uint8_t(lo >> 8);
      lut4[256 + c] = uint8_t(hi & 0xFF);
      lut4[384 + c] = uint8_t(hi >> 8);
    }
  }
  if (route == GemvRoute::F64 || route == GemvRoute::I16S) {
    a64.assign(nbe * kBlockSize, 0.0);
    for (size_t k = 0; k < K; ++k) a64[k] = ta.unit_d[ac[k]];
    // The kernel's W values are FP16 patterns: E4M3 at 2^-8 of the value, E5M2 the value.
    if (route == GemvRoute::F64) wexp_off = W.format == MxFormat::E4M3 ? 8 : 0;
    // FP64 block sums are exact when hi_a + hi_w + 5 - lo_a - lo_w <= 53 (magnitudes in quanta:
    // hi = bit length of the largest, lo = fewest trailing zeros of the nonzero finite ones).
    // W's span is taken at its format's worst; A blocks past the limit are unsafe.
    const uint32_t wmax = format_info(W.format).max_magnitude;
    const int span_w = bit_len(wmax);  // lo_w = 0 (the smallest subnormal)
    unsafe.assign(nbe, 0);
    bool any = false;
    for (size_t j = 0; j < nb; ++j) {
      int hi = 0, lo = 64;
      for (int i = 0; i < kBlockSize; ++i) {
        const uint8_t c = ac[j * kBlockSize + i];
        if (ta.special[c] || ta.mag[c] == 0) continue;
        hi = std::max(hi, bit_len(ta.mag[c]));
        lo = std::min(lo, __builtin_ctz(ta.mag[c]));
      }
      if (hi > 0 && hi - lo + span_w + 5 > 53) unsafe[j] = 1, any = true;
    }
    if (!any) unsafe.clear();
  }

  const size_t rb = packed_row_bytes(W.format, K);
  const size_t tiles = (N + kRows - 1) / kRows;
  constexpr size_t kTilesPerTask = 4;
  parallel_for((tiles + kTilesPerTask - 1) / kTilesPerTask, threads, [&](size_t task) {
    std::vector<uint8_t> wsc(nbe * kRows, 0);
    std::vector<uint8_t> wcodes(kBlockSize);
    for (size_t t = task * kTilesPerTask; t < std::min(tiles, (task + 1) * kTilesPerTask); ++t) {
      const size_t n0 = t * kRows;
      size_t rown[kRows];
      MxGemvArgs args{};
      const uint8_t* sc[kRows];
      for (int r = 0; r < kRows; ++r) {
        rown[r] = std::min(n0 + r, N - 1);  // rows past N repeat the last, discarded
        args.rows[r] = W.codes + rown[r] * rb;
        sc[r] = W.scales + rown[r] * nb;
      }
      int smin = 0, smax = 0;
      if (avx2)
        transpose_scales8_avx2(sc, nb, wsc.data(), &smin, &smax);
      else
        transpose_scales8_avx512(sc, nb, wsc.data(), &smin, &smax);
      args.fast = (route == GemvRoute::I8 || route == GemvRoute::I16) && amax != kNaNExp &&
                  smax != kScaleNaN && amin + smin - kScaleBias + qw >= -126 &&
                  amax + smax - kScaleBias + qw <= 103;
      const auto patch_fn = [&](size_t j, float* r8) {
        for (int r = 0; r < kRows; ++r) {
          unpack_range(W.format, args.rows[r], j * kBlockSize, kBlockSize, wcodes.data());
          r8[r] = exact_block(A.format, A.scales[j], &ac[j * kBlockSize], W.format,
                              W.scales[rown[r] * nb + j], wcodes.data());
        }
      };
      // Built only where some block needs it (a std::function of this lambda allocates).
      std::function<void(size_t, float*)> patch;
      if (!unsafe.empty()) patch = patch_fn;
      float out[kRows];
      args.route = route;
      args.wf = W.format;
      args.nb = nb;
      args.a = route == GemvRoute::I8     ? static_cast<const void*>(a8.data())
               : route == GemvRoute::I16  ? static_cast<const void*>(a16.data())
               : route == GemvRoute::I16S ? static_cast<const void*>(alo.data())
                                          : static_cast<const void*>(a64.data());
      args.a2 = ahi.data();
      args.lut4 = lut4;
      bool saw_nan = false;
      args.saw_nan = &saw_nan;
      args.acorr = acorr.data();
      args.aexp = aexp.data();
      args.wexp_off = wexp_off;
      args.lut = lut;
      args.lut16w = lut16w;
      args.wsc = wsc.data();
      args.unsafe = unsafe.empty() ? nullptr : unsafe.data();
      args.patch = &patch;
      args.out = out;
      if (n0 + kRows < N) {  // the next tile's rows are contiguous
        args.pf = W.codes + (n0 + kRows) * rb;
        args.pf_bytes = std::min<size_t>(kRows, N - n0 - kRows) * rb;
      }
      if (avx2)
        mx_gemv_rows8_avx2(args);
      else
        mx_gemv_rows8_avx512(args);
      if (saw_nan) {  // a W NaN code: the tile again on the F64 route (NaN propagates there)
        args.route = GemvRoute::F64;
        args.a = a64.data();
        args.aexp = aexp_f.data();
        args.wexp_off = 8;
        args.fast = false;
        mx_gemv_rows8_avx512(args);
      }
      for (int r = 0; r < kRows && n0 + r < N; ++r) {
        if (out[r] == 0.0f) {
          // Zero sums gave +0 where dot_blocked may give -0: recompute exactly.
          float acc = -0.0f;
          for (size_t j = 0; j < nb; ++j) {
            unpack_range(W.format, args.rows[r], j * kBlockSize, kBlockSize, wcodes.data());
            acc += exact_block(A.format, A.scales[j], &ac[j * kBlockSize], W.format,
                               W.scales[rown[r] * nb + j], wcodes.data());
          }
          out[r] = acc;
        }
        y[n0 + r] = out[r];
      }
    }
  });
}

}  // namespace dmx::kernels::detail

namespace dmx::kernels {

const char* gemm_kernel_name(MxFormat a_format, bool a_fp32, MxFormat w_format, size_t M,
                             KernelPath path) {
  path = path_available(path) ? path : default_path();
  if (a_fp32) {
    if (M == 1 && path == KernelPath::AVX512 && detail::cpu_has_avx512_vbmi()) return "gemv-f32";
    return "mixed";
  }
  detail::GemvRoute route{};
  path = M == 1 ? detail::gemv_path(path) : path;
  if (M == 1 && detail::gemv_mx_available(a_format, w_format, path) &&
      detail::gemv_route(a_format, w_format, path, &route)) {
    if (route == detail::GemvRoute::F64) return "gemv-f64";
    if (route == detail::GemvRoute::I16S) return "gemv-i16s-vnni";
    if (path == KernelPath::AVX2) return "gemv-i16";
    return route == detail::GemvRoute::I8 ? "gemv-i8-vnni" : "gemv-i16-vnni";
  }
  const BlockSumKind kind = block_sum_kind(a_format, w_format);
  if (M == 1 && path != KernelPath::Scalar && kind == BlockSumKind::Int16 &&
      format_bits(w_format) == 4 && detail::s8_range(a_format) &&
      !(a_format == MxFormat::INT8 && w_format == MxFormat::INT8))
    return "gemv-fp4-int8";
  return block_sum_kind_name(kind);
}

}  // namespace dmx::kernels
