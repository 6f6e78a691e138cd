#include "mx_formats_vh.h"

#include <dmx/golden.h>

#include <sstream>

namespace dmx::rtl {
namespace {

struct Field {
  const char* suffix;  // MX_<FMT>_<suffix>
  const char* fn;      // mx_fmt_<fn>(f)
  int (*get)(const FormatInfo&);
};

const Field kFields[] = {
    {"BITS", "bits", [](const FormatInfo& i) { return i.bits; }},
    {"EBITS", "ebits", [](const FormatInfo& i) { return i.ebits; }},
    {"MBITS", "mbits", [](const FormatInfo& i) { return i.mbits; }},
    {"BIAS", "bias", [](const FormatInfo& i) { return i.bias; }},
    {"EMAX", "emax", [](const FormatInfo& i) { return i.emax; }},
    {"QEXP", "qexp", [](const FormatInfo& i) { return i.quantum_exp; }},
    {"HAS_INF", "has_inf", [](const FormatInfo& i) { return int(i.has_inf); }},
    {"HAS_NAN", "has_nan", [](const FormatInfo& i) { return int(i.has_nan); }},
    {"IS_INT", "is_int", [](const FormatInfo& i) { return int(i.is_int); }},
};

}  // namespace

std::string render_mx_formats_vh() {
  std::ostringstream o;
  o << "// MX element-format constants for the RTL, generated from golden's dmx::format_info() by\n"
       "// `dmx-rtl-gen-formats > rtl/mx_formats.vh`; the ctest test "
       "rtl_formats_vh_matches_golden\n"
       "// fails when this file and golden disagree. Include it inside a module body. Do not "
       "edit.\n"
       "/* verilator lint_off UNUSEDPARAM */\n";
  o << "localparam integer MX_NUM_FORMATS = " << kNumFormats << ";\n";
  o << "localparam integer MX_BLOCK_SIZE = " << kBlockSize << ";\n";
  o << "localparam integer MX_SCALE_BIAS = " << kScaleBias << ";\n";
  o << "localparam integer MX_SCALE_NAN = " << int(kScaleNaN) << ";\n";
  for (MxFormat f : kAllFormats) {
    const FormatInfo& info = format_info(f);
    o << "// " << info.long_name << " (MxFormat " << int(f) << ")\n";
    o << "localparam integer MX_" << info.name << " = " << int(f) << ";\n";
    for (const Field& field : kFields)
      o << "localparam integer MX_" << info.name << "_" << field.suffix << " = " << field.get(info)
        << ";\n";
  }
  o << "/* verilator lint_on UNUSEDPARAM */\n";
  // Constant functions indexed by the MxFormat value, for generate loops over formats.
  for (const Field& field : kFields) {
    o << "function automatic integer mx_fmt_" << field.fn << "(input integer f);\n"
      << "  case (f)\n";
    for (MxFormat f : kAllFormats)
      o << "    " << int(f) << ": mx_fmt_" << field.fn << " = MX_" << format_info(f).name << "_"
        << field.suffix << ";\n";
    o << "    default: mx_fmt_" << field.fn << " = 0;\n  endcase\nendfunction\n";
  }
  return o.str();
}

}  // namespace dmx::rtl
