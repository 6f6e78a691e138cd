// The SystemC accelerator: real outputs equal golden dot_blocked bit for bit; tile composition
// within 1% of full cycle simulation; cost-ratio sanity; configs, model shapes and tables.
#include <dmx/sim.h>
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

using namespace dmx;
using namespace dmx::sim;

namespace {

const std::string kSrc = DMX_SOURCE_DIR;

// A small array with small buffers, so that small GEMMs already have many tiles, edge tiles and
// several K tiles (partial sums through SRAM C).
ArchConfig tiny_arch(Dataflow df, double sram_kib = 4) {
  std::ostringstream js;
  js << R"({"name":"tiny","array":{"units":4,"lanes":4},"clock_ghz":1,)"
     << R"("sram_kib":{"a":)" << sram_kib << R"(,"b":)" << sram_kib << R"(,"c":)" << sram_kib
     << R"(},"dram":{"gbps":16,"latency_ns":20},"throughput":{"E2M1":2},"dataflow":")"
     << dataflow_name(df) << R"("})";
  return parse_arch_json(js.str(), "tiny.json");
}

MxMatrix random_matrix(MxFormat f, int64_t rows, int64_t k, std::mt19937& rng) {
  MxMatrix m{f, rows, k, std::vector<uint8_t>(size_t(rows * k)),
             std::vector<uint8_t>(size_t(rows * k / 32))};
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> v(static_cast<size_t>(k));
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& x : v) x = nd(rng) * std::exp2(float(int(rng() % 9) - 4));
    quantize_row(f, v.data(), size_t(k), &m.scales[size_t(r * k / 32)], &m.codes[size_t(r * k)]);
  }
  return m;
}

void expect_gemm_matches_golden(const ArchConfig& arch, MxFormat wf, MxFormat af, int64_t M,
                                int64_t N, int64_t K, unsigned seed) {
  std::mt19937 rng(seed);
  MxMatrix A = random_matrix(af, M, K, rng), B = random_matrix(wf, N, K, rng);
  GemmRun run = run_gemm(arch, A, B);
  ASSERT_EQ(run.c.size(), size_t(M * N));
  int bad = 0;
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) {
      MxVector va{af, &A.scales[size_t(i * K / 32)], &A.codes[size_t(i * K)]};
      MxVector vb{wf, &B.scales[size_t(j * K / 32)], &B.codes[size_t(j * K)]};
      const uint32_t want = fp32_bits(dot_blocked(va, vb, size_t(K)));
      const uint32_t got = fp32_bits(run.c[size_t(i * N + j)]);
      if (want != got && ++bad <= 3)
        ADD_FAILURE() << "C[" << i << "][" << j << "] = " << std::hex << got << " want " << want
                      << std::dec << " (seed " << seed << ", " << format_name(wf) << "/"
                      << format_name(af) << ", " << dataflow_name(arch.dataflow) << ")";
    }
  EXPECT_EQ(bad, 0);
  // The functional run has the timing of the timing-only simulation.
  EXPECT_EQ(run.cost.cycles, simulate_gemm(arch, {M, N, K}, wf, af).cycles);
}

TEST(SimAccel, GemmOutputsEqualGoldenDotBlocked) {
  const std::pair<MxFormat, MxFormat> pairs[] = {{MxFormat::E4M3, MxFormat::E4M3},
                                                 {MxFormat::E2M1, MxFormat::E4M3},
                                                 {MxFormat::E5M2, MxFormat::E5M2},
                                                 {MxFormat::E2M3, MxFormat::INT8},
                                                 {MxFormat::E3M2, MxFormat::E2M1}};
  unsigned seed = 100;
  for (Dataflow df :
       {Dataflow::OUTPUT_STATIONARY, Dataflow::WEIGHT_STATIONARY, Dataflow::INPUT_STATIONARY})
    for (auto [wf, af] : pairs) {
      // 4 KiB buffers: K = 256 splits into K tiles; 13 x 11 leaves edge tiles and waves.
      expect_gemm_matches_golden(tiny_arch(df), wf, af, 13, 11, 256, seed++);
      expect_gemm_matches_golden(tiny_arch(df, 64), wf, af, 5, 9, 96, seed++);
    }
}

TEST(SimAccel, GemmShapeMismatchIsAnError) {
  std::mt19937 rng(1);
  MxMatrix A = random_matrix(MxFormat::E4M3, 4, 64, rng),
           B = random_matrix(MxFormat::E4M3, 4, 96, rng);
  EXPECT_THROW(run_gemm(tiny_arch(Dataflow::OUTPUT_STATIONARY), A, B), ConfigError);
}

TEST(SimAccel, CompositionWithinOnePercentOfFullSimulation) {
  const GemmShape shapes[] = {{64, 96, 512}, {1, 200, 1024}, {37, 50, 320}, {128, 64, 96}};
  for (Dataflow df :
       {Dataflow::OUTPUT_STATIONARY, Dataflow::WEIGHT_STATIONARY, Dataflow::INPUT_STATIONARY})
    for (double kib : {4.0, 16.0})
      for (const auto& s : shapes)
        for (auto [wf, af] : {std::pair{MxFormat::E4M3, MxFormat::E4M3},
                              std::pair{MxFormat::E2M1, MxFormat::E2M3}}) {
          const ArchConfig a = tiny_arch(df, kib);
          const GemmCost full = simulate_gemm(a, s, wf, af);
          const GemmCost comp = cost_gemm(a, s, wf, af);
          SCOPED_TRACE(::testing::Message()
                       << dataflow_name(df) << " sram " << kib << " KiB, " << s.m << "x" << s.n
                       << "x" << s.k << " " << format_name(wf) << "/" << format_name(af)
                       << ", tiles " << full.tiles);
          EXPECT_NEAR(double(comp.cycles), double(full.cycles), 0.01 * double(full.cycles));
          EXPECT_EQ(comp.dram_bytes, full.dram_bytes);  // bytes compose exactly
          EXPECT_EQ(comp.sram_read_bytes, full.sram_read_bytes);
          EXPECT_EQ(comp.sram_write_bytes, full.sram_write_bytes);
          EXPECT_EQ(comp.macs, s.m * s.n * ((s.k + 31) / 32 * 32));
          EXPECT_GT(full.tiles, 0);
        }
}

TEST(SimAccel, DramBytesFollowPackedFormats) {
  // One tile, everything loaded once: A and B packed (elements + a scale byte per 32), C in FP32.
  ArchConfig a = tiny_arch(Dataflow::OUTPUT_STATIONARY, 1024);
  for (MxFormat f : kAllFormats) {
    const GemmCost c = simulate_gemm(a, {8, 8, 256}, f, f);
    const int64_t per_block = 32 * format_bits(f) / 8 + 1;
    EXPECT_EQ(c.dram_bytes, 8 * 8 * per_block * 2 + 8 * 8 * 4) << format_name(f);
  }
}

// Sum of the Linears' cycles of one same-format pair in a table.
double linear_cycles(const std::vector<CostRow>& rows, MxFormat f) {
  double s = 0;
  for (const auto& r : rows)
    if (r.op.kind == OpKind::Linear && r.wfmt == f && r.afmt == f) s += double(r.cost.cycles);
  return s;
}

TEST(SimAccel, DecodeRatioFollowsBytesOnMemoryBoundConfig) {
  const ArchConfig edge = load_arch(kSrc + "/sim/configs/edge_npu.json");
  const ModelShape m = load_model_config(kSrc + "/tests/sim/data/llama-3.2-1b.json");
  TableOptions o;
  o.weight_formats = o.act_formats = {MxFormat::E4M3, MxFormat::E2M1};
  const auto rows = cost_workload(decoder_workload(m, {PhaseKind::Decode, 0, 256, 1}), edge, o);
  const double ratio = linear_cycles(rows, MxFormat::E2M1) / linear_cycles(rows, MxFormat::E4M3);
  EXPECT_NEAR(ratio, 4.25 / 8.25, 0.02 * 4.25 / 8.25);
}

TEST(SimAccel, PrefillRatioFollowsComputeThroughputOnComputeBoundConfig) {
  ArchConfig a = load_arch(kSrc + "/sim/configs/edge_npu.json");
  a.dram_gbps = 1e5;  // compute-bound variant: DRAM no longer limits prefill
  a.dram_latency_ns = 10;
  const ModelShape m = load_model_config(kSrc + "/tests/sim/data/llama-3.2-1b.json");
  TableOptions o;
  o.weight_formats = o.act_formats = {MxFormat::E4M3, MxFormat::E2M1};
  const auto rows = cost_workload(decoder_workload(m, {PhaseKind::Prefill, 1024, 0, 1}), a, o);
  const double ratio = linear_cycles(rows, MxFormat::E2M1) / linear_cycles(rows, MxFormat::E4M3);
  const double want = double(a.pair_throughput(MxFormat::E4M3, MxFormat::E4M3)) /
                      a.pair_throughput(MxFormat::E2M1, MxFormat::E2M1);
  EXPECT_NEAR(ratio, want, 0.03 * want);
}

TEST(SimAccel, ModelConfigsOfLlamaQwen3SmolLM2) {
  struct Want {
    const char* file;
    int64_t layers, q_out, kv_out, ff, vocab;
    bool tied;
  } wants[] = {{"llama-3.2-1b.json", 16, 2048, 512, 8192, 128256, true},
               {"qwen3-0.6b.json", 28, 2048, 1024, 3072, 151936, true},  // explicit head_dim 128
               {"smollm2-135m.json", 30, 576, 192, 1536, 49152, true}};  // head_dim = 576 / 9
  for (const auto& w : wants) {
    const ModelShape m = load_model_config(kSrc + "/tests/sim/data/" + w.file);
    EXPECT_EQ(m.vocab_size, w.vocab) << w.file;
    EXPECT_EQ(m.tie_word_embeddings, w.tied) << w.file;
    const Workload wl = decoder_workload(m, {PhaseKind::Decode, 0, 64, 1});
    std::vector<WorkloadOp> g;
    for (const auto& op : wl.ops)
      if (op.kind == OpKind::Linear) g.push_back(op);
    ASSERT_EQ(int64_t(g.size()), 7 * w.layers) << w.file;
    EXPECT_EQ(g[0].shape.n, w.q_out) << w.file;
    EXPECT_EQ(g[1].shape.n, w.kv_out) << w.file;
    EXPECT_EQ(g[3].shape.k, w.q_out) << w.file;
    EXPECT_EQ(g[3].shape.n, m.hidden_size) << w.file;
    EXPECT_EQ(g[6].shape.k, w.ff) << w.file;
    EXPECT_EQ(g.back().module, "model.layers." + std::to_string(w.layers - 1) + ".mlp.down_proj");
  }
}

TEST(SimAccel, LlamaTableHasEveryRowAndConsistentColumns) {
  const ArchConfig a = load_arch(kSrc + "/sim/configs/datacenter.json");
  const ModelShape m = load_model_config(kSrc + "/tests/sim/data/llama-3.2-1b.json");
  const Workload w = decoder_workload(m, {PhaseKind::Prefill, 256, 0, 1}, {}, 128);
  const auto rows = cost_workload(w, a);
  // 112 Linears x 36 pairs, plus per layer 2 chunks x (qk, pv) and kv_write, plus embed and head.
  ASSERT_EQ(rows.size(), size_t(16 * 7 * 36 + 16 * 5 + 2));
  for (const auto& r : rows) {
    ASSERT_GT(r.cost.cycles, 0);
    EXPECT_DOUBLE_EQ(r.cost.seconds, double(r.cost.cycles) / (a.clock_ghz * 1e9));
    if (r.op.is_gemm()) {
      EXPECT_GT(r.cost.utilization, 0);
      EXPECT_LE(r.cost.utilization, 1.0);
      EXPECT_EQ(r.cost.macs,
                r.op.count * r.op.shape.m * r.op.shape.n * ((r.op.shape.k + 31) / 32 * 32));
    }
    const double e = double(r.cost.macs) * a.mac_pj[int(r.wfmt)][int(r.afmt)] +
                     double(r.cost.sram_read_bytes) * a.sram_read_pj_per_byte +
                     double(r.cost.sram_write_bytes) * a.sram_write_pj_per_byte +
                     double(r.cost.dram_bytes) * a.dram_pj_per_byte +
                     a.static_mw * 1e9 * r.cost.seconds;
    EXPECT_NEAR(r.cost.energy_pj, e, 1e-9 * e);
  }
  const std::string csv = cost_table_csv(rows);
  EXPECT_EQ(std::count(csv.begin(), csv.end(), '\n'), long(rows.size() + 1));
  EXPECT_EQ(csv.rfind("version,workload,phase,tokens,context,batch,layer,op,kind,module,m,n,k,", 0),
            0u);
}

TEST(SimAccel, ConfigErrorsNameFileAndKey) {
  auto err = [](const std::string& js) {
    try {
      parse_arch_json(js, "bad.json");
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err(R"({"dram":{"gbps":-5}})").find("bad.json: key 'dram.gbps'"), std::string::npos);
  EXPECT_NE(err(R"({"dram":{"gbps":-5}})").find("-5"), std::string::npos);
  EXPECT_NE(err(R"({"arrray":{}})").find("key 'arrray': unknown key"), std::string::npos);
  EXPECT_NE(err(R"({"array":{"units":0}})").find("key 'array.units'"), std::string::npos);
  EXPECT_NE(err(R"({"throughput":{"E9M9":1}})").find("unknown MX format"), std::string::npos);
  EXPECT_NE(err(R"({"dataflow":"diagonal"})").find("key 'dataflow'"), std::string::npos);
  // Physical quantities out of range (would overflow the cycle counts or never finish).
  EXPECT_NE(err(R"({"dram":{"gbps":1e-300}})").find("key 'dram.gbps'"), std::string::npos);
  EXPECT_NE(err(R"({"dram":{"latency_ns":1e300}})").find("key 'dram.latency_ns'"),
            std::string::npos);
  EXPECT_NE(err(R"({"sram_kib":{"a":0.001}})").find("key 'sram_kib.a'"), std::string::npos);
  EXPECT_NE(err(R"({"sram_kib":{"b":1e300}})").find("key 'sram_kib.b'"), std::string::npos);
  // A narrower pair may not be slower or cost more per MAC than a wider one.
  EXPECT_NE(err(R"({"throughput":{"E4M3":2}})").find("would issue fewer blocks"),
            std::string::npos);
  EXPECT_NE(err(R"({"energy_pj":{"mac_pair":{"E2M1,E4M3":5}}})").find("energy_pj.mac_pair"),
            std::string::npos);
  EXPECT_NE(err(R"({"static_mw":-1})").find("key 'static_mw'"), std::string::npos);
  EXPECT_NE(err("{").find("not valid JSON"), std::string::npos);
  // A number past double's range (found by dmx-fuzz-sim-arch: it escaped as a raw library error).
  EXPECT_NE(err(R"({"dram":{"gbps":33e333}})").find("bad.json: not valid JSON"), std::string::npos);
  EXPECT_THROW(parse_model_json(R"({"model_type":"llama","hidden_size":100,"intermediate_size":8,)"
                                R"("num_hidden_layers":1,"num_attention_heads":3,"vocab_size":10})",
                                "m.json"),
               ConfigError);  // shape mismatch: 100 is not a multiple of 3 and head_dim is absent
  EXPECT_THROW(parse_model_json(R"({"model_type":"llama","hidden_size":64})", "m.json"),
               ConfigError);
  // Sweeps reject keys the schema lacks.
  EXPECT_THROW(override_arch_key("{}", "base.json", "dram.bandwidth", "5"), ConfigError);
  EXPECT_NO_THROW(override_arch_key("{}", "base.json", "dram.gbps", "5"));
}

TEST(SimAccel, ShippedConfigsLoad) {
  for (const char* f : {"edge_npu.json", "datacenter.json"}) {
    const ArchConfig a = load_arch(kSrc + "/sim/configs/" + f);
    EXPECT_EQ(a.unit_stages, DMX_RTL_STAGES) << f;
    EXPECT_GT(a.peak_macs_per_cycle(MxFormat::E4M3, MxFormat::E4M3), 0);
  }
}

}  // namespace
