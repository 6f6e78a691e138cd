// quant/deploy at run time: the kernel backend (every quantized Linear == golden dot_blocked +
// bias, bit for bit), its perplexity against the fake-quant path on the shipped models, KV-cache
// decoding and generation, and the dmx-export / dmx-eval / dmx-generate command lines.
#include "deploy_test_util.h"

using namespace deploy_test;

// ---- Kernel backend: bit for bit against golden ------------------------------------------------
TEST(DeployKernelBackend, EveryQuantizedLinearEqualsGoldenDotBlocked) {
  at::set_num_threads(1);
  const uint64_t seed = 2024;
  SCOPED_TRACE("seed " + std::to_string(seed));
  const fs::path d = temp_dir("bitexact");
  const ModelConfig c = write_random_model(d / "src", llama_config(), seed);
  const FormatAssignment a = all_pairs_assignment(c);
  export_packed((d / "src").string(), a, (d / "out").string());
  const CausalLM m = build_model(load_packed((d / "out").string()), Backend::Kernels);
  const Checkpoint src((d / "src").string());
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  std::uniform_int_distribution<int> ex(-6, 6);
  size_t checked = 0;
  for (const auto& [name, f] : a) {
    SCOPED_TRACE(name + " W " + format_name(f.weight) + " A " + format_name(f.act));
    auto lin = std::dynamic_pointer_cast<KernelLinear>(m.linear(name));
    ASSERT_TRUE(lin);
    const GoldenWeight g = golden_weight(src.at(name + ".weight"), f.weight);
    std::vector<float> bias(g.out, 0.0f);
    const TensorView& bv = src.at(name + ".bias");
    for (size_t n = 0; n < g.out; ++n) {
      uint16_t b;
      std::memcpy(&b, bv.data + 2 * n, 2);
      bias[n] = bf16_to_fp32(b);
    }
    for (int64_t M : {1, 3, 17}) {  // GEMV, GEMM below and above a 4-row group multiple
      // Rows at different magnitudes (one row 2^e per row), some exact zeros.
      at::Tensor x = at::empty({M, static_cast<int64_t>(g.in)}, at::kFloat);
      float* px = x.data_ptr<float>();
      for (int64_t r = 0; r < M; ++r) {
        const float s = std::ldexp(1.0f, ex(rng));
        for (size_t k = 0; k < g.in; ++k) px[r * g.in + k] = (rng() % 11 == 0) ? 0.0f : s * nd(rng);
      }
      const at::Tensor y = lin->forward(x);
      ASSERT_EQ(y.scalar_type(), at::kFloat);
      ASSERT_EQ(y.sizes(), (at::IntArrayRef{M, static_cast<int64_t>(g.out)}));
      const float* py = y.data_ptr<float>();
      std::vector<float> row(g.kp);
      std::vector<uint8_t> as(g.kp / kBlockSize), ac(g.kp);
      for (int64_t r = 0; r < M; ++r) {
        std::fill(row.begin(), row.end(), 0.0f);
        std::memcpy(row.data(), px + r * g.in, g.in * 4);
        quantize_row(f.act, row.data(), g.kp, as.data(), ac.data());
        const MxVector av{f.act, as.data(), ac.data()};
        for (size_t n = 0; n < g.out; ++n) {
          const MxVector wv{f.weight, g.scales.data() + n * g.kp / kBlockSize,
                            g.codes.data() + n * g.kp};
          const float want = dot_blocked(av, wv, g.kp) + bias[n];
          ASSERT_EQ(fp32_bits(py[r * g.out + n]), fp32_bits(want))
              << "M " << M << " row " << r << " col " << n << ": " << py[r * g.out + n]
              << " vs golden " << want;
        }
      }
      ++checked;
    }
  }
  EXPECT_EQ(checked, 3 * a.size());
  fs::remove_all(d);
}

// Same for a model quantized at load time from the FP32 weights (dmx-eval --assignment --backend
// kernels): the same Linears as from the packed checkpoint, bit for bit.
TEST(DeployKernelBackend, LoadTimeQuantizationEqualsPackedCheckpoint) {
  at::set_num_threads(1);
  const fs::path d = temp_dir("loadtime");
  const ModelConfig c = write_random_model(d / "src", qwen3_config(), 9);
  const FormatAssignment a = all_pairs_assignment(c);
  std::ofstream(d / "a.json") << assignment_json(a).dump();
  export_packed((d / "src").string(), a, (d / "out").string());
  const CausalLM p = load_for_backend((d / "out").string(), "", Backend::Kernels);
  const CausalLM q =
      load_for_backend((d / "src").string(), (d / "a.json").string(), Backend::Kernels);
  at::Tensor ids = at::arange(13, at::kLong).unsqueeze(0) * 5 % c.vocab_size;
  at::NoGradGuard ng;
  EXPECT_TRUE(at::equal(p.forward(ids), q.forward(ids)));
  for (const std::string& n : decoder_linear_names(c)) {
    auto kp = std::dynamic_pointer_cast<KernelLinear>(p.linear(n));
    auto kq = std::dynamic_pointer_cast<KernelLinear>(q.linear(n));
    ASSERT_TRUE(kp && kq);
    EXPECT_EQ(kp->data().codes, kq->data().codes) << n;
    EXPECT_EQ(kp->data().scales, kq->data().scales) << n;
  }
  fs::remove_all(d);
}

// ---- Perplexity: kernel backend vs fake quantization on the shipped models ----------------------
// Wraps a kernel Linear and the fake-quant Linear of the same layer: returns the kernel's output
// and checks, at every call on the model's real activations, the rounding bound between them.
// Both sum the same exact products a_k w_k (+ bias) in FP32 in different orders, so each output
// differs from the exact sum by at most gamma(K+1) * (sum |a_k w_k| + |b|), and the two from each
// other by twice that.
class CheckedLinear : public Linear {
 public:
  CheckedLinear(std::shared_ptr<KernelLinear> k, LinearPtr f)
      : Linear(k->name(), k->weight, k->bias), k_(std::move(k)), f_(std::move(f)) {
    wq_t_ = mx_fake_quant(f_->weight, k_->data().formats.weight).to(at::kDouble).abs().t();
  }
  at::Tensor forward(const at::Tensor& x) override {
    const at::Tensor yk = k_->forward(x);
    const at::Tensor yf = f_->forward(x);
    const ModuleFormats& fm = k_->data().formats;
    const at::Tensor aq = mx_fake_quant(x, fm.act).to(at::kDouble).abs();
    at::Tensor s = at::matmul(aq, wq_t_);
    if (f_->bias.defined()) s = s + f_->bias.to(at::kDouble).abs();
    const double g = 2 * gamma_n(static_cast<double>(k_->in_features() + 1));
    const at::Tensor diff = (yk.to(at::kDouble) - yf.to(at::kDouble)).abs();
    const double ratio = (diff / (g * s + 1e-300)).max().item<double>();
    max_ratio = std::max(max_ratio, ratio);
    rel_sum += (diff / (s + 1e-300)).sum().item<double>();
    count += diff.numel();
    if (ratio > 1.0) ++violations;
    return yk;
  }
  static inline double max_ratio = 0, rel_sum = 0;
  static inline int64_t count = 0, violations = 0;

 private:
  std::shared_ptr<KernelLinear> k_;
  LinearPtr f_;
  at::Tensor wq_t_;  // |quantized weight|^T in FP64
};

// Tolerance on |mean NLL(kernels) - mean NLL(fake-quant)| in nats (derivation:
// quant/deploy/README.md, "Perplexity agreement").
constexpr double kNllTolerance = 1e-3;

class DeployPerplexity : public ::testing::TestWithParam<std::string> {};

// Per shipped model and assignment (all-MXFP4, all-MXFP8, the searched dmx 5.5-bit mix of
// reports/dmx): mean NLL over 8 windows of 256 tokens of wiki.test.raw on the kernel backend (from
// the exported checkpoint) and on the fake-quant path (the original model + assignment, as
// dmx-search evaluates), within kNllTolerance; every Linear call of the first 2 windows checked
// against its fake-quant twin with the rounding bound above; and, for the mix, the fake-quant
// model rebuilt from the packed checkpoint gives the original's NLL exactly.
TEST_P(DeployPerplexity, KernelBackendAgreesWithFakeQuant) {
  at::set_num_threads(1);
  const std::string model = GetParam();
  const fs::path d = temp_dir("ppl_" + model);
  PerplexityOptions opt;
  opt.seqlen = 256;
  opt.max_windows = 8;
  PerplexityOptions check_opt = opt;
  check_opt.max_windows = 2;
  const std::string mdir = kRepo + "/models/" + model;
  const ModelConfig c = load_config(mdir);
  const Tokenizer tok = Tokenizer::load(mdir);
  std::vector<int32_t> tokens = tok.encode(read_file(kRepo + "/data/wiki.test.raw"));
  tokens.resize(opt.seqlen * opt.max_windows);
  const std::string mix =
      kRepo + "/reports/dmx/" + model + "-bits-kd/runs/dmx-untied_5.5/assignment.json";
  std::map<std::string, double> fq_nll;
  for (const std::string which : {"mxfp4", "mxfp8", "mix"}) {
    SCOPED_TRACE(model + " " + which);
    const FormatAssignment a =
        which == "mxfp4"   ? uniform_assignment(c, MxFormat::E2M1, MxFormat::E2M1)
        : which == "mxfp8" ? uniform_assignment(c, MxFormat::E4M3, MxFormat::E4M3)
                           : load_assignment(mix, c);
    const std::string out = (d / which).string();
    export_packed(mdir, a, out);
    CausalLM orig = CausalLM::load(mdir);
    apply_fake_quant(orig, a);
    const double nll_fq = perplexity(orig, tokens, opt).mean_nll;
    const CausalLM fq = build_model(load_packed(out), Backend::FakeQuant);
    if (which == "mix") {
      EXPECT_EQ(perplexity(fq, tokens, opt).mean_nll, nll_fq);
    }
    CausalLM k = build_model(load_packed(out), Backend::Kernels);
    const double nll_k = perplexity(k, tokens, opt).mean_nll;
    // The same kernel Linears, each call checked against the fake-quant Linear.
    for (const std::string& n : k.linear_names())
      k.set_linear(n, std::make_shared<CheckedLinear>(
                          std::dynamic_pointer_cast<KernelLinear>(k.linear(n)), fq.linear(n)));
    CheckedLinear::max_ratio = CheckedLinear::rel_sum = 0;
    CheckedLinear::count = CheckedLinear::violations = 0;
    perplexity(k, tokens, check_opt);
    EXPECT_EQ(CheckedLinear::violations, 0) << "max |diff| / bound " << CheckedLinear::max_ratio;
    EXPECT_GT(CheckedLinear::count, 0);
    std::printf(
        "%s %-6s NLL fake-quant %.7f kernels %.7f |diff| %.2e nats; per-Linear max "
        "|diff|/bound %.4f, mean |diff|/sum|aw| %.2e\n",
        model.c_str(), which.c_str(), nll_fq, nll_k, std::fabs(nll_k - nll_fq),
        CheckedLinear::max_ratio,
        CheckedLinear::rel_sum / static_cast<double>(CheckedLinear::count));
    EXPECT_LE(std::fabs(nll_k - nll_fq), kNllTolerance);
    fq_nll[which] = nll_fq;
    fs::remove_all(out);
  }
  // The tolerance separates formats: all-MXFP4 and all-MXFP8 differ by more than 10x.
  EXPECT_GT(std::fabs(fq_nll["mxfp4"] - fq_nll["mxfp8"]), 10 * kNllTolerance);
  fs::remove_all(d);
}
INSTANTIATE_TEST_SUITE_P(ShippedModels, DeployPerplexity,
                         ::testing::Values("llama-tiny", "qwen3-tiny", "smollm2-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// ---- KV cache and generation -------------------------------------------------------------------
TEST(DeployGenerate, KvCacheLogitsMatchFullForward) {
  at::set_num_threads(1);
  for (const json& cj : {llama_config(), qwen3_config()}) {
    const ModelConfig c = parse_config(cj.dump(), "cfg");
    const CausalLM m = CausalLM::random(c, 17, 0.1);
    at::NoGradGuard ng;
    const at::Tensor ids = at::arange(12, at::kLong).unsqueeze(0) * 7 % c.vocab_size;
    const at::Tensor full = m.forward(ids);  // [1, 12, V]
    CausalLM::KVCache cache;
    // Prefill 5, then 1, then 4 at once, then 2 single steps.
    std::vector<at::Tensor> parts;
    int64_t p = 0;
    for (int64_t n : {5, 1, 4, 1, 1}) {
      parts.push_back(m.forward_cached(ids.slice(1, p, p + n), cache, false));
      p += n;
      EXPECT_EQ(cache.length, p);
    }
    const at::Tensor inc = at::cat(parts, 1);
    EXPECT_TRUE(at::allclose(inc, full, 1e-4, 1e-5)) << (inc - full).abs().max().item<double>();
    CausalLM::KVCache c2;
    const at::Tensor last = m.forward_cached(ids, c2, true);
    EXPECT_EQ(last.sizes(), (at::IntArrayRef{1, 1, c.vocab_size}));
    EXPECT_TRUE(at::allclose(last[0][0], full[0][11], 1e-4, 1e-5));
  }
}

TEST(DeployGenerate, GreedyIsDeterministicAndEqualsArgmaxOfFullForward) {
  at::set_num_threads(1);
  const fs::path d = temp_dir("gen");
  const std::string mdir = kRepo + "/models/llama-tiny";
  const std::string mix = kRepo + "/reports/dmx/llama-tiny-bits/runs/dmx_5.5/assignment.json";
  export_packed(mdir, load_assignment(mix, load_config(mdir)), (d / "p").string());
  const CausalLM m = load_for_backend((d / "p").string(), "", Backend::Kernels);
  const Tokenizer tok = Tokenizer::load((d / "p").string());
  const std::vector<int32_t> prompt = tok.encode("The history of the city begins");
  GenerateOptions g;
  g.max_new_tokens = 24;
  const GenerateResult r1 = generate(m, prompt, g);
  const GenerateResult r2 = generate(m, prompt, g);
  ASSERT_EQ(r1.tokens.size(), 24u);
  EXPECT_EQ(r1.tokens, r2.tokens);
  // Each greedy token is the argmax of a full (cache-free) forward over everything before it,
  // unless the top two logits are closer than the cache-vs-full difference can move them.
  std::vector<int32_t> seq = prompt;
  at::NoGradGuard ng;
  for (int32_t t : r1.tokens) {
    at::Tensor ids = at::empty({1, static_cast<int64_t>(seq.size())}, at::kLong);
    for (size_t i = 0; i < seq.size(); ++i) ids.data_ptr<int64_t>()[i] = seq[i];
    const at::Tensor z = m.forward(ids)[0][-1];
    const auto top = at::topk(z, 2);
    const int64_t best = std::get<1>(top)[0].item<int64_t>();
    const double gap = (std::get<0>(top)[0] - std::get<0>(top)[1]).item<double>();
    if (gap > 1e-3) {
      EXPECT_EQ(t, best) << "position " << seq.size();
    }
    seq.push_back(t);
  }
  // Sampling: the same seed gives the same tokens; the tokens stay in the vocabulary.
  g.temperature = 0.9;
  g.top_k = 20;
  g.top_p = 0.95;
  g.seed = 77;
  const GenerateResult s1 = generate(m, prompt, g), s2 = generate(m, prompt, g);
  EXPECT_EQ(s1.tokens, s2.tokens) << "seed 77";
  for (int32_t t : s1.tokens) EXPECT_LT(t, m.config().vocab_size);
  EXPECT_GT(r1.decode_tokens_per_s(), 0.0);
  EXPECT_GT(r1.prefill_tokens_per_s(), 0.0);
  fs::remove_all(d);
}

TEST(DeployGenerate, SamplingFollowsTheDistribution) {
  // pick_token against the softmax it should sample: 20000 draws, fixed seed, chi-square bound.
  const uint64_t seed = 123;
  at::Tensor z = at::tensor({2.0f, 1.0f, 0.5f, -1.0f, 0.0f, 1.5f});
  GenerateOptions g;
  g.temperature = 0.7;
  g.top_k = 4;  // keeps ids 0, 5, 1, 2
  std::mt19937_64 rng(seed);
  std::vector<int> counts(6, 0);
  const int n = 20000;
  for (int i = 0; i < n; ++i) ++counts[pick_token(z, g, rng)];
  EXPECT_EQ(counts[3] + counts[4], 0);
  const std::vector<int> kept = {0, 5, 1, 2};
  double zsum = 0;
  for (int i : kept) zsum += std::exp(z[i].item<double>() / g.temperature);
  double chi2 = 0;
  for (int i : kept) {
    const double e = n * std::exp(z[i].item<double>() / g.temperature) / zsum;
    chi2 += (counts[i] - e) * (counts[i] - e) / e;
  }
  EXPECT_LT(chi2, 16.27) << "seed " << seed;  // chi-square, 3 degrees of freedom, p = 0.001
  g.temperature = 0;
  EXPECT_EQ(pick_token(z, g, rng), 0);
  EXPECT_EQ(pick_token(at::tensor({1.0f, 3.0f, 3.0f}), g, rng), 1);  // lowest id on ties
}

// ---- Command lines -----------------------------------------------------------------------------
#if defined(DMX_EXPORT_BIN) && defined(DMX_EVAL_BIN) && defined(DMX_GENERATE_BIN)
namespace {
int run(const std::string& cmd) {
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}
}  // namespace

TEST(DeployCli, SearchExportGenerateAndErrors) {
  const fs::path d = temp_dir("cli");
  const std::string ex = DMX_EXPORT_BIN, ev = DMX_EVAL_BIN, gen = DMX_GENERATE_BIN;
  const std::string mdir = kRepo + "/models/qwen3-tiny";
  const std::string mix = kRepo + "/reports/dmx/qwen3-tiny-bits/runs/dmx_5.5/assignment.json";
  const std::string data = kRepo + "/data/wiki.test.raw";
  const std::string out = (d / "q").string();
  ASSERT_EQ(run(ex + " --model " + mdir + " --assignment " + mix + " --out " + out +
                " --quiet --threads 1"),
            0);
  ASSERT_TRUE(is_packed_checkpoint(out));
  // dmx-eval: the packed checkpoint on both backends and the original model + assignment.
  auto ppl = [&](const std::string& args, const std::string& tag) {
    const std::string js = (d / (tag + ".json")).string();
    EXPECT_EQ(run(ev + " " + args + " --data " + data +
                  " --seqlen 128 --max-windows 4 --threads 1 --quiet --out " + js + " > /dev/null"),
              0)
        << args;
    return json::parse(read_file(js));
  };
  const json a = ppl("--model " + mdir + " --assignment " + mix, "orig_fq");
  const json b = ppl("--model " + out, "packed_fq");
  const json k = ppl("--model " + out + " --backend kernels", "packed_k");
  const json k2 = ppl("--model " + mdir + " --assignment " + mix + " --backend kernels", "orig_k");
  EXPECT_EQ(a["mean_nll"], b["mean_nll"]);
  EXPECT_EQ(k["mean_nll"], k2["mean_nll"]);
  EXPECT_NEAR(k["mean_nll"].get<double>(), a["mean_nll"].get<double>(), kNllTolerance);
  EXPECT_EQ(k["backend"], "kernels");
  EXPECT_TRUE(k["packed_checkpoint"].get<bool>());
  // dmx-generate: greedy twice -> same ids; a tokens/s line on stderr.
  const std::string g = gen + " --model " + out + " --prompt 'The city of' --max-new-tokens 12 " +
                        "--threads 1 --ids --ignore-eos";
  ASSERT_EQ(run(g + " > " + (d / "g1").string() + " 2> " + (d / "g1.err").string()), 0);
  ASSERT_EQ(run(g + " > " + (d / "g2").string() + " 2>/dev/null"), 0);
  EXPECT_EQ(read_file(d / "g1"), read_file(d / "g2"));
  std::istringstream ids(read_file(d / "g1"));
  int n = 0;
  for (int t; ids >> t;) ++n;
  EXPECT_EQ(n, 12);
  EXPECT_NE(read_file(d / "g1.err").find("tokens/s"), std::string::npos);

  // Errors: usage -> 2, failures -> 1 with one line naming the input; no partial output.
  EXPECT_EQ(run(ex + " --model " + mdir + " --out " + (d / "x").string() + " 2>/dev/null"), 2);
  EXPECT_EQ(
      run(ex + " --model " + mdir + " --format e9m9 --out " + (d / "x").string() + " 2>/dev/null"),
      2);
  EXPECT_EQ(run(ex + " --bogus 2>/dev/null"), 2);
  EXPECT_EQ(run(ev + " --model " + out + " --data " + data + " --backend gpu 2>/dev/null"), 2);
  EXPECT_EQ(run(gen + " --model " + out + " 2>/dev/null"), 2);
  std::ofstream(d / "bad.json") << "{\"layers\": [";
  const std::string err = (d / "err").string();
  EXPECT_EQ(run(ex + " --model " + mdir + " --assignment " + (d / "bad.json").string() + " --out " +
                (d / "x").string() + " 2> " + err),
            1);
  std::string msg = read_file(err);
  EXPECT_NE(msg.find("bad.json"), std::string::npos) << msg;
  EXPECT_EQ(std::count(msg.begin(), msg.end(), '\n'), 1) << msg;
  EXPECT_FALSE(fs::exists(d / "x"));
  EXPECT_EQ(run(ex + " --model " + (d / "nope").string() + " --format e2m1 --out " +
                (d / "x").string() + " 2> " + err),
            1);
  EXPECT_NE(read_file(err).find("nope"), std::string::npos);
  EXPECT_FALSE(fs::exists(d / "x"));
  EXPECT_EQ(run(ex + " --model " + mdir + " --format e2m1 --out " + out + " 2> " + err), 1);
  EXPECT_NE(read_file(err).find("not empty"), std::string::npos);
  EXPECT_EQ(run(ev + " --model " + out + " --assignment " + mix + " --data " + data + " 2> " + err),
            1);
  EXPECT_NE(read_file(err).find("carries its own formats"), std::string::npos);
  EXPECT_EQ(run(gen + " --model " + mdir + " --prompt hi 2> " + err), 1);
  EXPECT_NE(read_file(err).find("needs a packed checkpoint or an --assignment"), std::string::npos);
  fs::remove_all(d);
}
#endif
