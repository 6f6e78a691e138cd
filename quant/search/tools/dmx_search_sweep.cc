// dmx-search sweep: methods x budgets (and the uniform formats), reusing finished points of a
// killed sweep with the same settings; sweep.csv and the Pareto plot.
#include "search_tool.h"

namespace dmx::quant::search_tool {
namespace {

std::string csv_escape(const std::string& s) {
  return s.find_first_of(",\"") == std::string::npos ? s : "\"" + s + "\"";
}

// "" when the point at `dir` has to run, "=" + its metrics when a finished point of an earlier
// (killed) sweep with the same settings can be reused; throws for one made with other settings.
std::string reuse_decision(const Settings& s, const std::string& dir) {
  if (!fs::exists(dir + "/metrics.json")) return "";
  json m;
  try {
    m = read_json_file(dir + "/metrics.json", "metrics file");
  } catch (const std::exception& e) {
    throw std::runtime_error(first_line(e.what()) + "; delete it");
  }
  const json want = run_settings(s);
  json have = m.value("settings", json());
  // Records made while the simulator's workload keys were written for every cost model.
  if (have.is_object() && want.value("cost_model", "") != "sim")
    for (const char* k : {"phase", "generate", "context", "sim_batch"}) have.erase(k);
  if (have != want) {
    std::string what = "has no settings record";
    for (auto it = want.begin(); it != want.end(); ++it)
      if (have.is_object() && have.value(it.key(), json()) != it.value()) {
        what = "was made with " + it.key() + " = " + have.value(it.key(), json()).dump() +
               ", not " + it.value().dump();
        break;
      }
    throw std::runtime_error(dir + "/metrics.json: a finished point that " + what +
                             "; delete it or sweep into another --out");
  }
  return "=" + m.dump();
}

}  // namespace

int run_sweep(Context& c) {
  Settings& s = c.s;
  if (s.budgets.empty()) throw UsageError("sweep: --budgets needs at least one budget");
  if (s.uniform_formats.empty())
    for (MxFormat f : make_ladder(c.space, 3 - (c.space == FormatSpace::E2M)).formats)
      s.uniform_formats.push_back(format_name(f));
  if (c.root()) fs::create_directories(s.out);
  if (s.seeds.empty()) s.seeds.push_back(s.seed);
  for (size_t i = 0; i < s.seeds.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (s.seeds[i] == s.seeds[j])
        throw UsageError("--seeds: seed " + std::to_string(s.seeds[i]) + " is given twice");
  std::vector<json> rows;
  auto point = [&](const std::string& method, const std::string& budget, const std::string& fmt) {
    // Seed 0's points keep the names they had before sweeps ran several seeds.
    std::string tag = method + (fmt.empty() ? "" : "_" + fmt) +
                      (budget.empty() ? "" : "_" + budget) +
                      (s.seed == 0 || fmt.size() ? "" : "_seed" + std::to_string(s.seed));
    const std::string dir = s.out + "/runs/" + tag;
    // Rank 0 decides whether a finished point of an earlier (killed) sweep is reused and sends
    // the decision: "" (run it), "=" + its metrics (reuse), "!" + an error.
    std::string decision;
    if (c.root()) try {
        decision = reuse_decision(s, dir);
      } catch (const std::exception& e) {
        decision = std::string("!") + e.what();
      }
    c.group->broadcast(decision);
    if (!decision.empty() && decision[0] == '!') throw std::runtime_error(decision.substr(1));
    if (!decision.empty()) {
      if (c.root()) std::cerr << "dmx-search: sweep: reusing " << dir << "/metrics.json\n";
      rows.push_back(json::parse(decision.substr(1)));
      return;
    }
    json m = run_one(c, method, budget, dir, fmt);
    if (m.is_null()) throw std::runtime_error("sweep point " + tag + " stopped");
    rows.push_back(m);
  };
  // Seed by seed (a killed sweep leaves whole seeds finished); the uniform points do not depend
  // on the seed and run once, with the first.
  for (size_t k = 0; k < s.seeds.size(); ++k) {
    if (k > 0 || s.seeds[k] != s.seed) use_seed(c, s.seeds[k]);
    for (const auto& method : s.methods) {
      if (method == "uniform") {
        if (k == 0)
          for (const auto& f : s.uniform_formats) point("uniform", "", f);
      } else {
        for (const auto& b : s.budgets) point(method, b, "");
      }
    }
  }
  // Unquantized reference.
  {
    for (auto& l : wrap_decoder_linears(*c.model)) l->set_fixed(std::nullopt, std::nullopt);
    const double ppl = perplexity(*c.model, c.eval_tokens, eval_options(c)).perplexity;
    json m = {{"method", "fp32"},
              {"perplexity", ppl},
              {"achieved_bits", 32.0},
              {"achieved_bits_weighted", 32.0},
              {"achieved_cost", nullptr},
              {"cost_fraction", nullptr},
              {"budget", ""},
              {"wall_seconds", 0.0}};
    rows.push_back(m);
  }
  if (!c.root()) return 0;  // rank 0 writes the table and the plot
  const bool sim = s.cost_model == "sim";
  std::ostringstream csv;
  csv << "method,format,budget,perplexity,achieved_bits,achieved_bits_weighted,achieved_cost,"
         "cost_unit,cost_fraction,steps_per_s,wall_seconds,seed\n";
  auto num = [](const json& v) {
    if (v.is_null()) return std::string();
    std::ostringstream o;
    o.precision(10);
    o << v.get<double>();
    return o.str();
  };
  for (const auto& m : rows) {
    csv << csv_escape(m.value("method", "")) << "," << m.value("format", "") << ","
        << csv_escape(m.value("budget", "")) << "," << num(m["perplexity"]) << ","
        << num(m["achieved_bits"]) << "," << num(m["achieved_bits_weighted"]) << ","
        << num(m.value("achieved_cost", json())) << "," << m.value("cost_unit", "") << ","
        << num(m.value("cost_fraction", json())) << "," << num(m.value("steps_per_s", json()))
        << "," << num(m["wall_seconds"]) << ","
        << (m.contains("seed") && m.value("method", "") != "uniform" ? m["seed"].dump() : "")
        << "\n";
  }
  write_file_atomic(s.out + "/sweep.csv", csv.str());
  std::cerr << "dmx-search: wrote " << s.out << "/sweep.csv\n";
  // Pareto plot (gnuplot, SVG): perplexity against achieved bits or cost fraction.
  const std::string xcol = s.plot_x.empty() ? (sim ? "cost_fraction" : "achieved_bits") : s.plot_x;
  const int xi = xcol == "cost_fraction" ? 9 : xcol == "achieved_bits_weighted" ? 6 : 5;
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    std::ostringstream gp;
    const std::string svg = s.out + "/pareto.svg";
    gp << "set terminal svg size 800,520 dynamic noenhanced background rgb 'white'\nset output '"
       << svg << ".tmp'\nset datafile separator ','\nset key outside right\nset grid\n"
       << "set xlabel '"
       << (xi == 9   ? "achieved cost (fraction of the MXFP4..MXFP8 range, " + s.metric + ")"
           : xi == 6 ? "achieved bits (parameter-weighted)"
                     : "achieved bits")
       << "'\n"
       << "set ylabel 'perplexity'\nset title 'dMX Pareto: "
       << fs::path(s.model_dir).filename().string()
       << (sim ? " on " + fs::path(s.arch).stem().string() : std::string(" (bits)"))
       << (s.rotate != "none" ? ", rotated (" + s.rotate + ")" : std::string())
       << (s.seeds.size() > 1 ? ", " + std::to_string(s.seeds.size()) + " seeds" : std::string())
       << "'\nplot ";
    bool first = true;
    for (const auto& method : s.methods) {
      if (!first) gp << ", ";
      first = false;
      gp << "'" << s.out << "/sweep.csv' using (strcol(1) eq '" << method << "' ? $" << xi
         << " : 1/0):4 "
         << (method == "uniform"  ? "with points pt 7 ps 1.2"
             : s.seeds.size() > 1 ? "with points"  // one point per seed: no line between them
                                  : "with linespoints")
         << " title '" << method << "'";
    }
    // The uniform points named by their format, the FP32 model as a dashed line.
    if (std::find(s.methods.begin(), s.methods.end(), "uniform") != s.methods.end())
      gp << ", '" << s.out << "/sweep.csv' using (strcol(1) eq 'uniform' ? $" << xi
         << " : 1/0):4:2 with labels offset 0,0.8 notitle";
    for (const auto& m : rows)
      if (m.value("method", "") == "fp32")
        gp << ", " << num(m["perplexity"]) << " with lines dt 2 lc rgb 'black' title 'FP32'";
    gp << "\n";
    const std::string script = s.out + "/pareto.gp";
    write_file_atomic(script, gp.str());
    if (std::system(("gnuplot '" + script + "' 2>/dev/null").c_str()) == 0) {
      fs::rename(svg + ".tmp", svg);
      std::cerr << "dmx-search: wrote " << svg << "\n";
    } else {
      fs::remove(svg + ".tmp");
      std::cerr << "dmx-search: gnuplot failed; the CSV is written, the plot is not\n";
    }
  } else {
    std::cerr << "dmx-search: gnuplot not found; the CSV is written, the plot is not\n";
  }
  return 0;
}

}  // namespace dmx::quant::search_tool
