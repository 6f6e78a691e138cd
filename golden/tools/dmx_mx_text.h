// dmx-mx's text layer: how MX values, codes and scales are parsed from and printed to text, and
// the options shared by its subcommands. The numbers themselves come from dmx::golden.
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "dmx/golden.h"
#include "dmx/util.h"

namespace dmx::mx_cli {

using nlohmann::json;
// A usage error (bad number, unknown format, wrong length): exit code 2 (dmx/util.h).
using dmx::UsageError;

// ---- Printing -----------------------------------------------------------------------------------
std::string hex_code(unsigned c);    // 0x3c
std::string hex_float(float x);      // C99 hex float
std::string decimal(float x);        // shortest round-trip decimal
std::string fp32_hex_bits(float x);  // 0x3f800000
json json_number(float x);           // a number, or "nan" / "inf" / "-inf" strings
std::string scale_text(uint8_t s);   // "0x7f (2^0)" or NaN
json scale_json_exp(uint8_t s);      // the unbiased exponent, or null for NaN

// ---- Parsing ------------------------------------------------------------------------------------
// Splits on whitespace and commas (and colons when colon_too).
std::vector<std::string> split_tokens(const std::string& s, bool colon_too = false);
float parse_value(const std::string& tok, const std::string& where);
unsigned parse_code(const std::string& tok, const std::string& where, unsigned max_code,
                    const std::string& what);
std::string read_stdin(const std::string& what);
dmx::MxFormat parse_format_or_throw(const std::string& s, const std::string& opt);
// CLI11 reads "-inf", "-nan", "-.5" as short options; a leading space (dropped again by the
// tokenizer) makes every negative number a plain value, so no "--" is needed before one.
std::vector<std::string> protect_negative_numbers(int argc, char** argv);

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

const char* overflow_name(dmx::Overflow o);
const char* nan_policy_name(dmx::NonFinitePolicy p);

// Values to quantize: tokens of the arguments (or of stdin when there are none), padded or
// length-checked. Returns the values and the count before padding.
std::vector<float> gather_values(const std::vector<std::string>& args, bool from_stdin,
                                 const std::string& what, bool pad, size_t* n_given);

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
                        const std::string& codes_where, bool pad);

// ---- Help text: worked examples (tests/conformance runs each and compares the output) ---------
extern const char* const kFormatsExamples;
extern const char* const kQuantizeExamples;
extern const char* const kDequantizeExamples;
extern const char* const kDotExamples;
extern const char* const kEncodeExamples;
extern const char* const kDecodeExamples;

}  // namespace dmx::mx_cli
