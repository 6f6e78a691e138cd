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
#include "dmx_mx_text.h"

namespace {

using namespace dmx::mx_cli;

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

}  // namespace

int main(int argc, char** argv) {
  return dmx::run_tool("dmx-mx", [&] {
    std::vector<std::string> args = protect_negative_numbers(argc, argv);
    std::vector<char*> cargs;
    for (auto& a : args) cargs.push_back(a.data());
    return run(argc, cargs.data());
  });
}
