// Whole-workload costs: attention, lm_head, embeddings and the KV cache against hand-computed MACs
// and bytes; monotone costs over all 36 format pairs; roofline bounds; rows summing to totals;
// refused model families; topology files.
#include <dmx/sim.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

using namespace dmx;
using namespace dmx::sim;

namespace {

const std::string kSrc = DMX_SOURCE_DIR;

ArchConfig shipped(const char* name) { return load_arch(kSrc + "/sim/configs/" + name); }

// A small Llama-style decoder whose every term can be computed by hand.
ModelShape small_model() {
  return parse_model_json(R"({"model_type":"llama","hidden_size":64,"intermediate_size":96,)"
                          R"("num_hidden_layers":2,"num_attention_heads":4,)"
                          R"("num_key_value_heads":2,"head_dim":32,"vocab_size":100,)"
                          R"("tie_word_embeddings":true})",
                          "small.json");
}

const CostRow* find_row(const std::vector<CostRow>& rows, const std::string& name, int layer) {
  for (const auto& r : rows)
    if (r.op.name == name && r.op.layer == layer) return &r;
  return nullptr;
}

TEST(SimWorkload, PrefillAttentionLmHeadKvFollowHandComputedMacsAndBytes) {
  const ModelShape m = small_model();
  const int64_t B = 2, T = 96, c = 32, H = 4, Hkv = 2, g = 2, d = 32, V = 100, h = 64;
  FixedFormats fx;
  fx.attention = MxFormat::E4M3;
  fx.kv_cache = MxFormat::E2M1;
  fx.lm_head_weight = MxFormat::E5M2;
  fx.lm_head_act = MxFormat::E3M2;
  const Workload w = decoder_workload(m, {PhaseKind::Prefill, T, 0, B}, fx, c);
  const ArchConfig a = shipped("edge_npu.json");
  TableOptions o;
  o.weight_formats = o.act_formats = {MxFormat::E4M3};
  const auto rows = cost_workload(w, a, o);
  // Causal attention in 3 query chunks of 32: chunk i attends to 32 (i + 1) keys.
  int64_t qk_macs = 0, pv_macs = 0;
  for (int layer = 0; layer < 2; ++layer)
    for (const auto& r : rows) {
      if (r.op.layer != layer) continue;
      if (r.op.kind == OpKind::AttnScore) qk_macs += r.cost.macs;
      if (r.op.kind == OpKind::AttnValue) pv_macs += r.cost.macs;
    }
  // Per layer: sum over chunks of B * H * c * (keys) * d = B H d c^2 n(n+1)/2 with n = 3.
  const int64_t want = 2 * (B * H * d * c * c * 3 * 4 / 2);
  EXPECT_EQ(qk_macs, want);
  EXPECT_EQ(pv_macs, want);
  const CostRow* qk2 = find_row(rows, "qk[64:96]", 1);
  ASSERT_NE(qk2, nullptr);
  EXPECT_EQ(qk2->op.shape.m, g * c);
  EXPECT_EQ(qk2->op.shape.n, 96);
  EXPECT_EQ(qk2->op.shape.k, d);
  EXPECT_EQ(qk2->op.count, B * Hkv);
  EXPECT_EQ(qk2->wfmt, MxFormat::E2M1);
  EXPECT_EQ(qk2->afmt, MxFormat::E4M3);
  // Scores stay on chip: QK^T reads Q (g*c rows of one block, E4M3) and the K cache (96 rows of
  // one block, E2M1) from DRAM and writes nothing; the edge SRAM holds it in one tile.
  EXPECT_EQ(qk2->cost.dram_bytes, B * Hkv * (g * c * 33 + 96 * 17));
  const CostRow* pv2 = find_row(rows, "pv[64:96]", 1);
  ASSERT_NE(pv2, nullptr);
  // PV reads V^T (d rows of 96 keys = 3 blocks, E2M1) and writes the FP32 output (g*c x d).
  EXPECT_EQ(pv2->cost.dram_bytes, B * Hkv * (d * 3 * 17 + g * c * d * 4));
  // KV appends: B*T tokens x Hkv heads x (K and V) x one E2M1 block of d = 32.
  const CostRow* kv = find_row(rows, "kv_write", 0);
  ASSERT_NE(kv, nullptr);
  EXPECT_EQ(kv->cost.dram_bytes, B * T * Hkv * 2 * 17);
  // lm_head: the last position of each sequence, E5M2 weights x E3M2 activations.
  const CostRow* head = find_row(rows, "lm_head", -1);
  ASSERT_NE(head, nullptr);
  EXPECT_EQ(head->cost.macs, B * V * h);
  EXPECT_EQ(head->cost.dram_bytes, V * 2 * 33 + B * 2 * 25 + B * V * 4);
  // Embedding rows of B*T tokens from the tied table (lm_head's E5M2 weights).
  const CostRow* emb = find_row(rows, "embed_tokens", -1);
  ASSERT_NE(emb, nullptr);
  EXPECT_EQ(emb->cost.dram_bytes, B * T * 2 * 33);
  EXPECT_EQ(emb->cost.cycles, int64_t(std::ceil(double(B * T * 2 * 33) / 68.0)) + 120);
}

TEST(SimWorkload, DecodeAttentionSpansTheContextPerSequence) {
  const ModelShape m = small_model();
  const int64_t B = 3, L = 100, Hkv = 2, g = 2, d = 32;
  const Workload w = decoder_workload(m, {PhaseKind::Decode, 0, L, B});
  TableOptions o;
  o.weight_formats = o.act_formats = {MxFormat::E2M1};
  const auto rows = cost_workload(w, shipped("edge_npu.json"), o);
  const CostRow* qk = find_row(rows, "qk", 0);
  const CostRow* pv = find_row(rows, "pv", 0);
  ASSERT_TRUE(qk && pv);
  EXPECT_EQ(qk->cost.macs, B * Hkv * g * L * d);
  EXPECT_EQ(pv->cost.macs, B * Hkv * g * d * 128);  // K = 100 keys padded to 4 blocks
  // K cache: L rows of one E4M3 block; V^T: d rows of 4 blocks; queries g x 1 block in, the
  // output g x d FP32 out (PV).
  EXPECT_EQ(qk->cost.dram_bytes, B * Hkv * (g * 33 + L * 33));
  EXPECT_EQ(pv->cost.dram_bytes, B * Hkv * (d * 4 * 33 + g * d * 4));
  // Linears and lm_head run at m = batch.
  const CostRow* q = find_row(rows, "q_proj", 1);
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->op.shape.m, B);
  EXPECT_EQ(find_row(rows, "lm_head", -1)->op.shape.m, B);
  EXPECT_EQ(find_row(rows, "kv_write", 1)->cost.dram_bytes, B * Hkv * 2 * 33);
}

// Narrowing either operand never increases cycles, DRAM bytes, SRAM bytes or energy: all 36
// pairs x both shipped configs x every dataflow x shapes (the issue's edge case first).
TEST(SimWorkload, NarrowingAnOperandNeverCostsMore) {
  const GemmShape shapes[] = {
      {512, 8192, 2048}, {1, 8192, 2048}, {8, 2048, 8192}, {37, 200, 1000}, {256, 384, 64}};
  for (const char* cfg : {"edge_npu.json", "datacenter.json"})
    for (Dataflow df :
         {Dataflow::OUTPUT_STATIONARY, Dataflow::WEIGHT_STATIONARY, Dataflow::INPUT_STATIONARY}) {
      ArchConfig a = shipped(cfg);
      a.dataflow = df;
      TileCache cache;
      for (const GemmShape& s : shapes) {
        GemmCost c[kNumFormats][kNumFormats];
        for (MxFormat w : kAllFormats)
          for (MxFormat f : kAllFormats) c[int(w)][int(f)] = cost_gemm(a, s, w, f, &cache);
        auto check = [&](MxFormat w0, MxFormat a0, MxFormat w1, MxFormat a1) {
          const GemmCost& wide = c[int(w0)][int(a0)];
          const GemmCost& narrow = c[int(w1)][int(a1)];
          SCOPED_TRACE(::testing::Message()
                       << cfg << " " << dataflow_name(df) << " " << s.m << "x" << s.n << "x" << s.k
                       << ": " << format_name(w1) << "," << format_name(a1) << " vs "
                       << format_name(w0) << "," << format_name(a0));
          EXPECT_LE(narrow.cycles, wide.cycles);
          EXPECT_LE(narrow.dram_bytes, wide.dram_bytes);
          EXPECT_LE(narrow.sram_bytes(), wide.sram_bytes());
          EXPECT_LE(narrow.energy_pj, wide.energy_pj);
        };
        for (MxFormat w : kAllFormats)
          for (MxFormat f : kAllFormats)
            for (MxFormat n : kAllFormats) {
              if (format_bits(n) < format_bits(w)) check(w, f, n, f);
              if (format_bits(n) < format_bits(f)) check(w, f, w, n);
            }
      }
    }
}

// Every row respects its config's compute and DRAM lower bounds, and the rows of a pair sum to
// the whole-model totals.
TEST(SimWorkload, RowsRespectRooflineAndSumToTotals) {
  const ModelShape m = load_model_config(kSrc + "/tests/sim/data/smollm2-135m.json");
  for (const char* cfg : {"edge_npu.json", "datacenter.json"}) {
    const ArchConfig a = shipped(cfg);
    TileCache cache;
    std::vector<CostRow> rows;
    for (Phase ph : {Phase{PhaseKind::Prefill, 300, 0, 1}, Phase{PhaseKind::Decode, 0, 700, 4}}) {
      auto part = cost_workload(decoder_workload(m, ph), a, {}, &cache);
      rows.insert(rows.end(), part.begin(), part.end());
    }
    for (const auto& r : rows) {
      SCOPED_TRACE(::testing::Message()
                   << cfg << " " << r.phase.name() << " " << r.op.module << " " << r.op.name << " "
                   << format_name(r.wfmt) << "," << format_name(r.afmt));
      const double compute = double(r.cost.macs) / a.peak_macs_per_cycle(r.wfmt, r.afmt);
      const double memory = double(r.cost.dram_bytes) / a.dram_bytes_per_cycle();
      EXPECT_GE(double(r.cost.cycles), std::ceil(compute - 1e-9));
      EXPECT_GE(double(r.cost.cycles), memory - 1e-6);
    }
    const auto totals = cost_totals(rows);
    ASSERT_EQ(totals.size(), size_t(2 * 36));
    for (const auto& t : totals) {
      int64_t cycles = 0, dram = 0, sram = 0, macs = 0;
      double energy = 0;
      for (const auto& r : rows) {
        if (r.phase.kind != t.phase.kind) continue;
        if (r.op.assignable() && (r.wfmt != t.wfmt || r.afmt != t.afmt)) continue;
        cycles += r.cost.cycles;
        dram += r.cost.dram_bytes;
        sram += r.cost.sram_bytes();
        macs += r.cost.macs;
        energy += r.cost.energy_pj;
      }
      EXPECT_EQ(t.cost.cycles, cycles);
      EXPECT_EQ(t.cost.dram_bytes, dram);
      EXPECT_EQ(t.cost.sram_bytes(), sram);
      EXPECT_EQ(t.cost.macs, macs);
      EXPECT_NEAR(t.cost.energy_pj, energy, 1e-9 * energy);
      EXPECT_NEAR(t.cost.energy.total(), t.cost.energy_pj, 1e-9 * energy);
      EXPECT_NEAR(t.tokens_per_s, double(t.phase.token_count()) / t.cost.seconds,
                  1e-9 * t.tokens_per_s);
      EXPECT_NEAR(t.joules_per_token, t.cost.energy_pj * 1e-12 / double(t.phase.token_count()),
                  1e-12);
    }
  }
}

// Memory-bound decode of Llama-3.2-1B on the edge config: the whole-model time is the bytes of
// the weights, lm_head and KV cache over the DRAM bandwidth, within 5%.
TEST(SimWorkload, EdgeDecodeOfLlama1BIsItsBytesOverBandwidth) {
  const ModelShape m = load_model_config(kSrc + "/tests/sim/data/llama-3.2-1b.json");
  const ArchConfig a = shipped("edge_npu.json");
  TableOptions o;
  o.weight_formats = o.act_formats = {MxFormat::E4M3};
  const auto rows = cost_workload(decoder_workload(m, {PhaseKind::Decode, 0, 2048, 1}), a, o);
  const auto totals = cost_totals(rows);
  ASSERT_EQ(totals.size(), 1u);
  const int64_t linear = 16 * (2048 * 2048 * 2 + 2048 * 512 * 2 + 3 * 2048 * 8192);
  const int64_t head = 128256LL * 2048;
  const double weight_bytes = double(linear + head) * 33 / 32;
  const double kv_bytes = 16.0 * 2 * 8 * 2048 * 64 * 33 / 32;
  const double want = (weight_bytes + kv_bytes) / (a.dram_gbps * 1e9);
  EXPECT_NEAR(totals[0].cost.seconds, want, 0.05 * want)
      << "decode " << totals[0].cost.seconds << " s vs bytes/bandwidth " << want << " s";
}

TEST(SimWorkload, UnsupportedModelFamiliesAreRefused) {
  auto err = [](const std::string& js) {
    try {
      parse_model_json(js, "c.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string dense = R"("hidden_size":64,"intermediate_size":96,"num_hidden_layers":2,)"
                            R"("num_attention_heads":4,"vocab_size":100)";
  EXPECT_NE(err(R"({"model_type":"mixtral","num_local_experts":8,)" + dense + "}")
                .find("mixture-of-experts"),
            std::string::npos);
  EXPECT_NE(err(R"({"model_type":"qwen3_moe","num_experts":128,)" + dense + "}")
                .find("key 'num_experts'"),
            std::string::npos);
  EXPECT_NE(err(R"({"model_type":"gpt2","n_embd":768,"n_layer":12})").find("'gpt2'"),
            std::string::npos);
  EXPECT_NE(err(R"({"architectures":["GPT2LMHeadModel"],)" + dense + "}").find("GPT2LMHeadModel"),
            std::string::npos);
  EXPECT_NE(err("{" + dense + "}").find("cannot tell the model family"), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"llama","hidden_size":1e400})").find("c.json"), std::string::npos);
  EXPECT_NE(err(R"({"model_type":"llama","num_hidden_layers":1000000000,)"
                R"("hidden_size":64,"intermediate_size":96,"num_attention_heads":4,)"
                R"("vocab_size":100})")
                .find("key 'num_hidden_layers'"),
            std::string::npos);
  EXPECT_EQ(err(R"({"model_type":"qwen3",)" + dense + "}"), "no error");
}

TEST(SimWorkload, PhasesOutOfRangeAreRefused) {
  const ModelShape m = small_model();
  EXPECT_THROW(decoder_workload(m, {PhaseKind::Prefill, 0, 0, 1}), ConfigError);
  EXPECT_THROW(decoder_workload(m, {PhaseKind::Decode, 0, 0, 1}), ConfigError);
  EXPECT_THROW(decoder_workload(m, {PhaseKind::Decode, 0, 16, 0}), ConfigError);
  EXPECT_THROW(decoder_workload(m, {PhaseKind::Prefill, 1 << 20, 0, 4096}), ConfigError);
  EXPECT_THROW(
      cost_gemm(shipped("edge_npu.json"), {100000000, 1, 32}, MxFormat::E4M3, MxFormat::E4M3),
      ConfigError);
}

TEST(SimWorkload, TopologyFileCostsAnyNetwork) {
  const Workload w = topology_workload(
      "# a small CNN as GEMMs\nname,m,n,k,count,wfmt,afmt\nconv1,3136,64,147,1,,\n"
      "conv2,784,128,576,2,,\nfc,1,1000,2048,1,e4m3,int8\n",
      "net.csv");
  ASSERT_EQ(w.ops.size(), 3u);
  EXPECT_TRUE(w.ops[0].assignable());
  EXPECT_EQ(w.ops[1].count, 2);
  EXPECT_FALSE(w.ops[2].assignable());
  EXPECT_EQ(w.ops[2].afmt, MxFormat::INT8);
  TableOptions o;
  o.weight_formats = {MxFormat::E4M3, MxFormat::E2M1};
  o.act_formats = {MxFormat::E4M3};
  const ArchConfig a = shipped("edge_npu.json");
  const auto rows = cost_workload(w, a, o);
  ASSERT_EQ(rows.size(), 2u * 2 + 1);
  EXPECT_EQ(rows[2].cost.cycles,
            2 * cost_gemm(a, {784, 128, 576}, MxFormat::E4M3, MxFormat::E4M3).cycles);
  const auto totals = cost_totals(rows);
  ASSERT_EQ(totals.size(), 2u);
  EXPECT_EQ(totals[0].cost.cycles, rows[0].cost.cycles + rows[2].cost.cycles + rows[4].cost.cycles);
  // Minimal file: no count or format columns.
  EXPECT_EQ(topology_workload("name,m,n,k\na,1,2,3\n", "t.csv").ops.size(), 1u);
  auto err = [](const std::string& text) {
    try {
      topology_workload(text, "t.csv");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("").find("t.csv: empty topology"), std::string::npos);
  EXPECT_NE(err("m,n,k\n").find("t.csv:1: the header"), std::string::npos);
  EXPECT_NE(err("name,m,n,k\na,1,2\n").find("t.csv:2: 3 fields"), std::string::npos);
  EXPECT_NE(err("name,m,n,k\na,1,2,3.5\n").find("column 'k'"), std::string::npos);
  EXPECT_NE(err("name,m,n,k\na,0,2,3\n").find("column 'm'"), std::string::npos);
  EXPECT_NE(err("name,m,n,k\na,99999999999,2,3\n").find("column 'm'"), std::string::npos);
  EXPECT_NE(err("name,m,n,k,wfmt,afmt\na,1,2,3,e9m9,e4m3\n").find("unknown MX format"),
            std::string::npos);
  EXPECT_NE(err("name,m,n,k,wfmt,afmt\na,1,2,3,e4m3,\n").find("both"), std::string::npos);
  EXPECT_NE(err("name,m,n,k,bogus\na,1,2,3,4\n").find("unknown column 'bogus'"), std::string::npos);
  EXPECT_NE(err("name,m,n,k\n").find("no GEMM rows"), std::string::npos);
  EXPECT_NE(err(std::string("name,m,n,k\na,1,2,3\0x", 21)).find("NUL"), std::string::npos);
}

TEST(SimWorkload, InputFilesMustBeRegular) {
  EXPECT_THROW(load_arch("/dev/null"), ConfigError);    // a device, not a file
  EXPECT_THROW(load_arch(kSrc + "/sim"), ConfigError);  // a directory
  EXPECT_THROW(load_model_config("/nonexistent/config.json"), ConfigError);
}

}  // namespace

namespace {
// An assignment costs each Linear at its own pair: uniform assignments give the per-pair totals,
// a mixed one the sum of its rows; missing and unknown modules are refused.
TEST(SimWorkload, AssignmentsCostEachLinearAtItsPair) {
  const ModelShape m = small_model();
  const ArchConfig a = shipped("edge_npu.json");
  const Workload w = decoder_workload(m, {PhaseKind::Decode, 0, 64, 1});
  FormatAssignment uniform, mixed;
  for (const auto& op : w.ops)
    if (op.assignable()) {
      uniform[op.module] = {MxFormat::E2M1, MxFormat::E4M3};
      mixed[op.module] = op.layer == 0 ? std::pair{MxFormat::E4M3, MxFormat::E4M3}
                                       : std::pair{MxFormat::E2M1, MxFormat::E2M1};
    }
  TileCache cache;
  TableOptions all;
  const auto per_pair = cost_totals(cost_workload(w, a, all, &cache));
  TableOptions ou;
  ou.assignment = &uniform;
  const auto tu = cost_totals(cost_workload(w, a, ou, &cache), false);
  ASSERT_EQ(tu.size(), 1u);
  for (const auto& t : per_pair)
    if (t.wfmt == MxFormat::E2M1 && t.afmt == MxFormat::E4M3) {
      EXPECT_EQ(tu[0].cost.cycles, t.cost.cycles);
      EXPECT_EQ(tu[0].cost.dram_bytes, t.cost.dram_bytes);
    }
  TableOptions om;
  om.assignment = &mixed;
  const auto rows = cost_workload(w, a, om, &cache);
  int64_t cycles = 0;
  for (const auto& r : rows) {
    cycles += r.cost.cycles;
    if (r.op.assignable()) EXPECT_EQ(std::make_pair(r.wfmt, r.afmt), mixed.at(r.op.module));
  }
  EXPECT_EQ(cost_totals(rows, false)[0].cost.cycles, cycles);
  FormatAssignment missing = mixed;
  missing.erase(missing.begin());
  om.assignment = &missing;
  EXPECT_THROW(cost_workload(w, a, om), ConfigError);
  FormatAssignment extra = mixed;
  extra["model.layers.9.mlp.up_proj"] = {MxFormat::E2M1, MxFormat::E2M1};
  om.assignment = &extra;
  EXPECT_THROW(cost_workload(w, a, om), ConfigError);
  EXPECT_THROW(parse_assignment_json(R"({"layers":[{"layer":"x","weight_format":"e9m9",)"
                                     R"("act_format":"e4m3"}]})",
                                     "a.json"),
               ConfigError);
  EXPECT_EQ(parse_assignment_json(R"({"layers":[{"layer":"x","weight_format":"E2M1",)"
                                  R"("act_format":"e4m3","cost":1}]})",
                                  "a.json")
                .at("x"),
            std::make_pair(MxFormat::E2M1, MxFormat::E4M3));
}
}  // namespace
