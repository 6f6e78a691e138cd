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
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <thread>

#include "dmx/cli.h"
#include "dmx/dist.h"
#include "dmx/progress.h"
#include "dmx/sim.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace dmx;
using namespace dmx::sim;

namespace {

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
// Everything that determines a cost table besides the architecture (also what a sweep point
// records to decide whether a finished point can be reused).
struct WorkloadArgs {
  std::string config, topology;
  std::string phase = "both";
  int64_t tokens = 2048, context = 2048;
  std::string batch = "1", prefill_batch = "1";
  std::string attn_format = "e4m3", kv_format = "e4m3", lm_head_format = "e4m3,e4m3",
              embed_format = "e4m3";
  std::string wlist = "all", alist = "all";
  std::string assignment;
  std::string dataflow;
  bool full = false;

  void add_options(CLI::App* c) {
    c->add_option("--config", config, "workload: a Hugging Face config.json (Llama, Qwen3)");
    c->add_option("--topology", topology,
                  "workload: a topology CSV (name,m,n,k[,count,wfmt,afmt])");
    c->add_option("--phase", phase, "prefill | decode | both")->capture_default_str();
    c->add_option("--tokens", tokens, "prefill: prompt tokens per sequence")->capture_default_str();
    c->add_option("--context", context, "decode: keys attended per new token (cache length)")
        ->capture_default_str();
    c->add_option("--batch", batch, "decode: sequences per step (comma list)")
        ->capture_default_str();
    c->add_option("--prefill-batch", prefill_batch, "prefill: sequences (comma list)")
        ->capture_default_str();
    c->add_option("--attn-format", attn_format, "A operand of QK^T and PV (Q, P)")
        ->capture_default_str();
    c->add_option("--kv-format", kv_format, "KV cache format")->capture_default_str();
    c->add_option("--lm-head-format", lm_head_format, "lm_head W[,A] formats")
        ->capture_default_str();
    c->add_option("--embed-format", embed_format, "untied embedding table format")
        ->capture_default_str();
    c->add_option("--wfmts", wlist, "Linear weight formats (comma list or all)")
        ->capture_default_str();
    c->add_option("--afmts", alist, "Linear activation formats (comma list or all)")
        ->capture_default_str();
    c->add_option("--assignment", assignment,
                  "dmx-search assignment.json: each Linear at its own formats (one total per "
                  "phase instead of one per pair)");
    c->add_option("--dataflow", dataflow,
                  "override: output_stationary | weight_stationary | "
                  "input_stationary");
    c->add_flag("--full", full, "simulate every tile instead of composing (slow)");
  }
  // The command-line form, for sweep points' child processes.
  std::vector<std::string> argv() const {
    std::vector<std::string> a;
    if (!config.empty()) a.insert(a.end(), {"--config", config});
    if (!topology.empty()) a.insert(a.end(), {"--topology", topology});
    a.insert(a.end(), {"--phase",          phase,
                       "--tokens",         std::to_string(tokens),
                       "--context",        std::to_string(context),
                       "--batch",          batch,
                       "--prefill-batch",  prefill_batch,
                       "--attn-format",    attn_format,
                       "--kv-format",      kv_format,
                       "--lm-head-format", lm_head_format,
                       "--embed-format",   embed_format,
                       "--wfmts",          wlist,
                       "--afmts",          alist});
    if (!dataflow.empty()) a.insert(a.end(), {"--dataflow", dataflow});
    if (!assignment.empty()) a.insert(a.end(), {"--assignment", assignment});
    if (full) a.push_back("--full");
    return a;
  }
};

struct BuiltWorkloads {
  std::vector<Workload> list;
  std::optional<ModelShape> model;
};

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

// ---- sweep --------------------------------------------------------------------------------------
struct Axis {
  std::string key;
  std::vector<std::string> values;
};

Axis parse_vary(const std::string& s) {
  auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
    throw UsageError("--vary '" + s + "': expected key=v1,v2,...");
  Axis ax{s.substr(0, eq), {}};
  for (const auto& v : split(s.substr(eq + 1), ','))
    if (!v.empty()) ax.values.push_back(v);
  if (ax.values.empty()) throw UsageError("--vary '" + s + "': no values");
  return ax;
}

std::string safe_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '-' && c != '=') c = '_';
  return s;
}

pid_t spawn(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  pid_t pid = 0;
  if (posix_spawn(&pid, argv[0], nullptr, nullptr, argv.data(), environ) != 0)
    throw std::runtime_error("cannot start " + args[0]);
  return pid;
}

// What produced a point: the point's architecture, the workload file's content and every option.
nlohmann::json point_settings(const std::string& arch_text, const WorkloadArgs& w) {
  const std::string file = w.config.empty() ? w.topology : w.config;
  nlohmann::json j;
  j["table_version"] = kCostTableVersion;
  j["arch"] = nlohmann::json::parse(arch_text);
  j["workload_file"] = file;
  j["workload_text"] = read_config_file(file, w.config.empty() ? "topology" : "model config");
  const auto args = w.argv();
  for (size_t i = 0; i + 1 < args.size(); i += 2)
    if (args[i].rfind("--", 0) == 0 && args[i] != "--config" && args[i] != "--topology")
      j["options"][args[i].substr(2)] = args[i + 1];
  j["options"]["full"] = w.full;
  return j;
}

// The first setting that differs between two settings objects ("" when equal).
std::string first_difference(const nlohmann::json& a, const nlohmann::json& b,
                             const std::string& prefix = "") {
  if (a.is_object() && b.is_object()) {
    for (auto it = a.begin(); it != a.end(); ++it) {
      if (!b.contains(it.key())) return prefix + it.key();
      auto d = first_difference(*it, b[it.key()], prefix + it.key() + ".");
      if (!d.empty()) return d;
    }
    for (auto it = b.begin(); it != b.end(); ++it)
      if (!a.contains(it.key())) return prefix + it.key();
    return "";
  }
  return a == b ? "" : (prefix.empty() ? "<all>" : prefix.substr(0, prefix.size() - 1));
}

struct SweepArgs {
  WorkloadArgs work;
  std::string arch, out_dir;
  std::vector<std::string> vary;
  int jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  bool jobs_given = false;
  dist::LaunchFlags dist;
};

std::vector<std::map<std::string, std::string>> read_csv_maps(const fs::path& p) {
  std::ifstream in(p);
  std::string line;
  if (!std::getline(in, line)) throw std::runtime_error(p.string() + ": empty");
  const auto hdr = split(line, ',');
  std::vector<std::map<std::string, std::string>> out;
  while (std::getline(in, line)) {
    const auto f = split(line, ',');
    if (f.size() != hdr.size()) throw std::runtime_error(p.string() + ": ragged row");
    std::map<std::string, std::string> m;
    for (size_t i = 0; i < f.size(); ++i) m[hdr[i]] = f[i];
    out.push_back(m);
  }
  return out;
}

// The gnuplot script: whole-workload seconds against the first varied key. With one key, one line
// per same-format pair and phase; with more, one line per value of the second key and phase for
// the first listed pair (further keys name the plot).
std::string sweep_plot(const SweepArgs& s, const std::vector<Axis>& axes,
                       const std::vector<std::map<std::string, std::string>>& summary,
                       const fs::path& svg) {
  struct Line {
    std::string title;
    std::vector<std::pair<size_t, double>> pts;  // (index of the x value, seconds)
  };
  std::map<std::string, Line> lines;
  std::vector<std::string> order;
  const auto wf = format_list(s.work.wlist, "--wfmts"), af = format_list(s.work.alist, "--afmts");
  const std::string first_pair = std::string(format_name(wf[0])) + "," + format_name(af[0]);
  for (const auto& r : summary) {
    const std::string pair = r.at("wfmt") + "," + r.at("afmt");
    const std::string ph = r.at("phase") + " b" + r.at("batch");
    std::string key, title;
    if (axes.size() == 1) {
      if (r.at("wfmt") != r.at("afmt") && r.at("wfmt") != "-") continue;
      key = pair + "|" + ph;
      title =
          r.at("wfmt") + " x " + r.at("afmt") + ", " + r.at("phase") + " batch " + r.at("batch");
    } else {
      if (pair != first_pair && r.at("wfmt") != "-") continue;
      key = r.at(axes[1].key) + "|" + ph;
      title = axes[1].key + " = " + r.at(axes[1].key) + ", " + r.at("phase") + " batch " +
              r.at("batch");
    }
    const auto& xs = axes[0].values;
    const size_t xi = size_t(std::find(xs.begin(), xs.end(), r.at(axes[0].key)) - xs.begin());
    if (!lines.count(key)) order.push_back(key);
    lines[key].title = title;
    lines[key].pts.push_back({xi, std::stod(r.at("seconds"))});
  }
  std::ostringstream gp;
  gp << "# dmx-sim sweep plot (regenerate: gnuplot " << (fs::path(s.out_dir) / "plot.gp").string()
     << ", from the directory the sweep ran in)\n"
     << "set terminal svg size 1000,720 dynamic background rgb 'white' noenhanced\n"
     << "set output '" << svg.string() << "'\n"
     << "set key below\nset logscale y\nset grid\nset offsets 0.25, 0.25, 0, 0\n"
     << "set xlabel '" << axes[0].key << "'\n"
     << "set ylabel 'seconds per phase (whole model)'\n"
     << "set title 'dmx-sim sweep of " << fs::path(s.arch).filename().string()
     << (axes.size() == 1 ? std::string(", same-format pairs")
                          : ", W x A = " + first_pair + " for the Linears");
  for (size_t a = 2; a < axes.size(); ++a) gp << ", all values of " << axes[a].key;
  gp << "'\nset xtics (";
  for (size_t i = 0; i < axes[0].values.size(); ++i)
    gp << (i ? ", " : "") << "'" << axes[0].values[i] << "' " << i;
  gp << ")\n";
  for (size_t i = 0; i < order.size(); ++i) {
    auto pts = lines[order[i]].pts;
    std::sort(pts.begin(), pts.end());
    gp << "$line" << i << " << EOD\n";
    for (auto [x, y] : pts) gp << x << ' ' << y << '\n';
    gp << "EOD\n";
  }
  gp << "plot ";
  for (size_t i = 0; i < order.size(); ++i)
    gp << (i ? ", \\\n     " : "") << "$line" << i << " using 1:2 with linespoints title '"
       << lines[order[i]].title << "'";
  gp << "\n";
  return gp.str();
}

int run_sweep_cmd(const SweepArgs& s) {
  std::vector<Axis> axes;
  for (const auto& v : s.vary) axes.push_back(parse_vary(v));
  const std::string base = read_config_file(s.arch, "architecture config");
  load_arch_with(s.arch, s.work.dataflow);  // validates the base
  build_workloads(s.work);                  // validates the workload and options
  format_list(s.work.wlist, "--wfmts");
  format_list(s.work.alist, "--afmts");
  if (s.jobs < 1 || s.jobs > 256) throw UsageError("--jobs: must be in [1, 256]");
  // Grid points: every combination, each validated before anything runs.
  std::vector<std::vector<std::string>> points{{}};
  for (const Axis& ax : axes) {
    std::vector<std::vector<std::string>> next;
    for (const auto& p : points)
      for (const auto& v : ax.values) {
        auto q = p;
        q.push_back(v);
        next.push_back(q);
      }
    points = next;
  }
  std::vector<std::string> texts;
  for (const auto& p : points) {
    std::string text = base;
    for (size_t a = 0; a < axes.size(); ++a)
      text = override_arch_key(text, s.arch, axes[a].key, p[a]);
    texts.push_back(text);
  }
  const dist::Launch launch = dist::resolve_launch(s.dist);
  int jobs = s.jobs;
  if (!s.jobs_given && dist::local_world_size() > 1)  // ranks on one machine share its cores
    jobs = std::max(1, int(std::thread::hardware_concurrency()) / dist::local_world_size());
  std::unique_ptr<dist::Group> group;
  {
    std::string fp = "arch " + base + "\nout " + s.out_dir;
    for (const auto& v : s.vary) fp += "\nvary " + v;
    for (const auto& a : s.work.argv()) fp += "\n" + a;
    group = dist::Group::join(launch, "dmx-sim", fp);
  }
  const bool root = group->root();
  const int world = group->size();
  const std::string self = fs::read_symlink("/proc/self/exe").string();
  std::vector<std::string> names;
  for (size_t i = 0; i < points.size(); ++i) {
    std::string name;
    for (size_t a = 0; a < axes.size(); ++a)
      name += (name.empty() ? "" : ",") + axes[a].key + "=" + points[i][a];
    names.push_back(safe_name(name));
  }
  // Rank 0 owns the output directory: it decides what is left to run and tells the others.
  std::vector<size_t> todo;
  std::vector<fs::path> dirs;
  if (root) {
    fs::create_directories(fs::path(s.out_dir) / "points");
    for (size_t i = 0; i < points.size(); ++i) {
      fs::path dir = fs::path(s.out_dir) / "points" / names[i];
      fs::create_directories(dir);
      dirs.push_back(dir);
      const nlohmann::json want = point_settings(texts[i], s.work);
      // Resumable: a finished point is reused only when every setting that produced it matches.
      if (fs::exists(dir / "totals.csv") && fs::exists(dir / "settings.json")) {
        nlohmann::json had;
        try {
          had =
              nlohmann::json::parse(read_config_file((dir / "settings.json").string(), "settings"));
        } catch (const std::exception&) {
          had = nullptr;
        }
        const std::string diff = first_difference(want, had);
        if (diff.empty()) continue;
        std::cerr << "dmx-sim sweep: " << dir.filename().string() << ": setting '" << diff
                  << "' differs from the finished point; recomputing it\n";
      }
      fs::remove(dir / "totals.csv");
      write_file_atomic((dir / "arch.json").string(), texts[i]);
      write_file_atomic((dir / "settings.pending.json").string(), want.dump(1));
      todo.push_back(i);
    }
  }
  std::string todo_text;
  for (size_t i : todo) todo_text += std::to_string(i) + " ";
  group->broadcast(todo_text);
  todo.clear();
  {
    std::istringstream in(todo_text);
    for (size_t i; in >> i;) todo.push_back(i);
  }
  // The other ranks compute in a scratch folder of their own machine and send the tables.
  std::string scratch;
  if (!root) {
    std::string tmpl = (fs::temp_directory_path() / "dmx-sim-sweep-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) throw std::runtime_error("cannot create a scratch folder in /tmp");
    scratch = tmpl;
    for (size_t i = 0; i < points.size(); ++i) dirs.push_back(fs::path(scratch) / names[i]);
  }
  struct ScratchGuard {
    std::string dir;
    ~ScratchGuard() {
      std::error_code ec;
      if (!dir.empty()) fs::remove_all(dir, ec);
    }
  } scratch_guard{scratch};
  // Round-robin: todo[k] runs on rank k % world (neighbouring grid points cost alike).
  std::vector<size_t> mine;
  for (size_t k = 0; k < todo.size(); ++k)
    if (int(k % world) == group->rank()) mine.push_back(todo[k]);
  if (!root)
    for (size_t i : mine) {
      fs::create_directories(dirs[i]);
      write_file_atomic((dirs[i] / "arch.json").string(), texts[i]);
    }
  std::cerr << "dmx-sim sweep: " << (world > 1 ? group->who() + ": " : "") << points.size()
            << " points, " << todo.size() << " to run"
            << (world > 1 ? ", " + std::to_string(mine.size()) + " here" : "") << ", " << jobs
            << " parallel\n";
  size_t done = 0;
  int failures = 0;
  // Rank 0: the points of the other ranks, written as their tables arrive.
  std::vector<size_t> remote;
  for (size_t k = 0; k < todo.size(); ++k)
    if (root && int(k % world) != 0) remote.push_back(todo[k]);
  auto receive = [&](bool block) {
    auto deadline = std::chrono::steady_clock::now() +
                    std::chrono::milliseconds(int64_t(launch.timeout_s * 1000));
    while (!remote.empty()) {
      bool got = false;
      for (auto it = remote.begin(); it != remote.end();) {
        auto msg = group->try_get("sim/point/" + std::to_string(*it));
        if (!msg) {
          ++it;
          continue;
        }
        const fs::path& dir = dirs[*it];
        const auto j = nlohmann::json::parse(*msg);
        const bool ok = j.value("ok", false);
        if (ok) {
          write_file_atomic((dir / "table.csv").string(), j.at("table").get<std::string>());
          write_file_atomic((dir / "totals.csv").string(), j.at("totals").get<std::string>());
          fs::rename(dir / "settings.pending.json", dir / "settings.json");
        } else {
          ++failures;
        }
        ++done;
        std::cerr << "dmx-sim sweep: [" << done << "/" << todo.size() << "] "
                  << dir.filename().string() << (ok ? " done" : " FAILED") << " (rank "
                  << j.value("rank", -1) << ")\n";
        it = remote.erase(it);
        got = true;
      }
      if (!block) return;
      if (got) {  // progress: the timeout counts from the last point that arrived
        deadline = std::chrono::steady_clock::now() +
                   std::chrono::milliseconds(int64_t(launch.timeout_s * 1000));
        continue;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        std::string ranks;
        for (size_t k = 0; k < todo.size(); ++k)
          if (std::find(remote.begin(), remote.end(), todo[k]) != remote.end()) {
            const std::string r = std::to_string(k % world);
            if (ranks.find(" " + r + ",") == std::string::npos) ranks += " " + r + ",";
          }
        ranks.pop_back();
        throw dist::DistError(group->who() + ": no point arrived from rank(s)" + ranks +
                              " within " + std::to_string(int(launch.timeout_s)) + " s (" +
                              std::to_string(remote.size()) +
                              " points missing; the finished ones are written, rerun to resume)");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  };
  std::map<pid_t, size_t> running;
  size_t next = 0;
  while (next < mine.size() || !running.empty()) {
    while (next < mine.size() && int(running.size()) < jobs) {
      const fs::path& dir = dirs[mine[next++]];
      std::vector<std::string> args = {self, "model", "--arch", (dir / "arch.json").string()};
      const auto wa = s.work.argv();
      args.insert(args.end(), wa.begin(), wa.end());
      args.insert(args.end(), {"-q", "-o", (dir / "table.csv").string(), "--totals",
                               (dir / "totals.csv").string()});
      running[spawn(args)] = mine[next - 1];
    }
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0) break;
    auto it = running.find(pid);
    if (it == running.end()) continue;
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const fs::path& dir = dirs[it->second];
    if (root) {
      ++done;
      if (ok)
        fs::rename(dir / "settings.pending.json", dir / "settings.json");
      else
        ++failures;
      std::cerr << "dmx-sim sweep: [" << done << "/" << todo.size() << "] "
                << dir.filename().string() << (ok ? " done" : " FAILED") << "\n";
      receive(false);
    } else {
      nlohmann::json j = {{"ok", ok}, {"rank", group->rank()}};
      if (ok) {
        j["table"] = read_config_file((dir / "table.csv").string(), "point table");
        j["totals"] = read_config_file((dir / "totals.csv").string(), "point totals");
      } else {
        ++failures;
      }
      group->put("sim/point/" + std::to_string(it->second), j.dump());
    }
    running.erase(it);
  }
  if (!root) {
    // A round trip to rank 0's store: every point sent before it has been stored there.
    group->try_get("sim/sync");
    std::cerr << "dmx-sim sweep: " << group->who() << ": sent " << mine.size() << " points"
              << (failures ? " (" + std::to_string(failures) + " failed)" : "") << "\n";
    return failures ? 1 : 0;
  }
  receive(true);
  if (failures) {
    std::cerr << "dmx-sim sweep: " << failures << " points failed; rerun to retry them\n";
    return 1;
  }
  // Summary: per point, the totals of every pair and phase.
  std::ostringstream csv;
  csv.precision(10);
  csv << "version";
  for (const Axis& ax : axes) csv << ',' << ax.key;
  csv << ",wfmt,afmt,phase,tokens,context,batch,seconds,cycles,tokens_per_s,joules_per_token,"
         "dram_bytes,energy_pj\n";
  std::vector<std::map<std::string, std::string>> summary;
  for (size_t i = 0; i < points.size(); ++i)
    for (auto r : read_csv_maps(dirs[i] / "totals.csv")) {
      csv << kCostTableVersion;
      for (size_t a = 0; a < axes.size(); ++a) {
        csv << ',' << points[i][a];
        r[axes[a].key] = points[i][a];
      }
      for (const char* c :
           {"wfmt", "afmt", "phase", "tokens", "context", "batch", "seconds", "cycles",
            "tokens_per_s", "joules_per_token", "dram_bytes", "energy_pj"})
        csv << ',' << r.at(c);
      csv << '\n';
      summary.push_back(r);
    }
  const fs::path sweep_csv = fs::path(s.out_dir) / "sweep.csv";
  write_file_atomic(sweep_csv.string(), csv.str());
  const fs::path gp_path = fs::path(s.out_dir) / "plot.gp";
  write_file_atomic(gp_path.string(),
                    sweep_plot(s, axes, summary, fs::path(s.out_dir) / "sweep.svg"));
  std::cerr << "dmx-sim sweep: wrote " << sweep_csv.string() << "\n";
  const std::string cmd = "gnuplot '" + gp_path.string() + "'";
  if (std::system(cmd.c_str()) != 0) {
    std::cerr << "dmx-sim sweep: plotting failed (is gnuplot installed?): " << cmd << "\n";
    return 1;
  }
  std::cerr << "dmx-sim sweep: wrote " << (fs::path(s.out_dir) / "sweep.svg").string()
            << " (plot command: " << cmd << ")\n";
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
