// Quantize / dequantize drivers and the scalar path.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "internal.h"

namespace dmx::kernels {
namespace {

using detail::table;

// The golden model's bit casts, under the names this file uses.
inline float bits_to_float(uint32_t b) { return fp32_from_bits(b); }
inline uint32_t float_to_bits(float f) { return fp32_bits(f); }

// 2^(code - 127) as FP32, NaN for 0xFF.
float scale_value(uint8_t code) { return bits_to_float(core::scale_fp32_bits(code)); }

// The default-options block quantizer, scalar: the same steps as the SIMD path, written out.
void quantize_block_scalar(MxFormat f, const float* v, uint8_t* scale, uint8_t* codes) {
  const FormatInfo& fi = format_info(f);
  uint32_t amax = 0;
  bool bad = false;
  for (int i = 0; i < kBlockSize; ++i) {
    const uint32_t a = float_to_bits(v[i]) & 0x7fffffffu;
    bad |= a >= 0x7f800000u;
    amax = std::max(amax, a);
  }
  if (bad) {
    *scale = kScaleNaN;
    std::memset(codes, 0, kBlockSize);
    return;
  }
  const int e = int(amax >> 23);
  const int s = e == 0 ? -127 : std::max(-127, e - 127 - fi.emax);
  *scale = uint8_t(s + 127);
  const float p = -s >= -126 ? bits_to_float(uint32_t(127 - s) << 23) : bits_to_float(0x00400000u);
  for (int i = 0; i < kBlockSize; ++i) {
    if (fi.is_int) {
      const long q = std::lrint(v[i] * p * 64.0f);  // RNE (default rounding mode)
      const long lim = long(fi.max_magnitude);
      codes[i] = uint8_t(std::clamp(q, -lim, lim) & 0xFF);
      continue;
    }
    const float y = std::fabs(v[i]) * p;
    const int ey = std::max(int(float_to_bits(y) >> 23), 127 + 1 - fi.bias);
    const float magic = bits_to_float((uint32_t(ey - fi.mbits + 23) << 23) | 0x400000u);
    const float r = std::min((y + magic) - magic, fi.max_normal);
    const uint32_t rb = float_to_bits(r);
    uint32_t mag;
    if (rb >= uint32_t(127 + 1 - fi.bias) << 23)
      mag = (rb >> (23 - fi.mbits)) - (uint32_t(127 - fi.bias) << fi.mbits);
    else
      mag = uint32_t(r * bits_to_float(uint32_t(127 - fi.quantum_exp) << 23));
    codes[i] = uint8_t(mag | ((float_to_bits(v[i]) >> 31) << (fi.bits - 1)));
  }
}

bool default_options(const QuantizeOptions& o) {
  return o.scale_rule == ScaleRule::FLOOR && o.overflow == Overflow::SAT &&
         o.non_finite == NonFinitePolicy::NAN_SCALE && !o.int8_allow_minus128;
}

void check_cols(const char* fn, size_t cols) {
  if (cols % kBlockSize != 0)
    throw std::invalid_argument(std::string("dmx::kernels::") + fn +
                                ": cols = " + std::to_string(cols) +
                                " is not a multiple of 32 (pad with pad_rows)");
}

// One row of FP32 values -> packed codes + scales, by the configured path.
void quantize_row_any(MxFormat f, const float* x, size_t cols, uint8_t* codes, uint8_t* scales,
                      const QuantizeOptions& opt, KernelPath path) {
  if (default_options(opt) && path != KernelPath::Scalar) {
    detail::quantize_rows_avx2(f, x, cols, codes, scales);
    return;
  }
  uint8_t c[kBlockSize];
  for (size_t j = 0; j < cols / kBlockSize; ++j) {
    if (default_options(opt)) {
      quantize_block_scalar(f, x + j * kBlockSize, &scales[j], c);
    } else {  // other knobs: golden's block quantizer (per-block route, documented)
      const MxBlock b = quantize_block(f, x + j * kBlockSize, opt);
      scales[j] = b.scale;
      std::memcpy(c, b.codes.data(), kBlockSize);
    }
    pack_codes(f, c, kBlockSize, codes + packed_bytes(f, j * kBlockSize));
  }
}

constexpr size_t kRowsPerTask = 4;

}  // namespace

void quantize(MxFormat f, const float* x, size_t rows, size_t cols, uint8_t* codes, uint8_t* scales,
              const QuantizeOptions& opt, const KernelConfig& cfg) {
  check_cols("quantize", cols);
  const KernelPath path = detail::usable_path(cfg.path);
  const size_t rb = packed_row_bytes(f, cols), nb = cols / kBlockSize;
  detail::parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, cfg.threads, [&](size_t t) {
    for (size_t r = t * kRowsPerTask; r < std::min(rows, (t + 1) * kRowsPerTask); ++r)
      quantize_row_any(f, x + r * cols, cols, codes + r * rb, scales + r * nb, opt, path);
  });
}

void quantize_bf16(MxFormat f, const uint16_t* x, size_t rows, size_t cols, uint8_t* codes,
                   uint8_t* scales, const QuantizeOptions& opt, const KernelConfig& cfg) {
  check_cols("quantize_bf16", cols);
  const KernelPath path = detail::usable_path(cfg.path);
  const size_t rb = packed_row_bytes(f, cols), nb = cols / kBlockSize;
  detail::parallel_for((rows + kRowsPerTask - 1) / kRowsPerTask, cfg.threads, [&](size_t t) {
    std::vector<float> row(cols);
    for (size_t r = t * kRowsPerTask; r < std::min(rows, (t + 1) * kRowsPerTask); ++r) {
      for (size_t k = 0; k < cols; ++k) row[k] = bits_to_float(uint32_t(x[r * cols + k]) << 16);
      quantize_row_any(f, row.data(), cols, codes + r * rb, scales + r * nb, opt, path);
    }
  });
}

void dequantize(const MxMatrixView& m, float* out, const KernelConfig& cfg) {
  check_cols("dequantize", m.cols);
  const KernelPath path = detail::usable_path(cfg.path);
  const size_t rb = packed_row_bytes(m.format, m.cols), nb = m.cols / kBlockSize;
  const detail::FormatTable& tb = table(m.format);
  detail::parallel_for((m.rows + kRowsPerTask - 1) / kRowsPerTask, cfg.threads, [&](size_t t) {
    std::vector<uint8_t> c(m.cols);
    for (size_t r = t * kRowsPerTask; r < std::min(m.rows, (t + 1) * kRowsPerTask); ++r) {
      float* o = out + r * m.cols;
      if (path != KernelPath::Scalar && format_bits(m.format) != 6) {
        detail::dequantize_row_avx2(m.format, m.codes + r * rb, m.scales + r * nb, m.cols, o);
        continue;
      }
      if (path == KernelPath::Scalar)
        detail::unpack_range(m.format, m.codes + r * rb, 0, m.cols, c.data());
      else  // FP6 on a SIMD path: the AVX2 unpacker
        detail::unpack_fp6_avx2(m.codes + r * rb, nb, c.data());
      for (size_t j = 0; j < nb; ++j) {  // the scale once per block
        const float sc = scale_value(m.scales[r * nb + j]);
        for (size_t k = j * kBlockSize; k < (j + 1) * kBlockSize; ++k) o[k] = tb.unit[c[k]] * sc;
      }
    }
  });
}

void dequantize_bf16(const MxMatrixView& m, uint16_t* out, const KernelConfig& cfg) {
  std::vector<float> tmp(m.rows * m.cols);
  dequantize(m, tmp.data(), cfg);
  for (size_t i = 0; i < tmp.size(); ++i) out[i] = fp32_to_bf16(tmp[i]);
}

}  // namespace dmx::kernels
