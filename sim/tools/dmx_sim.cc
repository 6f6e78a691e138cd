// dmx-sim: run GEMMs and whole models through the SystemC accelerator model; sweep architectures.
//   dmx-sim gemm  --m M --n N --k K --wfmt F --afmt F --arch FILE [--full] [--check]
//   dmx-sim model --config config.json --arch FILE --tokens N -o table.csv|table.json
//   dmx-sim sweep --arch FILE --vary key=v1,v2,... [--vary ...] --config FILE --tokens N -o DIR
// Exit codes: 0 ok, 2 usage or invalid input (config files, shapes), 1 other failures.
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "dmx/sim.h"

extern char** environ;

namespace fs = std::filesystem;
using namespace dmx;
using namespace dmx::sim;

namespace {

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

MxFormat format_arg(const std::string& s, const char* opt) {
  auto f = parse_format(s);
  if (!f) throw UsageError(std::string(opt) + ": unknown MX format '" + s + "'");
  return *f;
}

std::vector<MxFormat> format_list(const std::string& s, const char* opt) {
  std::vector<MxFormat> out;
  if (s.empty() || s == "all") return {kAllFormats.begin(), kAllFormats.end()};
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ',')) out.push_back(format_arg(item, opt));
  return out;
}

std::string read_text(const std::string& path, const char* what) {
  std::ifstream in(path);
  if (!in) throw ConfigError(path + ": cannot open " + what);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string gemm_csv_header() {
  return "version,m,n,k,wfmt,afmt,dataflow,cycles,seconds,dram_bytes,sram_bytes,macs,energy_pj,"
         "utilization,tiles,simulated_tiles\n";
}
std::string gemm_csv_row(const GemmShape& s, MxFormat w, MxFormat a, const ArchConfig& arch,
                         const GemmCost& c) {
  std::ostringstream os;
  os.precision(10);
  os << kCostTableVersion << ',' << s.m << ',' << s.n << ',' << s.k << ',' << format_name(w) << ','
     << format_name(a) << ',' << dataflow_name(arch.dataflow) << ',' << c.cycles << ','
     << c.seconds << ',' << c.dram_bytes << ',' << c.sram_bytes << ',' << c.macs << ','
     << c.energy_pj << ',' << c.utilization << ',' << c.tiles << ',' << c.simulated_tiles << '\n';
  return os.str();
}

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

std::string fmt_seconds(double s) {
  char b[64];
  std::snprintf(b, sizeof b, "%.1f s", s);
  return b;
}

// ---- sweep ----
struct Axis {
  std::string key;
  std::vector<std::string> values;
};

Axis parse_vary(const std::string& s) {
  auto eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size())
    throw UsageError("--vary '" + s + "': expected key=v1,v2,...");
  Axis ax{s.substr(0, eq), {}};
  std::stringstream ss(s.substr(eq + 1));
  std::string v;
  while (std::getline(ss, v, ','))
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

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dmx-sim: SystemC cycle model of an MX accelerator; cost tables and sweeps"};
  app.require_subcommand(1);

  // gemm
  auto* gemm = app.add_subcommand("gemm", "cost one GEMM C[M,N] = A[M,K] x B[K,N]");
  GemmShape gs;
  std::string wfmt = "e4m3", afmt = "e4m3", arch_file, dataflow;
  bool full = false, check = false;
  gemm->add_option("--m", gs.m, "rows of A and C (tokens)")->required();
  gemm->add_option("--n", gs.n, "columns of B and C (output features)")->required();
  gemm->add_option("--k", gs.k, "reduction length (input features)")->required();
  gemm->add_option("--wfmt", wfmt, "weight (B) format: e4m3 e5m2 e3m2 e2m3 e2m1 int8")
      ->capture_default_str();
  gemm->add_option("--afmt", afmt, "activation (A) format")->capture_default_str();
  gemm->add_option("--arch", arch_file, "architecture config (JSON)")->required();
  gemm->add_option("--dataflow", dataflow, "override: output_stationary | weight_stationary");
  gemm->add_flag("--full", full, "simulate every tile instead of composing cached tiles");
  gemm->add_flag("--check", check,
                 "also run random MX data through the array and compare with golden");

  // model
  auto* model = app.add_subcommand("model", "cost table for a Hugging Face config.json");
  std::string config_file, out_file, json_file, wlist = "all", alist = "all";
  int64_t tokens = 512;
  bool quiet = false;
  model->add_option("--config", config_file, "Hugging Face config.json")->required();
  model->add_option("--arch", arch_file, "architecture config (JSON)")->required();
  model->add_option("--tokens", tokens, "prefill tokens (decode is always 1 token)")
      ->capture_default_str();
  model->add_option("-o,--output", out_file, "table: .csv or .json")->required();
  model->add_option("--json", json_file, "also write the JSON table here");
  model->add_option("--wfmts", wlist, "weight formats (comma list or all)")->capture_default_str();
  model->add_option("--afmts", alist, "activation formats (comma list or all)")
      ->capture_default_str();
  model->add_option("--dataflow", dataflow, "override: output_stationary | weight_stationary");
  model->add_flag("--full", full, "simulate every tile (slow)");
  model->add_flag("-q,--quiet", quiet, "no progress on stderr");

  // sweep
  auto* sweep = app.add_subcommand("sweep", "grid over architecture parameters");
  std::vector<std::string> vary;
  std::string out_dir;
  int jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  sweep->add_option("--arch", arch_file, "base architecture config (JSON)")->required();
  sweep->add_option("--vary", vary, "dotted key=v1,v2,... (repeatable; the grid is their product)")
      ->required();
  sweep->add_option("--config", config_file, "workload: a Hugging Face config.json")->required();
  sweep->add_option("--tokens", tokens, "prefill tokens")->capture_default_str();
  sweep->add_option("--wfmts", wlist, "weight formats")->capture_default_str();
  sweep->add_option("--afmts", alist, "activation formats")->capture_default_str();
  sweep->add_option("-o,--output", out_dir, "output directory (resumable)")->required();
  sweep->add_option("-j,--jobs", jobs, "parallel processes")->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    auto load = [&]() {
      ArchConfig a = load_arch(arch_file);
      if (!dataflow.empty()) {
        if (dataflow == "output_stationary" || dataflow == "os")
          a.dataflow = Dataflow::OUTPUT_STATIONARY;
        else if (dataflow == "weight_stationary" || dataflow == "ws")
          a.dataflow = Dataflow::WEIGHT_STATIONARY;
        else
          throw UsageError("--dataflow: expected output_stationary or weight_stationary, got '" +
                           dataflow + "'");
      }
      return a;
    };

    if (*gemm) {
      const ArchConfig a = load();
      const MxFormat w = format_arg(wfmt, "--wfmt"), f = format_arg(afmt, "--afmt");
      const GemmCost c = full ? simulate_gemm(a, gs, w, f) : cost_gemm(a, gs, w, f);
      std::cout << gemm_csv_header() << gemm_csv_row(gs, w, f, a, c);
      return check ? check_functional(a, gs, w, f) : 0;
    }

    if (*model) {
      const ArchConfig a = load();
      const ModelShape m = load_model_config(config_file);
      TableOptions opt;
      opt.weight_formats = format_list(wlist, "--wfmts");
      opt.act_formats = format_list(alist, "--afmts");
      opt.full_simulation = full;
      if (tokens < 1) throw UsageError("--tokens: must be >= 1");
      const auto t0 = std::chrono::steady_clock::now();
      std::vector<CostRow> rows;
      TileCache cache;
      // Progress per phase (the cache makes later phases and layers fast).
      for (int ph = 0; ph < 2; ++ph) {
        TableOptions o = opt;
        o.prefill = ph == 0;
        o.decode = ph == 1;
        auto part = cost_table(m, a, tokens, o, &cache);
        rows.insert(rows.end(), part.begin(), part.end());
        if (!quiet)
          std::cerr << "dmx-sim model: " << (ph == 0 ? "prefill" : "decode") << " done, "
                    << rows.size() << " rows, " << cache.simulations() << " tile windows simulated, "
                    << fmt_seconds(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count())
                    << "\n";
      }
      const bool as_json = out_file.size() > 5 && out_file.substr(out_file.size() - 5) == ".json";
      write_file_atomic(out_file, as_json ? cost_table_json(rows, a, &m, tokens)
                                          : cost_table_csv(rows));
      if (!json_file.empty()) write_file_atomic(json_file, cost_table_json(rows, a, &m, tokens));
      if (!quiet) std::cerr << "dmx-sim model: wrote " << out_file << "\n";
      return 0;
    }

    if (*sweep) {
      const bool by_model = true;
      std::vector<Axis> axes;
      for (const auto& v : vary) axes.push_back(parse_vary(v));
      const std::string base = read_text(arch_file, "architecture config");
      load_arch(arch_file);  // validates the base
      if (by_model) load_model_config(config_file);
      format_list(wlist, "--wfmts");
      format_list(alist, "--afmts");
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
      fs::create_directories(fs::path(out_dir) / "points");
      const std::string self = fs::read_symlink("/proc/self/exe").string();
      struct Todo {
        size_t idx;
        fs::path dir;
      };
      std::vector<Todo> todo;
      std::vector<fs::path> dirs;
      for (size_t i = 0; i < points.size(); ++i) {
        std::string text = base, name;
        for (size_t a = 0; a < axes.size(); ++a) {
          text = override_arch_key(text, arch_file, axes[a].key, points[i][a]);
          name += (name.empty() ? "" : ",") + axes[a].key + "=" + points[i][a];
        }
        fs::path dir = fs::path(out_dir) / "points" / safe_name(name);
        fs::create_directories(dir);
        dirs.push_back(dir);
        if (fs::exists(dir / "table.csv")) continue;  // resumable: finished points stay
        write_file_atomic((dir / "arch.json").string(), text);
        todo.push_back({i, dir});
      }
      std::cerr << "dmx-sim sweep: " << points.size() << " points, " << todo.size()
                << " to run, " << jobs << " parallel\n";
      std::map<pid_t, Todo> running;
      size_t next = 0, done = 0;
      int failures = 0;
      while (next < todo.size() || !running.empty()) {
        while (next < todo.size() && int(running.size()) < std::max(1, jobs)) {
          const Todo& t = todo[next++];
          const std::string arch_path = (t.dir / "arch.json").string();
          const std::string table = (t.dir / "table.csv").string();
          const std::vector<std::string> args = {
              self,    "model", "--config", config_file, "--arch", arch_path, "--tokens",
              std::to_string(tokens), "--wfmts", wlist, "--afmts", alist, "-q", "-o", table};
          running[spawn(args)] = t;
        }
        int status = 0;
        pid_t pid = waitpid(-1, &status, 0);
        if (pid < 0) break;
        auto it = running.find(pid);
        if (it == running.end()) continue;
        ++done;
        const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (!ok) ++failures;
        std::cerr << "dmx-sim sweep: [" << done << "/" << todo.size() << "] "
                  << it->second.dir.filename().string() << (ok ? " done" : " FAILED") << "\n";
        running.erase(it);
      }
      if (failures) {
        std::cerr << "dmx-sim sweep: " << failures << " points failed; rerun to retry them\n";
        return 1;
      }
      // Summary: per point and format pair, totals over the table.
      std::ostringstream csv;
      csv << "version";
      for (const Axis& ax : axes) csv << ',' << ax.key;
      csv << ",wfmt,afmt,phase,seconds,cycles,dram_bytes,energy_pj\n";
      for (size_t i = 0; i < points.size(); ++i) {
        std::ifstream in(dirs[i] / "table.csv");
        std::string line;
        std::getline(in, line);
        std::vector<std::string> hdr;
        {
          std::stringstream hs(line);
          std::string h;
          while (std::getline(hs, h, ',')) hdr.push_back(h);
        }
        auto col = [&](const char* name) {
          for (size_t c = 0; c < hdr.size(); ++c)
            if (hdr[c] == name) return c;
          throw std::runtime_error((dirs[i] / "table.csv").string() + ": no column " + name);
        };
        const size_t cw = col("wfmt"), ca = col("afmt"), cs = col("seconds"), cc = col("cycles"),
                     cd = col("dram_bytes"), ce = col("energy_pj");
        const bool has_phase = by_model;
        const size_t cp = has_phase ? col("phase") : 0;
        std::map<std::tuple<std::string, std::string, std::string>, std::array<double, 4>> agg;
        while (std::getline(in, line)) {
          std::vector<std::string> f;
          std::stringstream ls(line);
          std::string x;
          while (std::getline(ls, x, ',')) f.push_back(x);
          if (f.size() < hdr.size()) continue;
          auto& s = agg[{f[cw], f[ca], has_phase ? f[cp] : "gemm"}];
          s[0] += std::stod(f[cs]);
          s[1] += std::stod(f[cc]);
          s[2] += std::stod(f[cd]);
          s[3] += std::stod(f[ce]);
        }
        for (const auto& [k, v] : agg) {
          csv << kCostTableVersion;
          for (const auto& pv : points[i]) csv << ',' << pv;
          csv.precision(10);
          csv << ',' << std::get<0>(k) << ',' << std::get<1>(k) << ',' << std::get<2>(k) << ','
              << v[0] << ',' << int64_t(v[1]) << ',' << int64_t(v[2]) << ',' << v[3] << '\n';
        }
      }
      const fs::path sweep_csv = fs::path(out_dir) / "sweep.csv";
      write_file_atomic(sweep_csv.string(), csv.str());
      // Plot: seconds against the first varied key, one line per (format pair, phase) of the
      // same-format pairs; other axes' values are folded into the line title.
      const size_t nkeys = axes.size();
      std::ostringstream gp;
      gp << "set terminal svg size 900,560 dynamic background rgb 'white'\n"
         << "set output '" << (fs::path(out_dir) / "sweep.svg").string() << "'\n"
         << "set datafile separator ','\nset key outside right\nset logscale y\n"
         << "set xlabel '" << axes[0].key << "'\nset ylabel 'seconds (sum over the table)'\n"
         << "set title 'dmx-sim sweep: " << fs::path(arch_file).filename().string() << "'\n";
      gp << "plot ";
      bool first = true;
      const std::vector<std::string> phases =
          by_model ? std::vector<std::string>{"prefill", "decode"} : std::vector<std::string>{"gemm"};
      for (MxFormat fmt : format_list(wlist, "--wfmts")) {
        bool in_a = false;
        for (MxFormat g : format_list(alist, "--afmts")) in_a |= g == fmt;
        if (!in_a) continue;
        for (const auto& ph : phases) {
          const std::string nm = format_name(fmt);
          gp << (first ? "" : ", \\\n     ") << "'" << sweep_csv.string() << "' using "
             << "(strcol(" << nkeys + 2 << ")eq'" << nm << "' && strcol(" << nkeys + 3 << ")eq'"
             << nm << "' && strcol(" << nkeys + 4 << ")eq'" << ph << "' ? $2 : NaN):"
             << nkeys + 5 << " skip 1 with linespoints title '" << nm << "/" << nm << " " << ph
             << "'";
          first = false;
        }
      }
      gp << "\n";
      const fs::path gp_path = fs::path(out_dir) / "plot.gp";
      write_file_atomic(gp_path.string(), gp.str());
      std::cerr << "dmx-sim sweep: wrote " << sweep_csv.string() << "\n";
      const std::string cmd = "gnuplot '" + gp_path.string() + "'";
      if (std::system(cmd.c_str()) != 0) {
        std::cerr << "dmx-sim sweep: plotting failed (is gnuplot installed?): " << cmd << "\n";
        return 1;
      }
      std::cerr << "dmx-sim sweep: wrote " << (fs::path(out_dir) / "sweep.svg").string()
                << " (plot command: " << cmd << ")\n";
      return 0;
    }
  } catch (const UsageError& e) {
    std::cerr << "dmx-sim: " << e.what() << "\n";
    return 2;
  } catch (const ConfigError& e) {
    std::cerr << "dmx-sim: " << e.what() << "\n";
    return 2;
  } catch (const std::exception& e) {
    std::cerr << "dmx-sim: error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
