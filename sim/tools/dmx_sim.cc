// dmx-sim: run GEMMs and whole workloads through the SystemC accelerator model; sweep
// architectures.
//   dmx-sim gemm  --m M --n N --k K --wfmt F --afmt F --arch FILE [--full] [--check]
//   dmx-sim model (--config config.json | --topology t.csv) --arch FILE [--phase both]
//                 [--tokens 2048] [--context 2048] [--batch 1,8] -o table.csv [--totals t.csv]
//   dmx-sim sweep --arch FILE --vary key=v1,v2,... [--vary ...] (--config | --topology) ... -o DIR
// A sweep runs across processes too (dmx/dist.h: MASTER_ADDR/MASTER_PORT/RANK/WORLD_SIZE or the
// same flags): the points to run are dealt round-robin to the ranks, every other rank sends each
// finished point's tables to rank 0 through the c10d store, and rank 0 writes them as they come.
// Exit codes: 0 ok, 2 usage or invalid input (config files, shapes), 1 other failures.
#include "sim_tool.h"

namespace dmx::sim::tool {

MxFormat format_arg(const std::string& s, const char* opt) {
  auto f = parse_format(s);
  if (!f) throw UsageError(std::string(opt) + ": unknown MX format '" + s + "'");
  return *f;
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, sep)) out.push_back(item);
  return out;
}

std::vector<MxFormat> format_list(const std::string& s, const char* opt) {
  if (s.empty() || s == "all") return {kAllFormats.begin(), kAllFormats.end()};
  std::vector<MxFormat> out;
  for (const auto& item : split(s, ',')) out.push_back(format_arg(item, opt));
  return out;
}

std::vector<int64_t> int_list(const std::string& s, const char* opt, int64_t lo, int64_t hi) {
  std::vector<int64_t> out;
  for (const auto& item : split(s, ',')) {
    size_t pos = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &pos);
    } catch (...) {
      pos = 0;
    }
    if (item.empty() || pos != item.size() || v < lo || v > hi)
      throw UsageError(std::string(opt) + ": '" + item + "' is not an integer in [" +
                       std::to_string(lo) + ", " + std::to_string(hi) + "]");
    out.push_back(v);
  }
  if (out.empty()) throw UsageError(std::string(opt) + ": no values");
  return out;
}

ArchConfig load_arch_with(const std::string& file, const std::string& dataflow) {
  ArchConfig a = load_arch(file);
  if (!dataflow.empty()) {
    auto d = parse_dataflow(dataflow);
    if (!d)
      throw UsageError(
          "--dataflow: expected output_stationary, weight_stationary or "
          "input_stationary, got '" +
          dataflow + "'");
    a.dataflow = *d;
  }
  return a;
}

BuiltWorkloads build_workloads(const WorkloadArgs& w) {
  if (w.config.empty() == w.topology.empty())
    throw UsageError("give exactly one workload: --config config.json or --topology file.csv");
  BuiltWorkloads out;
  if (!w.topology.empty()) {
    out.list.push_back(load_topology(w.topology));
    return out;
  }
  if (w.phase != "prefill" && w.phase != "decode" && w.phase != "both")
    throw UsageError("--phase: expected prefill, decode or both, got '" + w.phase + "'");
  FixedFormats fx;
  fx.attention = format_arg(w.attn_format, "--attn-format");
  fx.kv_cache = format_arg(w.kv_format, "--kv-format");
  const auto lm = split(w.lm_head_format, ',');
  if (lm.empty() || lm.size() > 2) throw UsageError("--lm-head-format: expected W or W,A");
  fx.lm_head_weight = format_arg(lm[0], "--lm-head-format");
  fx.lm_head_act = format_arg(lm.size() > 1 ? lm[1] : lm[0], "--lm-head-format");
  fx.embedding = format_arg(w.embed_format, "--embed-format");
  if (w.tokens < 1 || w.tokens > (1 << 20)) throw UsageError("--tokens: must be in [1, 1048576]");
  if (w.context < 1 || w.context > (1 << 22))
    throw UsageError("--context: must be in [1, 4194304]");
  out.model = load_model_config(w.config);
  if (w.phase != "decode")
    for (int64_t b : int_list(w.prefill_batch, "--prefill-batch", 1, 4096))
      out.list.push_back(decoder_workload(*out.model, {PhaseKind::Prefill, w.tokens, 0, b}, fx));
  if (w.phase != "prefill")
    for (int64_t b : int_list(w.batch, "--batch", 1, 4096))
      out.list.push_back(decoder_workload(*out.model, {PhaseKind::Decode, 0, w.context, b}, fx));
  return out;
}

}  // namespace dmx::sim::tool

using namespace dmx;
using namespace dmx::sim;
using namespace dmx::sim::tool;

namespace {

// ---- gemm ---------------------------------------------------------------------------------------
struct GemmArgs {
  GemmShape shape;
  std::string wfmt = "e4m3", afmt = "e4m3", arch, dataflow;
  bool full = false, check = false;
};

// Functional check: random MX operands through the array, compared with golden dot_blocked.
int check_functional(const ArchConfig& arch, const GemmShape& s, MxFormat w, MxFormat a) {
  const int64_t K = int64_t(padded_length(size_t(s.k)));
  if (s.m * s.n * K > (int64_t(1) << 24))
    throw UsageError("--check: shape too large for a functional run (M*N*K > 2^24)");
  std::mt19937 rng(12345);
  std::normal_distribution<float> nd(0.f, 1.f);
  auto make = [&](MxFormat f, int64_t rows) {
    MxMatrix m{f, rows, K, std::vector<uint8_t>(size_t(rows * K)),
               std::vector<uint8_t>(size_t(rows * K / 32))};
    std::vector<float> v(static_cast<size_t>(K));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t i = 0; i < K; ++i) v[size_t(i)] = i < s.k ? nd(rng) : 0.f;
      quantize_row(f, v.data(), size_t(K), &m.scales[size_t(r * K / 32)], &m.codes[size_t(r * K)]);
    }
    return m;
  };
  MxMatrix A = make(a, s.m), B = make(w, s.n);
  GemmRun run = run_gemm(arch, A, B);
  int64_t bad = 0;
  for (int64_t i = 0; i < s.m; ++i)
    for (int64_t j = 0; j < s.n; ++j) {
      MxVector va{a, &A.scales[size_t(i * K / 32)], &A.codes[size_t(i * K)]};
      MxVector vb{w, &B.scales[size_t(j * K / 32)], &B.codes[size_t(j * K)]};
      const float ref = dot_blocked(va, vb, size_t(K));
      if (fp32_bits(ref) != fp32_bits(run.c[size_t(i * s.n + j)])) ++bad;
    }
  std::cerr << "check: " << s.m * s.n << " outputs vs golden dot_blocked: " << bad
            << " mismatches; functional run " << run.cost.cycles << " cycles\n";
  return bad == 0 ? 0 : 1;
}

int run_gemm_cmd(const GemmArgs& g) {
  const MxFormat w = format_arg(g.wfmt, "--wfmt"), f = format_arg(g.afmt, "--afmt");
  const ArchConfig a = load_arch_with(g.arch, g.dataflow);
  const GemmCost c = g.full ? simulate_gemm(a, g.shape, w, f) : cost_gemm(a, g.shape, w, f);
  std::ostringstream os;
  os.precision(10);
  os << "version,m,n,k,wfmt,afmt,dataflow,cycles,seconds,dram_bytes,sram_read_bytes,"
        "sram_write_bytes,macs,energy_pj,mac_pj,sram_read_pj,sram_write_pj,dram_pj,static_pj,"
        "utilization,dram_gbps,tiles,simulated_tiles\n"
     << kCostTableVersion << ',' << g.shape.m << ',' << g.shape.n << ',' << g.shape.k << ','
     << format_name(w) << ',' << format_name(f) << ',' << dataflow_name(a.dataflow) << ','
     << c.cycles << ',' << c.seconds << ',' << c.dram_bytes << ',' << c.sram_read_bytes << ','
     << c.sram_write_bytes << ',' << c.macs << ',' << c.energy_pj << ',' << c.energy.mac << ','
     << c.energy.sram_read << ',' << c.energy.sram_write << ',' << c.energy.dram << ','
     << c.energy.static_ << ',' << c.utilization << ',' << c.dram_gbps() << ',' << c.tiles << ','
     << c.simulated_tiles << '\n';
  std::cout << os.str();
  return g.check ? check_functional(a, g.shape, w, f) : 0;
}

// ---- model --------------------------------------------------------------------------------------

// A short summary for people: the same-format pairs' totals per phase.
void print_summary(const std::vector<CostTotal>& totals, const ArchConfig& a) {
  std::printf("%-8s %6s %6s %7s  %-11s %12s %12s %12s %11s %10s\n", "phase", "tokens", "ctx",
              "batch", "W x A", "time ms", "tokens/s", "mJ/token", "DRAM MB", "DRAM GB/s");
  for (const CostTotal& t : totals) {
    if (t.has_pair && t.wfmt != t.afmt) continue;
    const std::string pair =
        t.has_pair ? std::string(format_name(t.wfmt)) + " x " + format_name(t.afmt) : "(mixed)";
    std::printf("%-8s %6lld %6lld %7lld  %-11s %12.4f %12.1f %12.4f %11.2f %10.1f\n",
                t.phase.name(), (long long)t.phase.tokens, (long long)t.phase.context,
                (long long)t.phase.batch, pair.c_str(), t.cost.seconds * 1e3, t.tokens_per_s,
                t.joules_per_token * 1e3, double(t.cost.dram_bytes) * 1e-6, t.cost.dram_gbps());
  }
  std::printf("(%s: %s, %.0f GB/s DRAM; all pairs in the totals file)\n", a.name.c_str(),
              dataflow_name(a.dataflow), a.dram_gbps);
}

struct ModelArgs {
  WorkloadArgs work;
  std::string arch, out, totals, json;
  bool quiet = false;
};

int run_model_cmd(const ModelArgs& m) {
  const ArchConfig a = load_arch_with(m.arch, m.work.dataflow);
  const BuiltWorkloads wl = build_workloads(m.work);
  TableOptions opt;
  opt.weight_formats = format_list(m.work.wlist, "--wfmts");
  opt.act_formats = format_list(m.work.alist, "--afmts");
  opt.full_simulation = m.work.full;
  FormatAssignment assigned;
  if (!m.work.assignment.empty()) {
    assigned = load_assignment(m.work.assignment);
    opt.assignment = &assigned;
  }
  for (const std::string& path : {m.out, m.totals, m.json})  // fail before the work, not after
    if (!path.empty() && !fs::is_directory(fs::absolute(path).parent_path()))
      throw UsageError(path + ": its directory does not exist");
  std::vector<CostRow> rows;
  TileCache cache;
  dmx::ProgressLine progress("dmx-sim model", "workload", m.quiet, 0.0);
  for (size_t i = 0; i < wl.list.size(); ++i) {
    const Workload& w = wl.list[i];
    auto part = cost_workload(w, a, opt, &cache);
    rows.insert(rows.end(), part.begin(), part.end());
    progress.update(int64_t(i + 1), int64_t(wl.list.size()),
                    std::string(w.phase.name()) + " batch " + std::to_string(w.phase.batch) + ": " +
                        std::to_string(rows.size()) + " rows, " +
                        std::to_string(cache.simulations()) + " tile windows simulated");
  }
  const auto totals = cost_totals(rows, opt.assignment == nullptr);
  const ModelShape* model = wl.model ? &*wl.model : nullptr;
  const bool as_json = m.out.size() > 5 && m.out.substr(m.out.size() - 5) == ".json";
  write_file_atomic(m.out,
                    as_json ? cost_table_json(rows, totals, a, model) : cost_table_csv(rows));
  if (!m.totals.empty()) write_file_atomic(m.totals, cost_totals_csv(totals));
  if (!m.json.empty()) write_file_atomic(m.json, cost_table_json(rows, totals, a, model));
  if (!m.quiet) {
    print_summary(totals, a);
    std::cerr << "dmx-sim model: wrote " << m.out << (m.totals.empty() ? "" : " and " + m.totals)
              << "\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dmx-sim: SystemC cycle model of an MX accelerator; cost tables and sweeps"};
  app.require_subcommand(1);

  GemmArgs g;
  auto* gemm = app.add_subcommand("gemm", "cost one GEMM C[M,N] = A[M,K] x B[K,N]");
  gemm->add_option("--m", g.shape.m, "rows of A and C (tokens)")->required();
  gemm->add_option("--n", g.shape.n, "columns of B and C (output features)")->required();
  gemm->add_option("--k", g.shape.k, "reduction length (input features)")->required();
  gemm->add_option("--wfmt", g.wfmt, "weight (B) format: e4m3 e5m2 e3m2 e2m3 e2m1 int8")
      ->capture_default_str();
  gemm->add_option("--afmt", g.afmt, "activation (A) format")->capture_default_str();
  gemm->add_option("--arch", g.arch, "architecture config (JSON)")->required();
  gemm->add_option("--dataflow", g.dataflow,
                   "override: output_stationary | weight_stationary | input_stationary");
  gemm->add_flag("--full", g.full, "simulate every tile instead of composing cached tiles");
  gemm->add_flag("--check", g.check,
                 "also run random MX data through the array and compare with golden");

  ModelArgs m;
  auto* model = app.add_subcommand(
      "model",
      "cost table and whole-model totals for a config.json (prefill / decode) or a "
      "topology CSV");
  m.work.add_options(model);
  model->add_option("--arch", m.arch, "architecture config (JSON)")->required();
  model->add_option("-o,--output", m.out, "per-operation table: .csv or .json")->required();
  model->add_option("--totals", m.totals, "whole-model totals per phase and pair (CSV)");
  model->add_option("--json", m.json, "also write the JSON table (rows and totals) here");
  model->add_flag("-q,--quiet", m.quiet, "no progress on stderr, no summary on stdout");

  SweepArgs s;
  auto* sweep = app.add_subcommand("sweep", "grid over architecture parameters");
  s.work.add_options(sweep);
  sweep->add_option("--arch", s.arch, "base architecture config (JSON)")->required();
  sweep
      ->add_option("--vary", s.vary, "dotted key=v1,v2,... (repeatable; the grid is their product)")
      ->required();
  sweep->add_option("-o,--output", s.out_dir, "output directory (resumable)")->required();
  sweep->add_option("-j,--jobs", s.jobs, "parallel processes (per rank)")->capture_default_str();
  dist::add_dist_options(*sweep, s.dist);

  if (const auto rc = parse_cli(app, "dmx-sim", argc, argv)) return *rc;
  return run_tool("dmx-sim", [&] {
    try {
      if (*gemm) return run_gemm_cmd(g);
      if (*model) return run_model_cmd(m);
      s.jobs_given = sweep->count("--jobs") > 0;
      return run_sweep_cmd(s);
    } catch (const ConfigError& e) {
      throw UsageError(e.what());  // a config file the tool cannot take: exit 2
    }
  });
}
