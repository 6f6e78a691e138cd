// rtl_activity: switching activity of mx_dot_unit per (weight, activation) format pair, combined
// with the Yosys area of the multi-format unit into a relative dynamic energy per block.
//
// Usage: rtl_activity AREA_CSV OUT_CSV [BLOCKS_PER_PAIR]   (run by rtl/synth/activity.sh)
//
// The model is Verilated with --coverage-toggle (Vmx_dot_unit_cov): Verilator counts, for every
// bit of every signal in every instance, how often its value changed between evaluations (zero
// delay: no glitches). Per pair the unit is warmed up, the counters zeroed, then BLOCKS_PER_PAIR
// blocks of representative data run at one block per cycle: Gaussian values (heavy-tailed in half
// of the blocks) quantized by golden, accumulated in chains of 64 blocks (acc_in = the previous
// block's result, K = 2048). The counters are written to a file and summed.
#include <dmx/golden.h>
#include <dmx/rtl.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "Vmx_dot_unit_cov.h"
#include "dmx/util.h"
#include "rtl_test_util.h"
#include "verilated.h"
#include "verilated_cov.h"

namespace dmx::rtl::test {
namespace {

struct Toggles {
  uint64_t bits = 0;      // toggle-covered signal bits
  uint64_t total = 0;     // value changes summed over all of them
  uint64_t reg_bits = 0;  // the pipeline registers' data bits (u_stage_*.out_data)
  uint64_t reg_total = 0;
};

// Sums the toggle points of a Verilator coverage.dat (lines: C '<\001key\002value...>' count).
Toggles read_coverage(const std::string& path) {
  std::ifstream f(path);
  Toggles t;
  std::string line;
  while (std::getline(f, line)) {
    if (line.size() < 4 || line[0] != 'C') continue;
    const size_t q1 = line.find('\''), q2 = line.rfind('\'');
    if (q1 == std::string::npos || q2 <= q1) continue;
    const std::string keys = line.substr(q1 + 1, q2 - q1 - 1);
    const uint64_t count = std::strtoull(line.c_str() + q2 + 1, nullptr, 10);
    std::map<std::string, std::string> kv;
    size_t pos = 0;
    while (pos < keys.size()) {
      const size_t k0 = keys.find('\001', pos);
      if (k0 == std::string::npos) break;
      const size_t v0 = keys.find('\002', k0);
      const size_t next = keys.find('\001', k0 + 1);
      if (v0 == std::string::npos) break;
      kv[keys.substr(k0 + 1, v0 - k0 - 1)] =
          keys.substr(v0 + 1, (next == std::string::npos ? keys.size() : next) - v0 - 1);
      pos = next == std::string::npos ? keys.size() : next;
    }
    if (kv["page"].rfind("v_toggle", 0) != 0) continue;
    ++t.bits;
    t.total += count;
    const std::string& h = kv["h"];
    const std::string& o = kv["o"];
    // The register slices' data: out_data of u_stage_a .. u_stage_d, which is the register
    // data_q at STAGES = 4 (Verilator puts no toggle points on the generate block's regs).
    if (h.find("u_stage_") != std::string::npos && o.rfind("out_data", 0) == 0) {
      ++t.reg_bits;
      t.reg_total += count;
    }
  }
  return t;
}

std::map<std::string, double> read_area(const std::string& path) {
  std::ifstream f(path);
  std::map<std::string, double> ge;
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    std::vector<std::string> cols;
    std::stringstream ss(line);
    std::string c;
    while (std::getline(ss, c, ',')) cols.push_back(c);
    if (cols.size() >= 7) ge[cols[0]] = std::strtod(cols[6].c_str(), nullptr);
  }
  return ge;
}

struct Driver {
  VerilatedContext context;
  Vmx_dot_unit_cov top{&context, "mx_dot_unit"};
  Driver() {
    // One counter set per instance (by default Verilator merges the 64 decoders' counters into
    // one module's, which keeps the toggle sum but not the number of watched bits).
    context.coveragep()->forcePerInstance(true);
    top.out_ready = 1;
    top.in_valid = 0;
    top.rst_n = 0;
    for (int i = 0; i < 2; ++i) clock();
    top.rst_n = 1;
  }
  void clock() {
    top.clk = 0;
    top.eval();
    top.clk = 1;
    top.eval();
  }
  void issue(const BlockStep& s) {
    top.clk = 0;
    top.in_valid = 1;
    top.fmt_a = uint8_t(s.fmt_a);
    top.fmt_b = uint8_t(s.fmt_b);
    top.scale_a = s.scale_a;
    top.scale_b = s.scale_b;
    for (int w = 0; w < 8; ++w) {
      uint32_t a, b;
      std::memcpy(&a, s.codes_a.data() + 4 * w, 4);
      std::memcpy(&b, s.codes_b.data() + 4 * w, 4);
      top.codes_a[w] = a;
      top.codes_b[w] = b;
    }
    top.acc_in = s.acc_in;
    top.tag_in = s.tag;
    top.eval();
    top.clk = 1;
    top.eval();
  }
};

// Representative blocks: Gaussian data in chains of 64 blocks (acc_in = running golden sum).
std::vector<BlockStep> representative(MxFormat fw, MxFormat fa, size_t n, uint64_t seed) {
  StepGenerator gen(fw, fa, seed);
  std::vector<BlockStep> v(n);
  uint32_t acc = 0x80000000u;
  for (size_t i = 0; i < n; ++i) {
    if (i % 64 == 0) acc = 0x80000000u;
    v[i] = gen.next(Dist::kGaussian);
    v[i].acc_in = acc;
    v[i].tag = uint16_t(i);
    acc = golden_step(v[i]);
  }
  return v;
}

int run(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: rtl_activity AREA_CSV OUT_CSV [BLOCKS_PER_PAIR]\n");
    return 2;
  }
  const std::string out_path = argv[2];
  const size_t blocks = argc == 4 ? std::strtoull(argv[3], nullptr, 10) : 20000;
  const std::map<std::string, double> ge = read_area(argv[1]);
  for (const char* need : {"all", "E4M3", "E5M2", "E3M2", "E2M3", "E2M1", "INT8"}) {
    if (!ge.count(need)) {
      std::fprintf(stderr, "rtl_activity: %s has no row '%s'\n", argv[1], need);
      return 1;
    }
  }
  const std::string cov_path = out_path + ".coverage.tmp";
  struct Row {
    MxFormat w, a;
    Toggles t;
  };
  std::vector<Row> rows;
  Driver d;
  for (MxFormat w : kAllFormats) {
    for (MxFormat a : kAllFormats) {
      const std::vector<BlockStep> warm = representative(w, a, 64, 99);
      const std::vector<BlockStep> steps = representative(w, a, blocks, 4242);
      for (const BlockStep& s : warm) d.issue(s);
      d.context.coveragep()->zero();
      for (const BlockStep& s : steps) d.issue(s);
      d.context.coveragep()->write(cov_path.c_str());
      rows.push_back({w, a, read_coverage(cov_path)});
      std::fprintf(stderr, "rtl_activity: %s x %s: %.0f toggles per block\n", format_name(w),
                   format_name(a), double(rows.back().t.total) / double(blocks));
    }
  }
  std::remove(cov_path.c_str());
  d.top.final();
  const double ge_all = ge.at("all");
  auto activity = [&](const Toggles& t) {
    return double(t.total) / double(blocks) / double(t.bits);
  };
  double ref = 0;
  for (const Row& r : rows)
    if (r.w == MxFormat::E4M3 && r.a == MxFormat::E4M3) ref = activity(r.t) * ge_all;
  std::string csv =
      "weight,activation,blocks,toggle_bits,toggles_per_block,reg_toggles_per_block,"
      "activity,ge_multi,ge_single_weight,ge_single_activation,energy_rel\n";
  for (const Row& r : rows) {
    const double act = activity(r.t);
    char line[512];
    std::snprintf(line, sizeof line, "%s,%s,%zu,%llu,%.1f,%.1f,%.6f,%.0f,%.0f,%.0f,%.4f\n",
                  format_name(r.w), format_name(r.a), blocks, (unsigned long long)r.t.bits,
                  double(r.t.total) / double(blocks), double(r.t.reg_total) / double(blocks), act,
                  ge_all, ge.at(format_name(r.w)), ge.at(format_name(r.a)), act * ge_all / ref);
    csv += line;
  }
  try {
    dmx::write_file_atomic(out_path, csv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "rtl_activity: %s\n", e.what());
    return 1;
  }
  std::fprintf(stderr, "rtl_activity: wrote %s\n", out_path.c_str());
  return 0;
}

}  // namespace
}  // namespace dmx::rtl::test

int main(int argc, char** argv) { return dmx::rtl::test::run(argc, argv); }
