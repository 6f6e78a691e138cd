// dmx-sim sweep: a grid over architecture parameters, each point a `dmx-sim model` child
// process, resumable, across ranks when launched so (dmx/dist.h); sweep.csv and the plot.
#include "sim_tool.h"

extern char** environ;

namespace dmx::sim::tool {
namespace {

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

std::vector<std::map<std::string, std::string>> read_csv_maps(const fs::path& p) {
  std::istringstream in(read_regular_file(p.string(), "point totals", int64_t(64) << 20));
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

}  // namespace

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
  // Test hook (tests/quant/dist, "silent rank"): a rank that has joined and then never sends a
  // point. Freezing a rank from outside (SIGSTOP) can catch it in the middle of a store message,
  // which stalls the store's server for every rank; this hook is silent between messages.
  if (!root && std::getenv("DMX_TEST_SILENT_RANK"))
    for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
  size_t done = 0;
  int failures = 0;
  dmx::ProgressLine progress("dmx-sim sweep", "point", !root, 0.0);  // rank 0 counts them all
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
        progress.update(int64_t(done), int64_t(todo.size()),
                        dir.filename().string() + (ok ? " done" : " FAILED") + " (rank " +
                            std::to_string(j.value("rank", -1)) + ")");
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
      progress.update(int64_t(done), int64_t(todo.size()),
                      dir.filename().string() + (ok ? " done" : " FAILED"));
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

}  // namespace dmx::sim::tool
