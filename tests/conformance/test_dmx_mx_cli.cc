// dmx-mx CLI: runs the real binary and checks every number it prints against dmx::golden
// computed here, every worked example of its --help against the documented output, and every
// error path (exit code + one-line message).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "dmx/golden.h"

#ifndef DMX_MX_BINARY
#error "DMX_MX_BINARY must name the dmx-mx executable"
#endif

namespace {

using nlohmann::json;

struct Result {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) r += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return r + "'";
}

// Runs a shell command line in which the word `dmx-mx` names the binary under test.
Result run_shell(const std::string& cmdline, const std::string& stdin_text = "",
                 const std::string& stdout_target = "") {
  static int counter = 0;
  const std::string base = testing::TempDir() + "dmx_mx_cli_" + std::to_string(::getpid()) + "_" +
                           std::to_string(counter++);
  const std::string in = base + ".in", out = base + ".out", err = base + ".err";
  {
    std::ofstream f(in, std::ios::binary);
    f << stdin_text;
  }
  std::string cmd;
  // Substitute the binary for each `dmx-mx` command word (start of line or after a pipe).
  size_t pos = 0;
  const std::string word = "dmx-mx ";
  while (true) {
    const size_t at = cmdline.find(word, pos);
    if (at == std::string::npos) break;
    cmd += cmdline.substr(pos, at - pos) + shell_quote(DMX_MX_BINARY) + " ";
    pos = at + word.size();
  }
  cmd += cmdline.substr(pos);
  const std::string full =
      "( " + cmd + " ) <" + in + " >" + (stdout_target.empty() ? out : stdout_target) + " 2>" + err;
  const int status = std::system(full.c_str());
  Result r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = stdout_target.empty() ? slurp(out) : "";
  r.err = slurp(err);
  std::remove(in.c_str());
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

Result run_args(const std::string& args, const std::string& stdin_text = "") {
  return run_shell("dmx-mx " + args, stdin_text);
}

json run_json(const std::string& args, const std::string& stdin_text = "") {
  // Before a "--", if any (after it, --json would be a value).
  const size_t dd = args.find(" -- ");
  const std::string with_json =
      dd == std::string::npos ? args + " --json" : args.substr(0, dd) + " --json" + args.substr(dd);
  const Result r = run_args(with_json, stdin_text);
  EXPECT_EQ(r.rc, 0) << args << "\nstderr: " << r.err;
  EXPECT_EQ(r.err, "") << args;
  try {
    return json::parse(r.out);
  } catch (const std::exception& e) {
    ADD_FAILURE() << args << ": output is not JSON: " << e.what() << "\n" << r.out;
    return json();
  }
}

std::string hex_code(unsigned c) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%02x", c);
  return buf;
}
std::string hex_float(float x) {
  if (std::isnan(x)) return "nan";
  if (std::isinf(x)) return x < 0 ? "-inf" : "inf";
  char buf[48];
  std::snprintf(buf, sizeof buf, "%a", static_cast<double>(x));
  return buf;
}
uint8_t code_of(const json& j) {
  return static_cast<uint8_t>(std::stoul(j.get<std::string>(), nullptr, 16));
}
float float_of_hex(const json& j) { return std::strtof(j.get<std::string>().c_str(), nullptr); }
std::string bits_hex(float x) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "0x%08x", dmx::fp32_bits(x));
  return buf;
}

dmx::QuantizeOptions options_from_json(const json& j) {
  dmx::QuantizeOptions o;
  o.scale_rule = *dmx::parse_scale_rule(j.at("scale_rule").get<std::string>());
  o.overflow = j.at("overflow") == "ovf" ? dmx::Overflow::OVF : dmx::Overflow::SAT;
  o.non_finite = j.at("nan_policy") == "element" ? dmx::NonFinitePolicy::ELEMENT
                                                 : dmx::NonFinitePolicy::NAN_SCALE;
  o.int8_allow_minus128 = j.at("int8_min128").get<bool>();
  return o;
}

// ---- Golden checks of each subcommand's JSON
// -------------------------------------------------------

void check_formats_json(const json& j) {
  ASSERT_EQ(j.size(), static_cast<size_t>(dmx::kNumFormats));
  for (int i = 0; i < dmx::kNumFormats; ++i) {
    const dmx::FormatInfo& fi = dmx::format_info(dmx::kAllFormats[i]);
    const json& e = j[i];
    EXPECT_EQ(e["name"], fi.name);
    EXPECT_EQ(e["bits"], fi.bits);
    EXPECT_EQ(e["bias"], fi.bias);
    EXPECT_EQ(e["emax"], fi.emax);
    EXPECT_EQ(e["quantum_exp"], fi.quantum_exp);
    EXPECT_EQ(e["max_magnitude"], fi.max_magnitude);
    EXPECT_EQ(e["max_normal"].get<double>(), static_cast<double>(fi.max_normal));
    EXPECT_EQ(e["min_subnormal"].get<double>(), static_cast<double>(fi.min_subnormal));
    EXPECT_EQ(e["has_inf"], fi.has_inf);
    EXPECT_EQ(e["has_nan"], fi.has_nan);
  }
}

// Recomputes the quantization of the echoed input with golden and compares everything.
void check_quantize_json(const json& j) {
  const dmx::MxFormat f = *dmx::parse_format(j.at("format").get<std::string>());
  const dmx::QuantizeOptions opt = options_from_json(j);
  std::vector<float> v;
  for (const auto& x : j.at("input")) v.push_back(float_of_hex(x));
  ASSERT_EQ(v.size(), j.at("n").get<size_t>());
  ASSERT_EQ(v.size() % dmx::kBlockSize, 0u);
  const size_t nb = v.size() / dmx::kBlockSize;
  std::vector<uint8_t> scales(nb), codes(v.size());
  dmx::quantize_row(f, v.data(), v.size(), scales.data(), codes.data(), opt);
  std::vector<float> back(v.size());
  dmx::dequantize_row(f, scales.data(), codes.data(), v.size(), back.data());
  ASSERT_EQ(j.at("blocks").size(), nb);
  for (size_t b = 0; b < nb; ++b) {
    const json& bj = j["blocks"][b];
    EXPECT_EQ(bj["scale"], hex_code(scales[b])) << "block " << b;
    if (scales[b] == dmx::kScaleNaN)
      EXPECT_TRUE(bj["scale_exp"].is_null());
    else
      EXPECT_EQ(bj["scale_exp"], static_cast<int>(scales[b]) - 127);
    for (int i = 0; i < dmx::kBlockSize; ++i) {
      EXPECT_EQ(bj["codes"][i], hex_code(codes[b * 32 + i])) << "block " << b << " elt " << i;
      EXPECT_EQ(bj["dequantized"][i], hex_float(back[b * 32 + i])) << "block " << b << " elt " << i;
    }
  }
}

void check_values(const json& j, const std::vector<float>& want) {
  ASSERT_EQ(j.at("hex").size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(j["hex"][i], hex_float(want[i])) << "value " << i;
    if (std::isfinite(want[i]))
      EXPECT_EQ(j["values"][i].get<double>(), static_cast<double>(want[i])) << "value " << i;
    else
      EXPECT_EQ(j["values"][i], hex_float(want[i])) << "value " << i;
  }
}

void check_dequantize_json(const json& j) {
  const dmx::MxFormat f = *dmx::parse_format(j.at("format").get<std::string>());
  std::vector<uint8_t> scales, codes;
  for (const auto& s : j.at("scales")) scales.push_back(code_of(s));
  for (const auto& c : j.at("codes")) codes.push_back(code_of(c));
  const size_t n = codes.size();
  codes.resize(scales.size() * dmx::kBlockSize, 0);  // --pad zero-fills
  std::vector<float> out(codes.size());
  dmx::dequantize_row(f, scales.data(), codes.data(), codes.size(), out.data());
  out.resize(n);
  check_values(j, out);
}

struct OperandData {
  dmx::MxFormat f;
  std::vector<uint8_t> scales, codes;
};
OperandData operand_of(const json& j) {
  OperandData o{*dmx::parse_format(j.at("format").get<std::string>()), {}, {}};
  for (const auto& s : j.at("scales")) o.scales.push_back(code_of(s));
  for (const auto& c : j.at("codes")) o.codes.push_back(code_of(c));
  return o;
}

void check_dot_json(const json& j) {
  const OperandData a = operand_of(j.at("a")), b = operand_of(j.at("b"));
  const size_t n = j.at("n").get<size_t>();
  ASSERT_EQ(a.codes.size(), n);
  ASSERT_EQ(b.codes.size(), n);
  const dmx::MxVector va{a.f, a.scales.data(), a.codes.data()};
  const dmx::MxVector vb{b.f, b.scales.data(), b.codes.data()};
  const float exact = dmx::dot_exact(va, vb, n), blocked = dmx::dot_blocked(va, vb, n);
  EXPECT_EQ(j["dot_exact"]["fp32_bits"], bits_hex(exact));
  EXPECT_EQ(j["dot_exact"]["hex"], hex_float(exact));
  EXPECT_EQ(j["dot_blocked"]["fp32_bits"], bits_hex(blocked));
  EXPECT_EQ(j["dot_blocked"]["hex"], hex_float(blocked));
  ASSERT_EQ(j.at("block_partials").size(), n / 32);
  for (size_t k = 0; k < n / 32; ++k) {
    const float r = dmx::dot_block(a.f, a.scales[k], a.codes.data() + 32 * k, b.f, b.scales[k],
                                   b.codes.data() + 32 * k);
    EXPECT_EQ(j["block_partials"][k]["fp32_bits"], bits_hex(r)) << "block " << k;
  }
}

void check_encode_json(const json& j) {
  const dmx::MxFormat f = *dmx::parse_format(j.at("format").get<std::string>());
  const dmx::Overflow ov = j.at("overflow") == "ovf" ? dmx::Overflow::OVF : dmx::Overflow::SAT;
  for (const auto& e : j.at("elements")) {
    const float x = float_of_hex(e["input"]);
    const uint8_t c = dmx::encode_element(f, x, ov, j.at("int8_min128").get<bool>());
    EXPECT_EQ(e["code"], hex_code(c)) << e.dump();
  }
}

void check_decode_json(const json& j) {
  const dmx::MxFormat f = *dmx::parse_format(j.at("format").get<std::string>());
  std::vector<float> want;
  for (const auto& c : j.at("codes")) want.push_back(dmx::decode_element(f, code_of(c)));
  check_values(j, want);
}

void check_json(const std::string& sub, const json& j) {
  if (sub == "formats") return check_formats_json(j);
  if (sub == "quantize") return check_quantize_json(j);
  if (sub == "dequantize") return check_dequantize_json(j);
  if (sub == "dot") return check_dot_json(j);
  if (sub == "encode") return check_encode_json(j);
  if (sub == "decode") return check_decode_json(j);
  FAIL() << "unknown subcommand " << sub;
}

// ---- --help examples ---------------------------------------------------------------------------

struct Example {
  std::string command;   // shell line, `dmx-mx ...`
  std::string expected;  // documented stdout
};

// Examples are "  $ <command>" followed by the output indented by two spaces, up to a blank line.
std::vector<Example> parse_examples(const std::string& help) {
  std::vector<Example> ex;
  std::istringstream in(help);
  std::string line;
  Example* cur = nullptr;
  while (std::getline(in, line)) {
    if (line.rfind("  $ ", 0) == 0) {
      ex.push_back({line.substr(4), ""});
      cur = &ex.back();
    } else if (cur && line.rfind("  ", 0) == 0) {
      cur->expected += line.substr(2) + "\n";
    } else {
      cur = nullptr;
    }
  }
  return ex;
}

const char* const kSubcommands[] = {"formats", "quantize", "dequantize", "dot", "encode", "decode"};

TEST(DmxMxCli, TopLevelHelp) {
  const Result r = run_args("--help");
  EXPECT_EQ(r.rc, 0);
  for (const char* sub : kSubcommands) EXPECT_NE(r.out.find(sub), std::string::npos) << sub;
}

TEST(DmxMxCli, EveryHelpExamplePrintsItsDocumentedOutput) {
  for (const char* sub : kSubcommands) {
    const Result h = run_args(std::string(sub) + " --help");
    ASSERT_EQ(h.rc, 0) << sub;
    const auto examples = parse_examples(h.out);
    EXPECT_FALSE(examples.empty()) << sub << " --help has no worked example";
    for (const auto& e : examples) {
      ASSERT_NE(e.command.find(std::string("dmx-mx ") + sub), std::string::npos) << e.command;
      const Result r = run_shell(e.command);
      EXPECT_EQ(r.rc, 0) << e.command << "\n" << r.err;
      EXPECT_EQ(r.out, e.expected) << e.command;
    }
  }
}

TEST(DmxMxCli, EveryHelpExampleAgreesWithGolden) {
  for (const char* sub : kSubcommands) {
    const Result h = run_args(std::string(sub) + " --help");
    for (const auto& e : parse_examples(h.out)) {
      const Result r = run_shell(e.command + " --json");
      ASSERT_EQ(r.rc, 0) << e.command << "\n" << r.err;
      SCOPED_TRACE(e.command);
      check_json(sub, json::parse(r.out));
    }
  }
}

// The hand-checked facts behind the examples (not only "the tool agrees with itself").
TEST(DmxMxCli, ExampleFactsByHand) {
  // E2M1 with scale 2^0: 5 is a tie between 4 (0x6) and 6 (0x7) -> even 0x6; 0.25 ties to +0.
  json q = run_json("quantize -f e2m1 --pad 1 2 3 4 5 6 -0.5 0.25");
  EXPECT_EQ(q["blocks"][0]["scale"], "0x7f");
  const std::vector<std::string> want = {"0x02", "0x04", "0x05", "0x06",
                                         "0x06", "0x07", "0x09", "0x00"};
  for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(q["blocks"][0]["codes"][i], want[i]);
  // E4M3: 500 saturates to 448 (0x7e) under FLOOR; RCEIL picks 2^1 and 250 -> 256 (0x78).
  EXPECT_EQ(run_json("quantize -f e4m3 --pad 500")["blocks"][0]["codes"][0], "0x7e");
  json r = run_json("quantize -f e4m3 --pad --scale-rule rceil 500");
  EXPECT_EQ(r["blocks"][0]["scale"], "0x80");
  EXPECT_EQ(r["blocks"][0]["codes"][0], "0x78");
  // 1.125 * 1 + 2.25 * -0.5 + 3.25 * 6 = 19.5
  json d = run_json(
      "dot --pad --a-format e4m3 --a-values \"1.1 2.2 3.3\" --b-format e2m1 --b-values \"1 -0.5 "
      "6\"");
  EXPECT_EQ(d["dot_exact"]["decimal"].get<double>(), 19.5);
  EXPECT_EQ(d["dot_blocked"]["fp32_bits"], "0x419c0000");
}

// ---- Random inputs against golden ---------------------------------------------------------------

std::vector<float> random_values(std::mt19937& rng, size_t n) {
  std::vector<float> v(n);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> e(-20, 20);
  for (auto& x : v) x = std::ldexp(u(rng), e(rng));
  return v;
}

TEST(DmxMxCli, QuantizeMatchesGoldenOnRandomBlocks) {
  const unsigned seed = 20240601;
  std::mt19937 rng(seed);
  const char* rules[] = {"floor", "ceil", "even", "rceil"};
  for (dmx::MxFormat f : dmx::kAllFormats) {
    for (const char* rule : rules) {
      std::vector<float> v = random_values(rng, 64);
      std::string text;
      for (size_t i = 0; i < v.size(); ++i) {
        char buf[64];  // alternate decimal (round-trips at %.9g) and hex-float input
        std::snprintf(buf, sizeof buf, i % 2 ? "%.9g," : "%a\n", static_cast<double>(v[i]));
        text += buf;
      }
      const std::string args =
          std::string("quantize -f ") + dmx::format_name(f) + " --scale-rule " + rule;
      const json j = run_json(args, text);
      SCOPED_TRACE(args + " seed " + std::to_string(seed));
      for (size_t i = 0; i < v.size(); ++i) ASSERT_EQ(j["input"][i], hex_float(v[i]));
      check_quantize_json(j);
    }
  }
}

TEST(DmxMxCli, QuantizeNonFiniteAndPolicies) {
  // NaN/Inf blocks: scale 0xFF by default; element policy keeps E4M3 finite scale.
  json a = run_json("quantize -f e4m3 --pad 1 -inf 2");  // no "--" needed before -inf
  EXPECT_EQ(a["n_given"], 3);
  EXPECT_EQ(a["blocks"][0]["scale"], "0xff");
  check_quantize_json(a);
  json b = run_json("quantize -f e4m3 --pad --nan-policy element -- 1 nan 2");
  EXPECT_NE(b["blocks"][0]["scale"], "0xff");
  check_quantize_json(b);
  json c = run_json("quantize -f e5m2 --pad --overflow ovf --nan-policy element -- 1 -inf 3");
  check_quantize_json(c);
  // INT8, scale 2^0: -1.999 * 64 = -127.9 rounds to -128, kept only with --int8-min128.
  json d = run_json("quantize -f int8 --pad --int8-min128 -- -1.999 0.5");
  EXPECT_TRUE(d["int8_min128"].get<bool>());
  check_quantize_json(d);
  EXPECT_EQ(d["blocks"][0]["codes"][0], "0x80");
  json e = run_json("quantize -f int8 --pad -- -1.999 0.5");
  check_quantize_json(e);
  EXPECT_EQ(e["blocks"][0]["codes"][0], "0x81");
}

TEST(DmxMxCli, DequantizeMatchesGoldenOnRandomCodes) {
  const unsigned seed = 7;
  std::mt19937 rng(seed);
  for (dmx::MxFormat f : dmx::kAllFormats) {
    const unsigned max_code = (1u << dmx::format_bits(f)) - 1u;
    std::vector<uint8_t> scales = {static_cast<uint8_t>(rng() % 256),
                                   static_cast<uint8_t>(rng() % 255)};
    std::vector<uint8_t> codes(64);
    std::string block_text[2];
    for (size_t i = 0; i < 64; ++i) {
      codes[i] = static_cast<uint8_t>(rng() % (max_code + 1));
      block_text[i / 32] += (i % 3 ? hex_code(codes[i]) : std::to_string(codes[i])) + " ";
    }
    std::vector<float> want(64);
    dmx::dequantize_row(f, scales.data(), codes.data(), 64, want.data());
    const std::string args = std::string("dequantize -f ") + dmx::format_name(f) + " --scale " +
                             hex_code(scales[0]) + ":" + hex_code(scales[1]);
    SCOPED_TRACE(args + " seed " + std::to_string(seed));
    // Blocks as two --codes, as one colon-separated --codes, and on stdin.
    check_values(
        run_json(args + " --codes \"" + block_text[0] + "\" --codes \"" + block_text[1] + "\""),
        want);
    check_values(run_json(args + " --codes \"" + block_text[0] + ":" + block_text[1] + "\""), want);
    check_values(run_json(args, block_text[0] + "\n" + block_text[1]), want);
    // Text output: one shortest-round-trip decimal per line.
    const Result t = run_args(args, block_text[0] + block_text[1]);
    ASSERT_EQ(t.rc, 0) << t.err;
    std::istringstream lines(t.out);
    std::string line;
    for (size_t i = 0; i < 64; ++i) {
      ASSERT_TRUE(std::getline(lines, line));
      const float got = std::strtof(line.c_str(), nullptr);
      if (std::isnan(want[i]))
        EXPECT_TRUE(std::isnan(got)) << i;
      else
        EXPECT_EQ(dmx::fp32_bits(got), dmx::fp32_bits(want[i])) << i << ": " << line;
    }
  }
}

TEST(DmxMxCli, DotMatchesGoldenOnRandomOperands) {
  const unsigned seed = 99;
  std::mt19937 rng(seed);
  for (dmx::MxFormat fa : dmx::kAllFormats) {
    const dmx::MxFormat fb = dmx::kAllFormats[rng() % dmx::kNumFormats];
    auto rand_codes = [&](dmx::MxFormat f) {
      std::string s;
      for (int i = 0; i < 64; ++i) {
        s += hex_code(rng() % (1u << dmx::format_bits(f))) + (i == 31 ? ":" : " ");
      }
      return s;
    };
    const std::string args =
        std::string("dot --a-format ") + dmx::format_name(fa) + " --a-scale 0x" +
        std::to_string(70 + rng() % 20) + ",0x7f" + " --a-codes \"" + rand_codes(fa) +
        "\" --b-format " + dmx::format_name(fb) + " --b-scale 0x80 --b-scale 0x" +
        std::to_string(60 + rng() % 30) + " --b-codes \"" + rand_codes(fb) + "\"";
    SCOPED_TRACE(args + " seed " + std::to_string(seed));
    check_dot_json(run_json(args));
  }
  // Operands given as values: golden quantizes them the same way.
  std::vector<float> av = random_values(rng, 96), bv = random_values(rng, 96);
  std::string at, bt;
  for (int i = 0; i < 96; ++i) {
    at += hex_float(av[i]) + " ";
    bt += hex_float(bv[i]) + " ";
  }
  const json j =
      run_json("dot -f mxfp6 --scale-rule even --a-values \"" + at + "\" --b-values -", bt);
  std::vector<uint8_t> as(3), ac(96), bs(3), bc(96);
  dmx::QuantizeOptions opt;
  opt.scale_rule = dmx::ScaleRule::EVEN;
  dmx::quantize_row(dmx::MxFormat::E2M3, av.data(), 96, as.data(), ac.data(), opt);
  dmx::quantize_row(dmx::MxFormat::E2M3, bv.data(), 96, bs.data(), bc.data(), opt);
  const dmx::MxVector va{dmx::MxFormat::E2M3, as.data(), ac.data()};
  const dmx::MxVector vb{dmx::MxFormat::E2M3, bs.data(), bc.data()};
  EXPECT_EQ(j["dot_exact"]["fp32_bits"], bits_hex(dmx::dot_exact(va, vb, 96)));
  EXPECT_EQ(j["dot_blocked"]["fp32_bits"], bits_hex(dmx::dot_blocked(va, vb, 96)));
  for (int i = 0; i < 96; ++i) EXPECT_EQ(j["a"]["codes"][i], hex_code(ac[i]));
  check_dot_json(j);
}

TEST(DmxMxCli, EncodeDecodeMatchGolden) {
  std::mt19937 rng(5);
  for (dmx::MxFormat f : dmx::kAllFormats) {
    std::vector<float> v = random_values(rng, 40);
    v.push_back(INFINITY);
    v.push_back(NAN);
    std::string text;
    for (float x : v) text += hex_float(x) + "\n";
    for (const char* ov : {"sat", "ovf"}) {
      const json j =
          run_json(std::string("encode -f ") + dmx::format_name(f) + " --overflow " + ov, text);
      ASSERT_EQ(j["elements"].size(), v.size());
      check_encode_json(j);
    }
    std::string codes;
    for (unsigned c = 0; c < (1u << dmx::format_bits(f)); ++c) codes += hex_code(c) + " ";
    check_decode_json(run_json(std::string("decode -f ") + dmx::format_name(f) + " " + codes));
  }
}

TEST(DmxMxCli, FormatsTableMatchesFormatInfo) { check_formats_json(run_json("formats")); }

// ---- Errors ------------------------------------------------------------------------------------

struct ErrorCase {
  std::string args, stdin_text;
  int rc;
  std::string message;  // must appear in the one stderr line
};

TEST(DmxMxCli, ErrorsAreOneLineWithExitCode) {
  const std::string z31 = " 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0";
  const std::vector<ErrorCase> cases = {
      {"", "", 2, "command line: A subcommand is required"},
      {"quantize --bogus -f e4m3 1", "", 2,
       "command line: The following argument was not expected: --bogus"},
      {"quantize 1", "", 2, "command line: --format is required"},
      {"quantize -f e9m9 1", "", 2, "--format 'e9m9': unknown format"},
      {"quantize -f e4m3 1 2 3", "", 2,
       "values: 3 numbers is not a multiple of the block size 32 (use --pad"},
      {"quantize -f e4m3", "1 2 3", 2, "stdin values: 3 numbers is not a multiple"},
      {"quantize -f e4m3", "  \n", 2, "stdin values: no numbers given"},
      {"quantize -f e4m3 --pad 1 abc", "", 2, "values #2 'abc': not a number"},
      {"quantize -f e4m3 --pad", "1,0x1.8p+3,0x1.8q", 2, "stdin values #3 '0x1.8q': not a number"},
      {"quantize -f e4m3 --pad 1e39", "", 2, "values #1 '1e39': overflows FP32"},
      // "1\0 2\0 3" was read as the single value 1.
      {"quantize -f e4m3 --pad", std::string("1\0 2\0 3", 7), 2, "a value contains a NUL byte"},
      {"dequantize -f e4m3 --pad --scale 0x7f", std::string("1\0 2", 4), 2,
       "a code contains a NUL byte"},
      {"quantize -f e4m3 --pad --scale-rule up 1", "", 2, "--scale-rule 'up': unknown rule"},
      {"quantize -f e4m3 --pad --overflow wrap 1", "", 2, "--overflow 'wrap': unknown mode"},
      {"quantize -f e4m3 --pad --nan-policy zero 1", "", 2, "--nan-policy 'zero': unknown policy"},
      {"dequantize -f e4m3 --codes 1", "", 2, "command line: --scale is required"},
      {"dequantize -f e4m3 --scale 0x7f --codes \"1 2 3\"", "", 2,
       "--codes: 3 codes for 1 scale(s); a block is 32 codes per scale"},
      {"dequantize -f e4m3 --scale 0x7f:0x7f --codes \"1" + z31 + "\"", "", 2,
       "--codes: 32 codes for 2 scale(s)"},
      {"dequantize -f e4m3 --scale 0x7f,0x7f --codes \"1" + z31 + ":1 2\"", "", 2,
       "--codes block 1: 2 codes, a block needs 32"},
      {"dequantize -f e2m1 --pad --scale 0x7f --codes \"0x10\"", "", 2,
       "--codes #1 '0x10': out of range for FP4 E2M1 codes (0x00..0x0f)"},
      {"dequantize -f e4m3 --pad --scale 0x100 --codes 1", "", 2,
       "--scale #1 '0x100': out of range for an E8M0 scale"},
      {"dequantize -f e4m3 --pad --scale 0x7f --codes \"1 x2\"", "", 2,
       "--codes #2 'x2': not a code"},
      {"dequantize -f e4m3 --pad --scale 0x7f", "0x1g", 2, "stdin codes #1 '0x1g': not a code"},
      {"dot -f e4m3 --pad --a-values 1", "", 2,
       "--b-codes/--b-values: give exactly one of them for operand b"},
      {"dot --pad --a-values 1 --b-values 2", "", 2, "--a-format: operand a has no format"},
      {"dot -f e4m3 --b-format fp5 --pad --a-values 1 --b-values 2", "", 2,
       "--b-format 'fp5': unknown format"},
      {"dot -f e4m3 --pad --a-values 1 --b-values 2 --a-scale 0x7f", "", 2,
       "--a-scale: not used with --a-values"},
      {"dot -f e4m3 --pad --a-values 1 --b-scale 0x7f,0x7f --b-codes \"1" + z31 + ":1\"", "", 2,
       "operands: a has 32 elements, b has 64; they must match"},
      {"dot -f e4m3 --pad --a-values - --b-values -", "1", 2, "stdin already used"},
      {"encode -f e4m3 1 two", "", 2, "values #2 'two': not a number"},
      {"decode -f e3m2 0x40", "", 2, "codes #1 '0x40': out of range for FP6 E3M2 codes"},
  };
  for (const auto& c : cases) {
    const Result r = run_args(c.args, c.stdin_text);
    SCOPED_TRACE("dmx-mx " + c.args);
    EXPECT_EQ(r.rc, c.rc);
    EXPECT_EQ(r.out, "") << "no partial output on error";
    EXPECT_EQ(r.err.rfind("dmx-mx: error: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "one line: " << r.err;
  }
}

TEST(DmxMxCli, WriteFailureExitsOne) {
  const Result r = run_shell("dmx-mx formats", "", "/dev/full");
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, "dmx-mx: error: stdout: write failed\n");
}

}  // namespace
