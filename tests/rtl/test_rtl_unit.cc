// Verilated mx_dot_unit against golden: every output bit compared with acc_in + dot_block(...).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "mx_formats_vh.h"
#include "rtl_test_util.h"

namespace dmx::rtl::test {
namespace {

using Pair = std::pair<MxFormat, MxFormat>;

std::vector<Pair> all_pairs() {
  std::vector<Pair> v;
  for (MxFormat a : kAllFormats)
    for (MxFormat b : kAllFormats) v.emplace_back(a, b);
  return v;
}

std::string pair_name(const testing::TestParamInfo<Pair>& info) {
  return std::string(format_name(info.param.first)) + "_x_" + format_name(info.param.second);
}

uint64_t base_seed() { return env_u64("DMX_RTL_SEED", 20240601); }

void expect_clean(const StreamChecker& c, uint64_t seed, uint64_t expected_steps) {
  for (const std::string& f : c.failures()) ADD_FAILURE() << "seed " << seed << ": " << f;
  EXPECT_EQ(c.mismatches(), 0u) << "seed " << seed;
  EXPECT_EQ(c.steps_checked(), expected_steps) << "seed " << seed;
}

// ---- Format constants --------------------------------------------------------------------------

TEST(FormatsVh, MatchesGolden) {
  std::ifstream f(DMX_RTL_DIR "/mx_formats.vh", std::ios::binary);
  ASSERT_TRUE(f) << "cannot open " DMX_RTL_DIR "/mx_formats.vh";
  std::stringstream text;
  text << f.rdbuf();
  EXPECT_EQ(text.str(), render_mx_formats_vh())
      << "rtl/mx_formats.vh is stale: regenerate it with dmx-rtl-gen-formats rtl/mx_formats.vh";
}

// ---- Pipeline behaviour ------------------------------------------------------------------------

TEST(Pipeline, LatencyIsStages) {
  RtlUnit unit;
  BlockStep s;
  s.codes_a.fill(0x38);  // E4M3 1.0
  s.codes_b.fill(0x38);
  s.tag = 77;
  int seen_at = -1;
  for (int c = 0; c < 20 && seen_at < 0; ++c) {
    const CycleResult r = unit.cycle(c == 0 ? &s : nullptr, true);
    if (c == 0) ASSERT_TRUE(r.accepted);
    if (r.out_valid) {
      seen_at = c;
      EXPECT_EQ(r.tag_out, 77);
      EXPECT_EQ(r.acc_out, fp32_bits(32.0f));
    }
  }
  // Accepted at the edge ending cycle 0; visible in cycle STAGES.
  EXPECT_EQ(seen_at, unit_stages());
}

TEST(Pipeline, FullRateOneBlockPerCycle) {
  const uint64_t seed = base_seed() + 1;
  RtlUnit unit;
  StepGenerator gen(MxFormat::E4M3, MxFormat::E2M1, seed);
  const uint64_t n = 20000;
  uint64_t issued = 0;
  StreamChecker checker(unit, seed, 1.0, 1.0);
  checker.run([&](BlockStep& s) {
    if (issued == n) return false;
    s = gen.next(Dist(issued++ % 4));
    return true;
  });
  expect_clean(checker, seed, n);
  // n blocks at one per cycle, then STAGES cycles to drain the last one.
  EXPECT_EQ(checker.cycles(), n + uint64_t(unit_stages()));
  std::printf("[ rtl ] full rate: %llu blocks in %llu cycles (pipeline depth %d)\n",
              (unsigned long long)n, (unsigned long long)checker.cycles(), unit_stages());
}

struct BackPressureCase {
  double p_ready, p_valid;
};

class BackPressure : public testing::TestWithParam<BackPressureCase> {};

// Random output stalls and input gaps, with the format pair switching on every block: nothing may
// be lost, duplicated, reordered or changed while stalled.
TEST_P(BackPressure, NothingLostOrDuplicated) {
  const uint64_t seed =
      base_seed() + 2 + uint64_t(GetParam().p_ready * 100) * 7 + uint64_t(GetParam().p_valid * 10);
  std::vector<StepGenerator> gens;
  for (const Pair& p : all_pairs()) gens.emplace_back(p.first, p.second, seed + gens.size());
  std::mt19937_64 pick(seed);
  RtlUnit unit;
  StreamChecker checker(unit, seed, GetParam().p_ready, GetParam().p_valid);
  const uint64_t n = 20000;
  uint64_t issued = 0;
  checker.run([&](BlockStep& s) {
    if (issued == n) return false;
    s = gens[pick() % gens.size()].next(Dist(issued++ % 4));
    return true;
  });
  expect_clean(checker, seed, n);
  // Throughput is bounded by the slower side: at least the product of the rates is reached.
  const double rate = double(n) / double(checker.cycles());
  EXPECT_GT(rate, 0.9 * std::min(GetParam().p_ready, GetParam().p_valid) *
                      std::max(GetParam().p_ready, GetParam().p_valid))
      << "seed " << seed;
}

INSTANTIATE_TEST_SUITE_P(Rtl, BackPressure,
                         testing::Values(BackPressureCase{0.1, 1.0}, BackPressureCase{0.5, 1.0},
                                         BackPressureCase{0.9, 0.5}, BackPressureCase{0.5, 0.5},
                                         BackPressureCase{1.0, 0.3}),
                         [](const testing::TestParamInfo<BackPressureCase>& i) {
                           return "ready" + std::to_string(int(i.param.p_ready * 100)) + "_valid" +
                                  std::to_string(int(i.param.p_valid * 100));
                         });

TEST(Pipeline, UnsupportedFormatSelectGivesNaN) {
  RtlUnit unit;
  for (uint8_t raw : {6, 7}) {
    BlockStep s;
    s.raw_fmt_a = raw;
    s.raw_fmt_b = 0;
    s.acc_in = fp32_bits(1.0f);
    uint32_t out = 0;
    for (int c = 0; c < 10; ++c) {
      const CycleResult r = unit.cycle(c == 0 ? &s : nullptr, true);
      if (r.produced) out = r.acc_out;
    }
    EXPECT_EQ(out, 0x7FC00000u) << "select " << int(raw);
  }
}

// The failing-case waveform: DMX_RTL_VCD names the file a mismatch replays into.
TEST(Waveform, FailingCaseReplayWritesVcd) {
  const std::string path = testing::TempDir() + "rtl_replay_test.vcd";
  std::remove(path.c_str());
  const char* old = std::getenv("DMX_RTL_VCD");
  const std::string saved = old ? old : "";
  setenv("DMX_RTL_VCD", path.c_str(), 1);
  BlockStep s;
  s.codes_a.fill(0x38);
  s.codes_b.fill(0x38);
  const std::string note = replay_into_waveform(s);
  if (old)
    setenv("DMX_RTL_VCD", saved.c_str(), 1);
  else
    unsetenv("DMX_RTL_VCD");
  EXPECT_NE(note.find(path), std::string::npos) << note;
  std::ifstream f(path);
  ASSERT_TRUE(f) << "no waveform at " << path;
  std::stringstream text;
  text << f.rdbuf();
  EXPECT_NE(text.str().find("$enddefinitions"), std::string::npos);
  EXPECT_NE(text.str().find("acc_out"), std::string::npos);
  std::remove(path.c_str());
}

// ---- Random blocks, every format pair ----------------------------------------------------------

class RandomBlocks : public testing::TestWithParam<Pair> {};

TEST_P(RandomBlocks, MatchGolden) {
  const auto [fa, fb] = GetParam();
  const uint64_t seed = base_seed() + 1000 + 16 * uint64_t(fa) + uint64_t(fb);
  const uint64_t n = env_u64("DMX_RTL_STEPS", 20000);
  StepGenerator gen(fa, fb, seed);
  RtlUnit unit;
  StreamChecker checker(unit, seed);
  uint64_t issued = 0;
  const uint64_t progress_every = n >= 10000000 ? n / 10 : 0;
  checker.run([&](BlockStep& s) {
    if (issued == n) return false;
    s = gen.next(Dist(issued % 4));
    ++issued;
    if (progress_every && issued % progress_every == 0)
      std::printf("[ rtl ] %s x %s: %llu / %llu steps\n", format_name(fa), format_name(fb),
                  (unsigned long long)issued, (unsigned long long)n),
          std::fflush(stdout);
    return true;
  });
  expect_clean(checker, seed, n);
}

INSTANTIATE_TEST_SUITE_P(AllPairs, RandomBlocks, testing::ValuesIn(all_pairs()), pair_name);

// ---- Accumulation chains: the unit's own output fed back as the next acc_in --------------------

class Chains : public testing::TestWithParam<Pair> {};

TEST_P(Chains, MatchDotBlocked) {
  const auto [fa, fb] = GetParam();
  const uint64_t seed = base_seed() + 2000 + 16 * uint64_t(fa) + uint64_t(fb);
  constexpr int kChains = 8, kBlocks = 64;
  StepGenerator gen(fa, fb, seed);
  struct Chain {
    std::vector<uint8_t> sa, sb, ca, cb;
    uint32_t acc = 0x80000000u;  // -0, dot_blocked's default
    int next = 0;
    BlockStep in_flight;
  };
  std::vector<Chain> chains(kChains);
  for (int c = 0; c < kChains; ++c) {
    // Chains 0-3 Gaussian, 4-5 random bits at moderate scales, 6-7 tie-heavy.
    const Dist d = c < 4 ? Dist::kGaussian : c < 6 ? Dist::kRandomBits : Dist::kTieHeavy;
    for (int j = 0; j < kBlocks; ++j) {
      BlockStep s = gen.next(d);
      if (d == Dist::kRandomBits) {
        s.scale_a = uint8_t(117 + gen.rng()() % 21);
        s.scale_b = uint8_t(117 + gen.rng()() % 21);
      }
      chains[c].sa.push_back(s.scale_a);
      chains[c].sb.push_back(s.scale_b);
      chains[c].ca.insert(chains[c].ca.end(), s.codes_a.begin(), s.codes_a.end());
      chains[c].cb.insert(chains[c].cb.end(), s.codes_b.begin(), s.codes_b.end());
    }
  }
  std::deque<int> ready;
  for (int c = 0; c < kChains; ++c) ready.push_back(c);
  RtlUnit unit;
  int done = 0, mismatches = 0;
  uint64_t cycles = 0;
  BlockStep pending;
  while (done < kChains && cycles < 100000 && mismatches < 5) {
    const BlockStep* drive = nullptr;
    if (!ready.empty()) {
      Chain& ch = chains[ready.front()];
      const int j = ch.next;
      pending = BlockStep{};
      pending.fmt_a = fa;
      pending.fmt_b = fb;
      pending.scale_a = ch.sa[j];
      pending.scale_b = ch.sb[j];
      std::copy_n(ch.ca.begin() + j * kBlockSize, kBlockSize, pending.codes_a.begin());
      std::copy_n(ch.cb.begin() + j * kBlockSize, kBlockSize, pending.codes_b.begin());
      pending.acc_in = ch.acc;
      pending.tag = uint16_t(ready.front());
      drive = &pending;
    }
    const CycleResult r = unit.cycle(drive, true);
    ++cycles;
    if (r.produced) {
      ASSERT_LT(r.tag_out, kChains);
      Chain& ch = chains[r.tag_out];
      const uint32_t expected = golden_step(ch.in_flight);
      if (!same_fp32(r.acc_out, expected)) {
        ++mismatches;
        ADD_FAILURE() << "seed " << seed << " chain " << r.tag_out << " block " << ch.next
                      << ": acc_out 0x" << std::hex << r.acc_out << ", golden 0x" << expected
                      << "\n  step: " << describe(ch.in_flight) << "\n  "
                      << replay_into_waveform(ch.in_flight);
      }
      ch.acc = r.acc_out;  // the unit's own result is the next step's accumulator
      if (++ch.next < kBlocks)
        ready.push_back(r.tag_out);
      else
        ++done;
    }
    if (r.accepted) {
      chains[ready.front()].in_flight = pending;
      ready.pop_front();
    }
  }
  ASSERT_EQ(done, kChains) << "seed " << seed;
  for (int c = 0; c < kChains; ++c) {
    const MxVector a{fa, chains[c].sa.data(), chains[c].ca.data()};
    const MxVector b{fb, chains[c].sb.data(), chains[c].cb.data()};
    const float want = dot_blocked(a, b, size_t(kBlocks) * kBlockSize);
    EXPECT_TRUE(same_fp32(chains[c].acc, fp32_bits(want)))
        << "seed " << seed << " chain " << c << ": unit 0x" << std::hex << chains[c].acc
        << ", dot_blocked 0x" << fp32_bits(want);
  }
  // Eight independent chains keep the pipeline busy: close to one block per cycle.
  EXPECT_LE(cycles, uint64_t(kChains * kBlocks + 4 * unit_stages() + kBlocks * 2));
}

INSTANTIATE_TEST_SUITE_P(AllPairs, Chains, testing::ValuesIn(all_pairs()), pair_name);

// ---- Every element-code pair through the datapath ----------------------------------------------

class CodePairs : public testing::TestWithParam<Pair> {};

// Each (code_a, code_b) once alone in one lane (the others +0 x +0), then in all 32 lanes.
TEST_P(CodePairs, SingleLaneThenAllLanes) {
  const auto [fa, fb] = GetParam();
  const uint64_t seed = base_seed() + 3000 + 16 * uint64_t(fa) + uint64_t(fb);
  const uint32_t na = 1u << format_info(fa).bits, nb = 1u << format_info(fb).bits;
  static const uint8_t kScalePairs[4][2] = {{127, 127}, {120, 131}, {3, 20}, {230, 240}};
  static const uint32_t kAccs[4] = {0x80000000u, 0x00000000u, 0x3F800000u, 0xC0400000u};
  RtlUnit unit;
  StreamChecker checker(unit, seed);
  uint64_t k = 0;
  checker.run([&](BlockStep& s) {
    if (k == 2ull * na * nb) return false;
    const bool all_lanes = k >= uint64_t(na) * nb;
    const uint64_t idx = k % (uint64_t(na) * nb);
    const uint8_t ca = uint8_t(idx / nb), cb = uint8_t(idx % nb);
    s = BlockStep{};
    s.fmt_a = fa;
    s.fmt_b = fb;
    s.codes_a.fill(0);
    s.codes_b.fill(0);
    if (all_lanes) {
      s.codes_a.fill(ca);
      s.codes_b.fill(cb);
      s.scale_a = kScalePairs[(ca ^ cb) & 3][0];
      s.scale_b = kScalePairs[(ca ^ cb) & 3][1];
      s.acc_in = kAccs[(ca + cb) & 3];
    } else {
      const int lane = int((ca * 7u + cb) % kBlockSize);
      s.codes_a[lane] = ca;
      s.codes_b[lane] = cb;
      s.scale_a = uint8_t(123 + (ca + 3u * cb) % 9);
      s.scale_b = 127;
      s.acc_in = 0x80000000u;  // -0: acc_out is the block result itself
    }
    ++k;
    return true;
  });
  expect_clean(checker, seed, 2ull * na * nb);
}

INSTANTIATE_TEST_SUITE_P(AllPairs, CodePairs, testing::ValuesIn(all_pairs()), pair_name);

// ---- The per-pair campaign on the fast testbench ----------------------------------------------
//
// DMX_RTL_CAMPAIGN_STEPS random block steps (default 10000; the `long` ctest entries run 10M),
// drawn in turn from Gaussian data quantized by golden, uniform random codes and scales, tie-heavy
// powers of two, extreme and NaN scales, and cancellation-heavy blocks; then the exhaustive
// element code-pair sweep: every (code_a, code_b) in every one of the 32 lanes (the others 0),
// under a rotation of scale pairs (NaN and both ends of E8M0 included) and accumulators. Generated
// in batches, run through FastUnit, checked against golden per batch.

class PairCampaign : public testing::TestWithParam<Pair> {};

struct CampaignResult {
  uint64_t steps = 0, mismatches = 0;
  std::vector<std::string> failures;
};

void check_batch(FastUnit& unit, const std::vector<BlockStep>& steps, uint64_t first_index,
                 CampaignResult& res) {
  std::vector<uint32_t> out(steps.size()), want(steps.size());
  const std::string err = unit.run(steps.data(), steps.size(), out.data());
  if (!err.empty()) {
    ++res.mismatches;
    res.failures.push_back("protocol: " + err);
    return;
  }
  golden_steps(steps.data(), steps.size(), want.data());
  for (size_t i = 0; i < steps.size(); ++i) {
    if (same_fp32(out[i], want[i])) continue;
    if (++res.mismatches > 5) continue;
    char buf[128];
    std::snprintf(buf, sizeof buf, "step %llu: acc_out 0x%08x, golden 0x%08x",
                  (unsigned long long)(first_index + i), out[i], want[i]);
    res.failures.push_back(std::string(buf) + "\n  vector: " + describe(steps[i]) + "\n  " +
                           (res.failures.empty() ? replay_into_waveform(steps[i]) : ""));
  }
  res.steps += steps.size();
}

TEST_P(PairCampaign, RandomAndCodeSweep) {
  const auto [fa, fb] = GetParam();
  const uint64_t seed = base_seed() + 5000 + 16 * uint64_t(fa) + uint64_t(fb);
  const uint64_t n = env_u64("DMX_RTL_CAMPAIGN_STEPS", 10000);
  const std::string name = std::string(format_name(fa)) + "_x_" + format_name(fb);
  std::printf("[ campaign ] %s: seed %llu, %llu random blocks (%d distributions in turn)\n",
              name.c_str(), (unsigned long long)seed, (unsigned long long)n, kNumDists);
  std::fflush(stdout);
  constexpr size_t kBatch = 4096;
  // Wall times are printed for the campaign note (information only, nothing is asserted on them).
  const auto t0 = std::chrono::steady_clock::now();
  StepGenerator gen(fa, fb, seed);
  FastUnit unit;
  CampaignResult res;
  std::vector<BlockStep> batch;
  for (uint64_t done = 0; done < n && res.mismatches == 0;) {
    const size_t m = size_t(std::min<uint64_t>(kBatch, n - done));
    batch.resize(m);
    gen.fill(batch.data(), m, done);
    check_batch(unit, batch, done, res);
    done += m;
  }
  const auto t1 = std::chrono::steady_clock::now();
  // Exhaustive code-pair sweep: every pair in every lane.
  const uint32_t na = 1u << format_info(fa).bits, nb = 1u << format_info(fb).bits;
  static const uint8_t kScales[8][2] = {{127, 127}, {120, 131}, {3, 20},    {230, 240},
                                        {0, 0},     {254, 254}, {255, 127}, {1, 253}};
  static const uint32_t kAccs[4] = {0x80000000u, 0x00000000u, 0x3F800000u, 0xC0400000u};
  // DMX_RTL_CAMPAIGN_LANES lanes per code pair (default 1, rotating; `long`: all 32).
  const uint64_t lanes = std::clamp<uint64_t>(env_u64("DMX_RTL_CAMPAIGN_LANES", 1), 1, kBlockSize);
  uint64_t k = 0;
  const uint64_t sweep = uint64_t(na) * nb * lanes;
  while (k < sweep && res.mismatches == 0) {
    batch.clear();
    const uint64_t first = k;
    for (; k < sweep && batch.size() < kBatch; ++k) {
      const uint32_t idx = uint32_t(k / lanes);
      const int lane = int((k % lanes + idx * 7u) % kBlockSize);
      const uint8_t ca = uint8_t(idx / nb), cb = uint8_t(idx % nb);
      BlockStep s;
      s.fmt_a = fa;
      s.fmt_b = fb;
      s.codes_a[lane] = ca;
      s.codes_b[lane] = cb;
      const int r = int((k * 2654435761u) >> 7);  // a fixed scramble of the step index
      s.scale_a = kScales[r & 7][0];
      s.scale_b = kScales[r & 7][1];
      s.acc_in = kAccs[(r >> 3) & 3];
      batch.push_back(s);
    }
    check_batch(unit, batch, n + first, res);
  }
  const auto t2 = std::chrono::steady_clock::now();
  for (const std::string& f : res.failures) ADD_FAILURE() << "seed " << seed << ": " << f;
  if (res.mismatches) {
    ADD_FAILURE() << "replay (writes the first mismatch's waveform): DMX_RTL_VCD=/tmp/" << name
                  << ".vcd DMX_RTL_SEED=" << base_seed() << " DMX_RTL_CAMPAIGN_STEPS=" << n
                  << " DMX_RTL_CAMPAIGN_LANES=" << lanes
                  << " build/bin/rtl_tests --gtest_filter='Campaign/PairCampaign.*/" << name << "'";
  }
  EXPECT_EQ(res.mismatches, 0u) << "seed " << seed;
  EXPECT_EQ(res.steps, n + sweep) << "seed " << seed;
  std::printf(
      "[ campaign ] %s: seed %llu, %llu random + %llu code-pair sweep steps, %llu "
      "mismatches, %llu cycles, wall %.1f s random + %.1f s sweep\n",
      name.c_str(), (unsigned long long)seed, (unsigned long long)n, (unsigned long long)sweep,
      (unsigned long long)res.mismatches, (unsigned long long)unit.cycles(),
      std::chrono::duration<double>(t1 - t0).count(),
      std::chrono::duration<double>(t2 - t1).count());
}

INSTANTIATE_TEST_SUITE_P(Campaign, PairCampaign, testing::ValuesIn(all_pairs()), pair_name);

// ---- Hand-picked edge cases --------------------------------------------------------------------

class EdgeCases : public testing::TestWithParam<Pair> {};

TEST_P(EdgeCases, MatchGolden) {
  const auto [fa, fb] = GetParam();
  const FormatInfo &ia = format_info(fa), &ib = format_info(fb);
  const uint8_t max_a = encode_element(fa, ia.max_normal),
                max_b = encode_element(fb, ib.max_normal);
  const uint8_t neg_a = uint8_t(ia.is_int ? 0xFF : 1u << (ia.bits - 1));  // -1 quantum / -0
  const uint8_t sign_a = uint8_t(1u << (ia.bits - 1)), sign_b = uint8_t(1u << (ib.bits - 1));
  const uint8_t min_a = 1, min_b = 1;  // smallest positive magnitude
  std::vector<BlockStep> steps;
  auto make = [&](uint8_t ca, uint8_t cb, uint8_t sa, uint8_t sb, uint32_t acc) {
    BlockStep s;
    s.fmt_a = fa;
    s.fmt_b = fb;
    s.codes_a.fill(ca);
    s.codes_b.fill(cb);
    s.scale_a = sa;
    s.scale_b = sb;
    s.acc_in = acc;
    return s;
  };
  // Zeros and their signs.
  steps.push_back(make(0, 0, 127, 127, 0x80000000u));
  steps.push_back(make(neg_a, 0, 127, 127, 0x80000000u));  // every product -0 -> -0
  {
    BlockStep s = make(neg_a, 0, 127, 127, 0x80000000u);
    s.codes_a[7] = 0;  // one +0 product -> +0
    steps.push_back(s);
  }
  // Largest magnitudes, overflow to +-Inf, exact cancellation.
  for (uint8_t sc : {127, 200, 254}) {
    steps.push_back(make(max_a, max_b, sc, sc, 0x80000000u));
    steps.push_back(make(uint8_t(max_a | sign_a), max_b, sc, sc, 0x80000000u));
    BlockStep s = make(max_a, max_b, sc, 127, 0x00000000u);
    for (int i = 0; i < kBlockSize; i += 2) s.codes_a[i] |= sign_a;
    steps.push_back(s);  // sum exactly 0 -> +0
  }
  // Around the FP32 subnormal range: single min x min products at 2^-149, 2^-150 (tie to 0) and
  // three of them at 2^-150 (tie to 2^-148).
  for (int target : {-149, -150, -151, -126, -127}) {
    const int ssum = 254 + target - ia.quantum_exp - ib.quantum_exp;
    if (ssum < 0 || ssum > 508) continue;
    const uint8_t sa = uint8_t(std::min(ssum, 254)), sb = uint8_t(ssum - std::min(ssum, 254));
    for (int lanes : {1, 2, 3, 32}) {
      BlockStep s = make(0, 0, sa, sb, 0x80000000u);
      for (int i = 0; i < lanes; ++i) {
        s.codes_a[i] = min_a;
        s.codes_b[i] = min_b;
      }
      steps.push_back(s);
      s.acc_in = 0x00000001u;  // plus the smallest subnormal
      steps.push_back(s);
      s.codes_b[0] |= sign_b;
      steps.push_back(s);
    }
  }
  // Accumulator specials with a finite block.
  for (uint32_t acc : {0x7F800000u, 0xFF800000u, 0x7FC00000u, 0x7F7FFFFFu, 0xFF7FFFFFu}) {
    steps.push_back(make(max_a, max_b, 160, 160, acc));
    steps.push_back(make(max_a, uint8_t(max_b | sign_b), 160, 160, acc));
  }
  // NaN scales.
  steps.push_back(make(max_a, max_b, 0xFF, 127, 0x3F800000u));
  steps.push_back(make(0, 0, 127, 0xFF, 0x3F800000u));
  // Element NaN / Inf where the formats have them.
  auto with_lane = [&](BlockStep s, int lane, uint8_t ca, uint8_t cb) {
    s.codes_a[lane] = ca;
    s.codes_b[lane] = cb;
    return s;
  };
  const BlockStep ones = make(min_a, min_b, 127, 127, 0x80000000u);
  if (ia.has_nan) {
    const uint8_t nan_a = fa == MxFormat::E4M3 ? 0x7F : 0x7E;
    steps.push_back(with_lane(ones, 5, nan_a, min_b));
    steps.push_back(with_lane(ones, 5, uint8_t(nan_a | 0x80), 0));
  }
  if (ia.has_inf) {
    steps.push_back(with_lane(ones, 3, 0x7C, min_b));                             // +Inf
    steps.push_back(with_lane(ones, 3, 0xFC, min_b));                             // -Inf
    steps.push_back(with_lane(ones, 3, 0x7C, 0));                                 // Inf * 0 = NaN
    steps.push_back(with_lane(with_lane(ones, 3, 0x7C, min_b), 9, 0xFC, min_b));  // +Inf - Inf
    BlockStep s = with_lane(ones, 3, 0x7C, min_b);
    s.acc_in = 0xFF800000u;  // -Inf + +Inf
    steps.push_back(s);
    s.scale_a = 0;  // Inf times a tiny scale is still Inf
    steps.push_back(s);
  }
  if (ib.has_inf) steps.push_back(with_lane(ones, 31, max_a, 0xFC));
  if (ia.is_int) steps.push_back(make(0x80, max_b, 127, 127, 0x80000000u));  // -128

  RtlUnit unit;
  StreamChecker checker(unit, 0);
  size_t k = 0;
  checker.run([&](BlockStep& s) {
    if (k == steps.size()) return false;
    s = steps[k++];
    return true;
  });
  expect_clean(checker, 0, steps.size());
}

INSTANTIATE_TEST_SUITE_P(AllPairs, EdgeCases, testing::ValuesIn(all_pairs()), pair_name);

}  // namespace
}  // namespace dmx::rtl::test
