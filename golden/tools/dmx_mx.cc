// dmx-mx: the golden MX model on the command line, for architects and scripts.
//
// Subcommands: formats, quantize, dequantize, dot, encode, decode. Every number it prints comes
// from dmx::golden; this file only parses, validates and formats. Errors are one line
// "dmx-mx: error: <input>: <problem>" on stderr; exit 2 for usage errors, 1 for other failures.
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

#include "dmx/cli.h"
#include "dmx/golden.h"

namespace {

using nlohmann::json;

// A usage error (bad number, unknown format, wrong length): exit code 2 (dmx/util.h).
using dmx::UsageError;

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
std::vector<std::string> split_tokens(const std::string& s, bool colon_too = false) {
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

// ---- Shared options -----------------------------------------------------------------------------

struct PolicyFlags {
  std::string scale_rule = "floor";
  std::string overflow = "sat";
  std::string nan_policy = "scale";
  bool int8_min128 = false;

  void add_to(CLI::App* app) {
    app->add_option("--scale-rule", scale_rule,
                    "Shared-scale rule: floor (OCP default), ceil, even, rceil")
        ->capture_default_str();
    app->add_option("--overflow", overflow,
                    "FP8 overflow: sat (saturate to +-max) or ovf (to Inf/NaN per OFP8)")
        ->capture_default_str();
    app->add_option("--nan-policy", nan_policy,
                    "Block holding NaN/Inf: scale (scale 0xFF) or element (encode per element "
                    "where the format can; else scale)")
        ->capture_default_str();
    app->add_flag("--int8-min128", int8_min128, "INT8: allow code -128 (default clamps to -127)");
  }

  dmx::QuantizeOptions parse() const {
    dmx::QuantizeOptions o;
    if (auto r = dmx::parse_scale_rule(scale_rule))
      o.scale_rule = *r;
    else
      throw UsageError("--scale-rule '" + scale_rule +
                       "': unknown rule (floor, ceil, even, rceil)");
    if (overflow == "sat" || overflow == "SAT")
      o.overflow = dmx::Overflow::SAT;
    else if (overflow == "ovf" || overflow == "OVF")
      o.overflow = dmx::Overflow::OVF;
    else
      throw UsageError("--overflow '" + overflow + "': unknown mode (sat, ovf)");
    if (nan_policy == "scale")
      o.non_finite = dmx::NonFinitePolicy::NAN_SCALE;
    else if (nan_policy == "element")
      o.non_finite = dmx::NonFinitePolicy::ELEMENT;
    else
      throw UsageError("--nan-policy '" + nan_policy + "': unknown policy (scale, element)");
    o.int8_allow_minus128 = int8_min128;
    return o;
  }
};

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

// Scales and codes of one MX operand. Scales: repeated options, each separated by whitespace,
// commas or colons. Codes: whitespace/comma separated; a colon separates blocks and then each
// group must hold exactly 32 codes.
struct Operand {
  dmx::MxFormat format;
  std::vector<uint8_t> scales;
  std::vector<uint8_t> codes;
  size_t n_given = 0;  // codes given before --pad
};

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

// ---- Subcommands
// ---------------------------------------------------------------------------------

void print_json(const json& j) { std::cout << j.dump(2) << "\n"; }

int cmd_formats(bool as_json) {
  if (as_json) {
    json arr = json::array();
    for (dmx::MxFormat f : dmx::kAllFormats) {
      const dmx::FormatInfo& fi = dmx::format_info(f);
      arr.push_back({{"name", fi.name},
                     {"long_name", fi.long_name},
                     {"bits", fi.bits},
                     {"ebits", fi.ebits},
                     {"mbits", fi.mbits},
                     {"bias", fi.bias},
                     {"emax", fi.emax},
                     {"quantum_exp", fi.quantum_exp},
                     {"max_magnitude", fi.max_magnitude},
                     {"max_normal", fi.max_normal},
                     {"min_subnormal", fi.min_subnormal},
                     {"has_inf", fi.has_inf},
                     {"has_nan", fi.has_nan},
                     {"is_int", fi.is_int}});
    }
    print_json(arr);
    return 0;
  }
  std::printf("%-5s %-9s %4s %5s %5s %4s %7s %11s %13s %-3s %-3s\n", "name", "long", "bits",
              "ebits", "mbits", "bias", "emax", "max_normal", "min_subnormal", "inf", "nan");
  for (dmx::MxFormat f : dmx::kAllFormats) {
    const dmx::FormatInfo& fi = dmx::format_info(f);
    std::printf("%-5s %-9s %4d %5d %5d %4d %7d %11s %13s %-3s %-3s\n", fi.name, fi.long_name,
                fi.bits, fi.ebits, fi.mbits, fi.bias, fi.emax, decimal(fi.max_normal).c_str(),
                ("2^" + std::to_string(fi.quantum_exp)).c_str(), fi.has_inf ? "yes" : "no",
                fi.has_nan ? "yes" : "no");
  }
  std::printf("scale: E8M0, code e = 2^(e-127) for e in 0x00..0xfe, 0xff = NaN; block size %d\n",
              dmx::kBlockSize);
  return 0;
}

int cmd_quantize(const std::string& format, const PolicyFlags& pf, bool pad,
                 const std::vector<std::string>& args, bool as_json) {
  const dmx::MxFormat f = parse_format_or_throw(format, "--format");
  const dmx::QuantizeOptions opt = pf.parse();
  size_t n_given = 0;
  const std::vector<float> v = gather_values(args, args.empty(), "values", pad, &n_given);
  const size_t nb = v.size() / dmx::kBlockSize;
  std::vector<uint8_t> scales(nb), codes(v.size());
  dmx::quantize_row(f, v.data(), v.size(), scales.data(), codes.data(), opt);
  std::vector<float> back(v.size());
  dmx::dequantize_row(f, scales.data(), codes.data(), v.size(), back.data());
  const dmx::FormatInfo& fi = dmx::format_info(f);
  if (as_json) {
    json j = {{"format", fi.name},
              {"scale_rule", dmx::scale_rule_name(opt.scale_rule)},
              {"overflow", overflow_name(opt.overflow)},
              {"nan_policy", nan_policy_name(opt.non_finite)},
              {"int8_min128", opt.int8_allow_minus128},
              {"n_given", n_given},
              {"n", v.size()}};
    json input = json::array();
    for (float x : v) input.push_back(hex_float(x));
    j["input"] = input;
    json blocks = json::array();
    for (size_t b = 0; b < nb; ++b) {
      json cj = json::array(), dj = json::array();
      for (int i = 0; i < dmx::kBlockSize; ++i) {
        cj.push_back(hex_code(codes[b * dmx::kBlockSize + i]));
        dj.push_back(hex_float(back[b * dmx::kBlockSize + i]));
      }
      blocks.push_back({{"scale", hex_code(scales[b])},
                        {"scale_exp", scale_json_exp(scales[b])},
                        {"codes", cj},
                        {"dequantized", dj}});
    }
    j["blocks"] = blocks;
    print_json(j);
    return 0;
  }
  std::printf("%s, scale rule %s, %zu block(s) of 32", fi.long_name,
              dmx::scale_rule_name(opt.scale_rule), nb);
  if (n_given != v.size())
    std::printf(" (%zu values + %zu zero padding)", n_given, v.size() - n_given);
  std::printf("\n");
  for (size_t b = 0; b < nb; ++b) {
    std::printf("block %zu: scale %s\n  codes:", b, scale_text(scales[b]).c_str());
    for (int i = 0; i < dmx::kBlockSize; ++i)
      std::printf(" %s", hex_code(codes[b * dmx::kBlockSize + i]).c_str());
    std::printf("\n");
  }
  return 0;
}

// Prints values: text one decimal per line; JSON with hex-floats and FP32 bits.
void print_values(const std::vector<float>& vals, bool as_json, json j) {
  if (as_json) {
    json dec = json::array(), hex = json::array();
    for (float x : vals) {
      dec.push_back(json_number(x));
      hex.push_back(hex_float(x));
    }
    j["values"] = dec;
    j["hex"] = hex;
    print_json(j);
    return;
  }
  for (float x : vals) std::printf("%s\n", decimal(x).c_str());
}

int cmd_dequantize(const std::string& format, const std::vector<std::string>& scale_args,
                   const std::vector<std::string>& codes_args, bool pad, bool as_json) {
  Operand op;
  op.format = parse_format_or_throw(format, "--format");
  std::string codes_text, where = "--codes";
  if (codes_args.empty()) {
    codes_text = read_stdin("codes");
    where = "stdin codes";
  } else {
    for (const auto& c : codes_args) codes_text += (codes_text.empty() ? "" : ":") + c;
  }
  parse_scales_codes(op, scale_args, codes_text, "--scale", where, pad);
  std::vector<float> out(op.codes.size());
  dmx::dequantize_row(op.format, op.scales.data(), op.codes.data(), op.codes.size(), out.data());
  out.resize(op.n_given);
  json j = {{"format", dmx::format_name(op.format)}};
  json sj = json::array();
  for (uint8_t s : op.scales) sj.push_back(hex_code(s));
  j["scales"] = sj;
  json cj = json::array();
  for (size_t i = 0; i < op.n_given; ++i) cj.push_back(hex_code(op.codes[i]));
  j["codes"] = cj;
  print_values(out, as_json, j);
  return 0;
}

struct OperandArgs {
  std::string format;
  std::vector<std::string> scales;
  std::string codes;
  std::string values;
  bool has_codes = false, has_values = false;
};

Operand make_operand(const OperandArgs& a, const std::string& common_format, char name,
                     const dmx::QuantizeOptions& opt, bool pad, bool* stdin_used) {
  const std::string p = std::string("--") + name + "-";
  Operand op;
  const std::string fmt = a.format.empty() ? common_format : a.format;
  if (fmt.empty())
    throw UsageError(p + "format: operand " + std::string(1, name) + " has no format (give " + p +
                     "format or --format)");
  op.format = parse_format_or_throw(fmt, a.format.empty() ? "--format" : p + "format");
  if (a.has_codes == a.has_values)
    throw UsageError(p + "codes/" + p + "values: give exactly one of them for operand " +
                     std::string(1, name));
  if (a.has_values) {
    if (!a.scales.empty())
      throw UsageError(p + "scale: not used with " + p +
                       "values (the scales come from quantizing)");
    std::vector<std::string> args{a.values};
    const bool from_stdin = a.values == "-";
    if (from_stdin) {
      if (*stdin_used) throw UsageError(p + "values '-': stdin already used by the other operand");
      *stdin_used = true;
    }
    const std::vector<float> v = gather_values(args, from_stdin, p + "values", pad, &op.n_given);
    op.scales.resize(v.size() / dmx::kBlockSize);
    op.codes.resize(v.size());
    dmx::quantize_row(op.format, v.data(), v.size(), op.scales.data(), op.codes.data(), opt);
  } else {
    parse_scales_codes(op, a.scales, a.codes, p + "scale", p + "codes", pad);
  }
  return op;
}

json result_json(float x) {
  return {{"hex", hex_float(x)}, {"decimal", json_number(x)}, {"fp32_bits", fp32_hex_bits(x)}};
}

json operand_json(const Operand& op) {
  json sj = json::array(), cj = json::array();
  for (uint8_t s : op.scales) sj.push_back(hex_code(s));
  for (uint8_t c : op.codes) cj.push_back(hex_code(c));
  return {{"format", dmx::format_name(op.format)}, {"scales", sj}, {"codes", cj}};
}

int cmd_dot(const std::string& common_format, const OperandArgs& aa, const OperandArgs& ba,
            const PolicyFlags& pf, bool pad, bool as_json) {
  const dmx::QuantizeOptions opt = pf.parse();
  bool stdin_used = false;
  const Operand a = make_operand(aa, common_format, 'a', opt, pad, &stdin_used);
  const Operand b = make_operand(ba, common_format, 'b', opt, pad, &stdin_used);
  if (a.codes.size() != b.codes.size())
    throw UsageError("operands: a has " + std::to_string(a.codes.size()) + " elements, b has " +
                     std::to_string(b.codes.size()) + "; they must match");
  const size_t n = a.codes.size(), nb = n / dmx::kBlockSize;
  const dmx::MxVector va{a.format, a.scales.data(), a.codes.data()};
  const dmx::MxVector vb{b.format, b.scales.data(), b.codes.data()};
  const float exact = dmx::dot_exact(va, vb, n);
  const float blocked = dmx::dot_blocked(va, vb, n);
  std::vector<float> partial(nb);
  for (size_t j = 0; j < nb; ++j)
    partial[j] = dmx::dot_block(a.format, a.scales[j], a.codes.data() + j * dmx::kBlockSize,
                                b.format, b.scales[j], b.codes.data() + j * dmx::kBlockSize);
  if (as_json) {
    json pj = json::array();
    for (float r : partial) pj.push_back(result_json(r));
    print_json({{"n", n},
                {"blocks", nb},
                {"a", operand_json(a)},
                {"b", operand_json(b)},
                {"block_partials", pj},
                {"dot_exact", result_json(exact)},
                {"dot_blocked", result_json(blocked)}});
    return 0;
  }
  std::printf("a: %s, b: %s, %zu element(s), %zu block(s)\n", dmx::format_name(a.format),
              dmx::format_name(b.format), n, nb);
  for (size_t j = 0; j < nb; ++j)
    std::printf("block %zu: a scale %s, b scale %s, r = %s = %s\n", j,
                hex_code(a.scales[j]).c_str(), hex_code(b.scales[j]).c_str(),
                hex_float(partial[j]).c_str(), decimal(partial[j]).c_str());
  std::printf("dot_exact   = %s = %s (fp32 bits %s)\n", hex_float(exact).c_str(),
              decimal(exact).c_str(), fp32_hex_bits(exact).c_str());
  std::printf("dot_blocked = %s = %s (fp32 bits %s)\n", hex_float(blocked).c_str(),
              decimal(blocked).c_str(), fp32_hex_bits(blocked).c_str());
  return 0;
}

int cmd_encode(const std::string& format, const PolicyFlags& pf,
               const std::vector<std::string>& args, bool as_json) {
  const dmx::MxFormat f = parse_format_or_throw(format, "--format");
  const dmx::QuantizeOptions opt = pf.parse();
  size_t n = 0;
  const std::vector<float> v = gather_values(args, args.empty(), "values", true, &n);
  json arr = json::array();
  for (size_t i = 0; i < n; ++i) {
    const uint8_t c = dmx::encode_element(f, v[i], opt.overflow, opt.int8_allow_minus128);
    const float back = dmx::decode_element(f, c);
    if (as_json)
      arr.push_back(
          {{"input", hex_float(v[i])}, {"code", hex_code(c)}, {"value", json_number(back)}});
    else
      std::printf("%s\n", hex_code(c).c_str());
  }
  if (as_json)
    print_json({{"format", dmx::format_name(f)},
                {"overflow", overflow_name(opt.overflow)},
                {"int8_min128", opt.int8_allow_minus128},
                {"elements", arr}});
  return 0;
}

int cmd_decode(const std::string& format, const std::vector<std::string>& args, bool as_json) {
  const dmx::MxFormat f = parse_format_or_throw(format, "--format");
  const dmx::FormatInfo& fi = dmx::format_info(f);
  std::vector<std::string> toks;
  std::string where = "codes";
  if (args.empty()) {
    toks = split_tokens(read_stdin("codes"));
    where = "stdin codes";
  } else {
    for (const auto& a : args)
      for (auto& t : split_tokens(a)) toks.push_back(t);
  }
  if (toks.empty()) throw UsageError(where + ": no codes given");
  std::vector<float> vals;
  json cj = json::array();
  for (size_t i = 0; i < toks.size(); ++i) {
    const unsigned c = parse_code(toks[i], where + " #" + std::to_string(i + 1),
                                  (1u << fi.bits) - 1u, std::string(fi.long_name) + " codes");
    vals.push_back(dmx::decode_element(f, static_cast<uint8_t>(c)));
    cj.push_back(hex_code(c));
  }
  print_values(vals, as_json, {{"format", fi.name}, {"codes", cj}});
  return 0;
}

// ---- Help text: worked examples (tests/conformance runs each and compares the output)
// --------------

const char* kFormatsExamples = R"(Examples:
  $ dmx-mx formats
  name  long      bits ebits mbits bias    emax  max_normal min_subnormal inf nan
  E4M3  FP8 E4M3     8     4     3    7       8         448          2^-9 no  yes
  E5M2  FP8 E5M2     8     5     2   15      15       57344         2^-16 yes yes
  E3M2  FP6 E3M2     6     3     2    3       4          28          2^-4 no  no 
  E2M3  FP6 E2M3     6     2     3    1       2         7.5          2^-3 no  no 
  E2M1  FP4 E2M1     4     2     1    1       2           6          2^-1 no  no 
  INT8  INT8         8     0     6    0       0    1.984375          2^-6 no  no 
  scale: E8M0, code e = 2^(e-127) for e in 0x00..0xfe, 0xff = NaN; block size 32
)";

const char* kQuantizeExamples =
    R"(Values: arguments or stdin, separated by whitespace or commas; decimal, hex-float
(0x1.8p+3), inf, nan; negative ones (-inf, -.5) are fine as arguments. Each is rounded to FP32
(RNE) first; a finite literal beyond the FP32 range is an error. The count must be a multiple
of 32 unless --pad zero-fills the last block (the zeros are quantized too, and their codes are
printed). Several blocks are quantized in order, each with its own scale. In the examples below, 500 saturates to 448 under FLOOR
(floor(log2 500) - emax = 0) while RCEIL picks 2^1 so that 500/2 = 250 rounds to 256.

Examples:
  $ dmx-mx quantize -f e2m1 --pad 1 2 3 4 5 6 -0.5 0.25
  FP4 E2M1, scale rule FLOOR, 1 block(s) of 32 (8 values + 24 zero padding)
  block 0: scale 0x7f = 2^0
    codes: 0x02 0x04 0x05 0x06 0x06 0x07 0x09 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

  $ echo "0x1.8p+3, 100, -0.1" | dmx-mx quantize -f e4m3 --pad
  FP8 E4M3, scale rule FLOOR, 1 block(s) of 32 (3 values + 29 zero padding)
  block 0: scale 0x7d = 2^-2
    codes: 0x64 0x7c 0xad 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

  $ dmx-mx quantize -f e4m3 --pad 500
  FP8 E4M3, scale rule FLOOR, 1 block(s) of 32 (1 values + 31 zero padding)
  block 0: scale 0x7f = 2^0
    codes: 0x7e 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

  $ dmx-mx quantize -f e4m3 --pad --scale-rule rceil 500
  FP8 E4M3, scale rule RCEIL, 1 block(s) of 32 (1 values + 31 zero padding)
  block 0: scale 0x80 = 2^1
    codes: 0x78 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00 0x00

--json prints {format, scale_rule, overflow, nan_policy, int8_min128, n_given, n, input[],
blocks[{scale, scale_exp, codes[], dequantized[]}]} with values as hex-floats.
)";

const char* kDequantizeExamples =
    R"(Scales: --scale, repeatable, each holding one or more E8M0 codes separated by whitespace,
commas or colons (0x7f:0x80). Codes: --codes, repeatable (or stdin when absent), hex (0x3c)
or decimal, separated by whitespace or commas; 32 codes per scale, block after block. A colon
(or a new --codes) starts the next block, and then each block must hold exactly 32 codes.
--pad zero-fills the last block; only the values of the given codes are printed.
Output: one value per line, shortest decimal that reads back as the same FP32; --json adds
hex-floats.

Examples:
  $ dmx-mx dequantize -f e4m3 --pad --scale 0x7d --codes "0x64 0x7c 0xad"
  12
  96
  -0.1015625

  $ dmx-mx dequantize -f e2m1 --pad --scale 0x7f:0x81 --codes "0x2 0x7 0xf 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0" --codes "0x1"
  1
  6
  -6
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  0
  2
)";

const char* kDotExamples =
    R"(Operands: each is either --X-values (quantized first with --X-format and the policy
options; "-" reads stdin) or --X-scale + --X-codes (as in dequantize), for X = a, b.
--format sets both formats; --a-format/--b-format override it (operands may differ).
dot_exact: the whole dot product exactly, one RNE rounding to FP32. dot_blocked: per block
r_j = RNE_fp32(2^(sa+sb-254) * exact sum), then ((r_0 + r_1) + r_2) + ... in FP32.

Examples:
  $ dmx-mx dot --pad --a-format e4m3 --a-values "1.1 2.2 3.3" --b-format e2m1 --b-values "1 -0.5 6"
  a: E4M3, b: E2M1, 32 element(s), 1 block(s)
  block 0: a scale 0x78, b scale 0x7f, r = 0x1.38p+4 = 19.5
  dot_exact   = 0x1.38p+4 = 19.5 (fp32 bits 0x419c0000)
  dot_blocked = 0x1.38p+4 = 19.5 (fp32 bits 0x419c0000)

(a quantizes at scale 2^-7 to 1.125, 2.25, 3.25; 1.125 - 1.125 + 19.5 = 19.5.)
)";

const char* kEncodeExamples =
    R"(Encodes each FP32 value as one element code, RNE, no shared scale (scale 2^0).

Examples:
  $ dmx-mx encode -f e5m2 --overflow ovf 1.5 1e6 0x1p-17
  0x3e
  0x7c
  0x00
)";

const char* kDecodeExamples =
    R"(Decodes element codes (hex or decimal) to their FP32 values, no shared scale.

Examples:
  $ dmx-mx decode -f e2m3 0x0f 0x2f 1
  1.875
  -1.875
  0.125
)";

int run(int argc, char** argv) {
  CLI::App app{
      "dmx-mx: the golden OCP MX (Microscaling) model on the command line.\n"
      "Quantize FP32 numbers into E8M0 scales + element codes, dequantize, dot two MX vectors\n"
      "(exact and blocked), encode/decode single elements. See `dmx-mx <command> --help`.",
      "dmx-mx"};
  app.require_subcommand(1);
  app.footer(
      "Errors: one line 'dmx-mx: error: <input>: <problem>' on stderr; exit 2 for usage errors,\n"
      "1 for other failures.");
  bool as_json = false;
  std::string format;
  PolicyFlags pf;
  bool pad = false;

  auto* formats = app.add_subcommand("formats", "Print the element format table");
  formats->add_flag("--json", as_json, "Machine-readable JSON output");
  formats->footer(kFormatsExamples);

  auto* quantize = app.add_subcommand("quantize", "Quantize FP32 values into MX blocks");
  std::vector<std::string> q_values;
  quantize->add_option("-f,--format", format, "Element format (see dmx-mx formats)")->required();
  pf.add_to(quantize);
  quantize->add_flag("--pad", pad, "Zero-pad the last block to 32 values");
  quantize->add_flag("--json", as_json, "Machine-readable JSON output");
  quantize->add_option("values", q_values, "Values (else read from stdin)");
  quantize->footer(kQuantizeExamples);

  auto* dequantize = app.add_subcommand("dequantize", "Dequantize MX blocks (scales + codes)");
  std::vector<std::string> d_scales, d_codes;
  dequantize->add_option("-f,--format", format, "Element format")->required();
  dequantize->add_option("--scale", d_scales, "E8M0 scale code(s), one per block")->required();
  dequantize->add_option("--codes", d_codes, "Element codes, 32 per block (else stdin)");
  dequantize->add_flag("--pad", pad, "Zero-fill the last block's missing codes");
  dequantize->add_flag("--json", as_json, "Machine-readable JSON output");
  dequantize->footer(kDequantizeExamples);

  auto* dot = app.add_subcommand("dot", "Dot product of two MX vectors: dot_exact and dot_blocked");
  OperandArgs oa, ob;
  dot->add_option("-f,--format", format, "Element format of both operands");
  for (const auto& operand : {std::pair<OperandArgs*, std::string>{&oa, "a"}, {&ob, "b"}}) {
    OperandArgs* o = operand.first;  // a named variable: lambdas may not capture a binding
    const std::string& x = operand.second;
    dot->add_option("--" + x + "-format", o->format, "Element format of operand " + x);
    dot->add_option("--" + x + "-scale", o->scales, "Scale code(s) of operand " + x);
    dot->add_option("--" + x + "-codes", o->codes, "Element codes of operand " + x)
        ->each([o](const std::string&) { o->has_codes = true; });
    dot->add_option("--" + x + "-values", o->values,
                    "Values of operand " + x + " to quantize first (- = stdin)")
        ->each([o](const std::string&) { o->has_values = true; });
  }
  pf.add_to(dot);
  dot->add_flag("--pad", pad, "Zero-pad values / zero-fill codes of the last block");
  dot->add_flag("--json", as_json, "Machine-readable JSON output");
  dot->footer(kDotExamples);

  auto* encode = app.add_subcommand("encode", "Encode single FP32 values as element codes");
  std::vector<std::string> e_values;
  encode->add_option("-f,--format", format, "Element format")->required();
  pf.add_to(encode);
  encode->add_flag("--json", as_json, "Machine-readable JSON output");
  encode->add_option("values", e_values, "Values (else read from stdin)");
  encode->footer(kEncodeExamples);

  auto* decode = app.add_subcommand("decode", "Decode single element codes to FP32 values");
  std::vector<std::string> c_codes;
  decode->add_option("-f,--format", format, "Element format")->required();
  decode->add_flag("--json", as_json, "Machine-readable JSON output");
  decode->add_option("codes", c_codes, "Codes (else read from stdin)");
  decode->footer(kDecodeExamples);

  if (const auto rc = dmx::parse_cli(app, "dmx-mx", argc, argv)) return *rc;
  if (formats->parsed()) return cmd_formats(as_json);
  if (quantize->parsed()) return cmd_quantize(format, pf, pad, q_values, as_json);
  if (dequantize->parsed()) return cmd_dequantize(format, d_scales, d_codes, pad, as_json);
  if (dot->parsed()) return cmd_dot(format, oa, ob, pf, pad, as_json);
  if (encode->parsed()) return cmd_encode(format, pf, e_values, as_json);
  if (decode->parsed()) return cmd_decode(format, c_codes, as_json);
  return 2;
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

}  // namespace

int main(int argc, char** argv) {
  return dmx::run_tool("dmx-mx", [&] {
    std::vector<std::string> args = protect_negative_numbers(argc, argv);
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    return run(argc, cargs.data());
  });
}
