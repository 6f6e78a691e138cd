// dmx-mx's text layer (dmx_mx_text.h): parsing and printing MX values, codes and scales.
#include "dmx_mx_text.h"

#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace dmx::mx_cli {

// ---- Formatting ---------------------------------------------------------------------------------

std::string hex_code(unsigned c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02x", c);
  return buf;
}

// Hex-float ("%a"), exact; "nan", "inf", "-inf" for the specials.
std::string hex_float(float x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(x));
  return buf;
}

// The shortest decimal that reads back as the same FP32 value.
std::string decimal(float x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[48];
  for (int p = 1; p <= 9; ++p) {
    std::snprintf(buf, sizeof buf, "%.*g", p, static_cast<double>(x));
    if (std::strtof(buf, nullptr) == x) break;
  }
  return buf;
}

std::string fp32_hex_bits(float x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", dmx::fp32_bits(x));
  return buf;
}

// JSON number where finite, else the string "nan" / "inf" / "-inf" (JSON has no such numbers).
json json_number(float x) {
  if (std::isfinite(x)) return static_cast<double>(x);
  return decimal(x);
}

std::string scale_text(uint8_t s) {
  if (dmx::scale_is_nan(s)) return hex_code(s) + " = NaN";
  return hex_code(s) + " = 2^" + std::to_string(static_cast<int>(s) - dmx::kScaleBias);
}

json scale_json_exp(uint8_t s) {
  if (dmx::scale_is_nan(s)) return nullptr;
  return static_cast<int>(s) - dmx::kScaleBias;
}

// ---- Parsing ------------------------------------------------------------------------------------

// Splits on whitespace and commas.
std::vector<std::string> split_tokens(const std::string& s, bool colon_too) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (std::isspace(static_cast<unsigned char>(c)) || c == ',' || (colon_too && c == ':')) {
      if (!cur.empty()) out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Decimal, hex-float (0x1.8p+3), inf/infinity, nan; correctly rounded to FP32.
float parse_value(const std::string& tok, const std::string& where) {
  const char* s = tok.c_str();
  char* end = nullptr;
  errno = 0;
  if (tok.find('\0') != std::string::npos)
    throw UsageError(where + ": a value contains a NUL byte");
  const float x = std::strtof(s, &end);
  if (end == s || end != s + tok.size() || std::isspace(static_cast<unsigned char>(*s)))
    throw UsageError(where + " '" + tok +
                     "': not a number (expected decimal, hex-float like 0x1.8p+3, inf or nan)");
  if (errno == ERANGE && std::isinf(x))
    throw UsageError(where + " '" + tok +
                     "': overflows FP32 (largest finite is 3.4028235e+38; write inf for infinity)");
  return x;
}

// An integer code: 0x-prefixed hex or decimal, at most max_code.
unsigned parse_code(const std::string& tok, const std::string& where, unsigned max_code,
                    const std::string& what) {
  const char* s = tok.c_str();
  const bool hex = tok.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X');
  char* end = nullptr;
  errno = 0;
  if (tok.find('\0') != std::string::npos) throw UsageError(where + ": a code contains a NUL byte");
  if (tok.empty() || !std::isxdigit(static_cast<unsigned char>(s[hex ? 2 : 0])))
    throw UsageError(where + " '" + tok + "': not a code (expected hex like 0x3c or decimal)");
  const unsigned long v = std::strtoul(s + (hex ? 2 : 0), &end, hex ? 16 : 10);
  if (end != s + tok.size())
    throw UsageError(where + " '" + tok + "': not a code (expected hex like 0x3c or decimal)");
  if (errno == ERANGE || v > max_code)
    throw UsageError(where + " '" + tok + "': out of range for " + what + " (0x00.." +
                     hex_code(max_code) + ")");
  return static_cast<unsigned>(v);
}

std::string read_stdin(const std::string& what) {
  if (isatty(STDIN_FILENO))
    throw UsageError(what + ": none given (pass them as arguments or on stdin)");
  std::string s((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (std::cin.bad()) throw std::runtime_error("stdin: read failed");
  return s;
}

dmx::MxFormat parse_format_or_throw(const std::string& s, const std::string& opt) {
  if (auto f = dmx::parse_format(s)) return *f;
  throw UsageError(
      opt + " '" + s +
      "': unknown format (known: e4m3, e5m2, e3m2, e2m3, e2m1, int8, or aliases "
      "fp8_e4m3, mxfp8, fp6_e3m2, mxfp6, fp4, mxfp4, mxint8, ...; see dmx-mx formats)");
}

const char* overflow_name(dmx::Overflow o) { return o == dmx::Overflow::SAT ? "sat" : "ovf"; }
const char* nan_policy_name(dmx::NonFinitePolicy p) {
  return p == dmx::NonFinitePolicy::NAN_SCALE ? "scale" : "element";
}

// Values to quantize: tokens of the arguments (or of stdin when there are none), padded or
// length-checked. Returns the values and the count before padding.
std::vector<float> gather_values(const std::vector<std::string>& args, bool from_stdin,
                                 const std::string& what, bool pad, size_t* n_given) {
  std::vector<std::string> toks;
  std::string where = what;
  if (from_stdin) {
    toks = split_tokens(read_stdin(what));
    where = "stdin " + what;
  } else {
    for (const auto& a : args)
      for (auto& t : split_tokens(a)) toks.push_back(t);
  }
  if (toks.empty()) throw UsageError(where + ": no numbers given");
  std::vector<float> v;
  for (size_t i = 0; i < toks.size(); ++i)
    v.push_back(parse_value(toks[i], where + " #" + std::to_string(i + 1)));
  *n_given = v.size();
  if (v.size() % dmx::kBlockSize != 0) {
    if (!pad)
      throw UsageError(where + ": " + std::to_string(v.size()) +
                       " numbers is not a multiple of the block size 32 (use --pad to "
                       "zero-pad the last block)");
    v.resize(dmx::padded_length(v.size()), 0.0f);
  }
  return v;
}

void parse_scales_codes(Operand& op, const std::vector<std::string>& scale_args,
                        const std::string& codes_text, const std::string& scale_opt,
                        const std::string& codes_where, bool pad) {
  const dmx::FormatInfo& fi = dmx::format_info(op.format);
  for (const auto& a : scale_args)
    for (const auto& t : split_tokens(a, true))
      op.scales.push_back(static_cast<uint8_t>(parse_code(
          t, scale_opt + " #" + std::to_string(op.scales.size() + 1), 0xff, "an E8M0 scale")));
  if (op.scales.empty()) throw UsageError(scale_opt + ": no scale given (one per 32 codes)");
  const unsigned max_code = (1u << fi.bits) - 1u;
  const std::string what = std::string(fi.long_name) + " codes";
  // Colon-separated groups are blocks.
  std::vector<std::string> groups;
  {
    std::string cur;
    for (char c : codes_text) {
      if (c == ':') {
        groups.push_back(cur);
        cur.clear();
      } else {
        cur += c;
      }
    }
    groups.push_back(cur);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const auto toks = split_tokens(groups[g]);
    if (groups.size() > 1 && toks.size() != dmx::kBlockSize && !(pad && g + 1 == groups.size()))
      throw UsageError(codes_where + " block " + std::to_string(g) + ": " +
                       std::to_string(toks.size()) + " codes, a block needs 32");
    for (const auto& t : toks)
      op.codes.push_back(static_cast<uint8_t>(
          parse_code(t, codes_where + " #" + std::to_string(op.codes.size() + 1), max_code, what)));
  }
  if (op.codes.empty()) throw UsageError(codes_where + ": no codes given");
  op.n_given = op.codes.size();
  const size_t want = op.scales.size() * dmx::kBlockSize;
  if (pad && op.codes.size() < want && op.codes.size() > want - dmx::kBlockSize)
    op.codes.resize(want, 0);
  if (op.codes.size() != want)
    throw UsageError(codes_where + ": " + std::to_string(op.n_given) + " codes for " +
                     std::to_string(op.scales.size()) + " scale(s); a block is 32 codes per scale" +
                     (pad ? "" : " (--pad zero-fills the last block)"));
}

// CLI11 reads "-inf", "-nan", "-.5" as short options; a leading space (dropped again by the
// tokenizer) makes every negative number a plain value, so no "--" is needed before one.
std::vector<std::string> protect_negative_numbers(int argc, char** argv) {
  std::vector<std::string> args(argv, argv + argc);
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.size() < 2 || a[0] != '-' || a[1] == '-') continue;
    char* end = nullptr;
    std::strtof(a.c_str(), &end);
    if (*end == '\0') args[i] = " " + a;
  }
  return args;
}

}  // namespace dmx::mx_cli
