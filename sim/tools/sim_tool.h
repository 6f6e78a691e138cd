// dmx-sim's pieces shared by its files: argument helpers, the workload options (also what a
// sweep point records), the sweep's options and entry point (dmx_sim_sweep.cc).
#pragma once

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

namespace dmx::sim::tool {

namespace fs = std::filesystem;

MxFormat format_arg(const std::string& s, const char* opt);
std::vector<std::string> split(const std::string& s, char sep);
std::vector<MxFormat> format_list(const std::string& s, const char* opt);
std::vector<int64_t> int_list(const std::string& s, const char* opt, int64_t lo, int64_t hi);
ArchConfig load_arch_with(const std::string& file, const std::string& dataflow);

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

struct SweepArgs {
  WorkloadArgs work;
  std::string arch, out_dir;
  std::vector<std::string> vary;
  int jobs = int(std::max(1u, std::thread::hardware_concurrency()));
  bool jobs_given = false;
  dist::LaunchFlags dist;
};

struct BuiltWorkloads {
  std::vector<Workload> list;
  std::optional<ModelShape> model;
};
BuiltWorkloads build_workloads(const WorkloadArgs& w);

int run_sweep_cmd(const SweepArgs& s);

}  // namespace dmx::sim::tool
