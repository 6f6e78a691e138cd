// golden's float API over the MX core (dmx/mx_core.h): names, parsing, element and scale
// conversion.
#include <cctype>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "dmx/golden.h"

namespace dmx {
namespace {

std::string lower(std::string_view s) {
  std::string r(s);
  for (auto& c : r) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return r;
}

}  // namespace

const char* format_name(MxFormat f) { return format_info(f).name; }

std::optional<MxFormat> parse_format(std::string_view s) {
  const std::string l = lower(s);
  struct Alias {
    const char* name;
    MxFormat f;
  };
  static const Alias aliases[] = {
      {"e4m3", MxFormat::E4M3},       {"fp8_e4m3", MxFormat::E4M3}, {"mxfp8_e4m3", MxFormat::E4M3},
      {"mxfp8", MxFormat::E4M3},      {"e5m2", MxFormat::E5M2},     {"fp8_e5m2", MxFormat::E5M2},
      {"mxfp8_e5m2", MxFormat::E5M2}, {"e3m2", MxFormat::E3M2},     {"fp6_e3m2", MxFormat::E3M2},
      {"mxfp6_e3m2", MxFormat::E3M2}, {"e2m3", MxFormat::E2M3},     {"fp6_e2m3", MxFormat::E2M3},
      {"mxfp6_e2m3", MxFormat::E2M3}, {"mxfp6", MxFormat::E2M3},    {"e2m1", MxFormat::E2M1},
      {"fp4", MxFormat::E2M1},        {"fp4_e2m1", MxFormat::E2M1}, {"mxfp4", MxFormat::E2M1},
      {"mxfp4_e2m1", MxFormat::E2M1}, {"int8", MxFormat::INT8},     {"mxint8", MxFormat::INT8},
  };
  for (const auto& a : aliases)
    if (l == a.name) return a.f;
  return std::nullopt;
}

const char* scale_rule_name(ScaleRule r) {
  switch (r) {
    case ScaleRule::FLOOR:
      return "FLOOR";
    case ScaleRule::CEIL:
      return "CEIL";
    case ScaleRule::EVEN:
      return "EVEN";
    case ScaleRule::RCEIL:
      return "RCEIL";
  }
  return "?";
}

std::optional<ScaleRule> parse_scale_rule(std::string_view s) {
  const std::string l = lower(s);
  if (l == "floor") return ScaleRule::FLOOR;
  if (l == "ceil") return ScaleRule::CEIL;
  if (l == "even") return ScaleRule::EVEN;
  if (l == "rceil") return ScaleRule::RCEIL;
  return std::nullopt;
}

uint16_t fp32_to_bf16(float x) { return core::bf16_from_fp32_bits(fp32_bits(x)); }
float bf16_to_fp32(uint16_t b) { return fp32_from_bits(static_cast<uint32_t>(b) << 16); }

float decode_scale(uint8_t code) { return fp32_from_bits(core::scale_fp32_bits(code)); }

float round_to_fp32(bool negative, unsigned __int128 magnitude, int exp) {
  return fp32_from_bits(core::round_to_fp32_bits(negative, static_cast<uint64_t>(magnitude >> 64),
                                                 static_cast<uint64_t>(magnitude), exp));
}

ElementValue decode_element_exact(MxFormat f, uint8_t code) {
  return core::decode_element(format_info(f), code);
}

float decode_element(MxFormat f, uint8_t code) {
  const ElementValue v = decode_element_exact(f, code);
  if (v.is_nan) return std::numeric_limits<float>::quiet_NaN();
  if (v.is_inf) return v.negative ? -INFINITY : INFINITY;
  return round_to_fp32(v.negative, v.magnitude, format_info(f).quantum_exp);
}

uint8_t encode_element_scaled(MxFormat f, float x, int shift, Overflow ov,
                              bool int8_allow_minus128) {
  return core::encode_element(format_info(f), fp32_bits(x), shift, ov, int8_allow_minus128);
}

uint8_t encode_element(MxFormat f, float x, Overflow ov, bool int8_allow_minus128) {
  return encode_element_scaled(f, x, 0, ov, int8_allow_minus128);
}

}  // namespace dmx
