// dmx-train: trains a LlamaForCausalLM / Qwen3ForCausalLM (dmx/quant/model.h) from a Hugging Face
// config.json on a text corpus, on the CPU with LibTorch: AdamW, linear warmup + cosine decay,
// gradient-norm clipping, a fixed seed, and checkpoints it resumes from after a kill.
//
// Determinism: batch s is drawn from a generator seeded by (seed, s), never from a global RNG,
// so a run resumed from a checkpoint takes exactly the steps an uninterrupted run takes (same
// thread count: BLAS reductions depend on it).
#include <ATen/Parallel.h>
#include <dmx/cli.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "dmx/json.h"
#include "dmx/quant/config.h"
#include "dmx/quant/eval.h"
#include "dmx/quant/memory.h"
#include "dmx/quant/model.h"
#include "dmx/quant/safetensors.h"
#include "dmx/quant/threads.h"
#include "dmx/quant/tokenizer.h"
#include "dmx/quant/train_checkpoint.h"

namespace fs = std::filesystem;
using dmx::quant::CausalLM;

namespace {

struct Args {
  std::string config, tokenizer, train, valid, test, out, work;
  int64_t steps = 2000, batch = 16, seq = 128, warmup = 100, threads = 0;
  int64_t ckpt_every = 100, eval_every = 250, eval_windows = 32, log_every = 10;
  int64_t die_at_step = 0;
  double lr = 3e-3, min_lr_frac = 0.1, weight_decay = 0.1, beta1 = 0.9, beta2 = 0.95;
  double clip = 1.0, init_std = 0.02;
  uint64_t seed = 1;
  bool fresh = false;
};

using dmx::UsageError;  // exit 2 (dmx/util.h)

// Inputs are regular files only; a corpus may be large (the tokenizer holds it in memory anyway).
std::string read_file(const std::string& path, const char* what) {
  return dmx::read_regular_file(path, what, int64_t(16) << 30);
}

// Everything that changes the trajectory: a checkpoint only resumes a run with the same one.
std::string fingerprint(const Args& a, const std::string& config_json) {
  nlohmann::ordered_json j = {{"config", nlohmann::json::parse(config_json)},
                              {"tokenizer_bytes", read_file(a.tokenizer, "tokenizer").size()},
                              {"train_bytes", fs::file_size(a.train)},
                              {"steps", a.steps},
                              {"batch", a.batch},
                              {"seq", a.seq},
                              {"warmup", a.warmup},
                              {"threads", a.threads},
                              {"lr", a.lr},
                              {"min_lr_frac", a.min_lr_frac},
                              {"weight_decay", a.weight_decay},
                              {"beta1", a.beta1},
                              {"beta2", a.beta2},
                              {"clip", a.clip},
                              {"init_std", a.init_std},
                              {"seed", a.seed}};
  return j.dump();
}

double lr_at(const Args& a, int64_t step) {  // step counts from 1
  if (step <= a.warmup) return a.lr * static_cast<double>(step) / static_cast<double>(a.warmup);
  const double t = static_cast<double>(step - a.warmup) / std::max<int64_t>(1, a.steps - a.warmup);
  const double min_lr = a.lr * a.min_lr_frac;
  return min_lr + 0.5 * (a.lr - min_lr) * (1.0 + std::cos(M_PI * std::min(1.0, t)));
}

using LogRow = dmx::quant::TrainLogRow;

void write_log_csv(const std::string& path, const std::vector<LogRow>& rows) {
  std::string s = "step,lr,train_loss,grad_norm,val_loss\n";
  char buf[160];
  for (const LogRow& r : rows) {
    std::snprintf(buf, sizeof buf, "%lld,%.6g,%.6f,%.5f,", static_cast<long long>(r.step), r.lr,
                  r.loss, r.grad_norm);
    s += buf;
    if (!std::isnan(r.val_loss)) {
      std::snprintf(buf, sizeof buf, "%.6f", r.val_loss);
      s += buf;
    }
    s += "\n";
  }
  dmx::quant::write_file_atomic(path, s);
}

struct Checkpoint {
  int64_t step = 0;
  double seconds = 0;  // training wall time before this run
  std::vector<LogRow> log;
};

// The key LibTorch's optimizers file a parameter's state under (torch/optim/serialize.h).
std::string state_key(const torch::Tensor& p) {
  return c10::guts::to_string(p.unsafeGetTensorImpl());
}

void save_checkpoint(const std::string& path, const std::string& fp, const Checkpoint& ck,
                     const CausalLM& model, torch::optim::Optimizer& opt) {
  std::vector<torch::Tensor> keep;  // contiguous FP32 copies the writer reads from
  std::vector<dmx::quant::TrainTensor> tensors;
  for (const auto& [name, p] : model.named_parameters()) {
    dmx::quant::TrainTensor t;
    t.name = name;
    t.shape = p.sizes().vec();
    keep.push_back(p.detach().to(torch::kFloat).contiguous());
    t.param = keep.back().data_ptr<float>();
    const auto it = opt.state().find(state_key(p));
    if (it != opt.state().end()) {
      const auto& st = static_cast<const torch::optim::AdamWParamState&>(*it->second);
      keep.push_back(st.exp_avg().to(torch::kFloat).contiguous());
      t.exp_avg = keep.back().data_ptr<float>();
      keep.push_back(st.exp_avg_sq().to(torch::kFloat).contiguous());
      t.exp_avg_sq = keep.back().data_ptr<float>();
      t.adam_step = st.step();
    }
    tensors.push_back(std::move(t));
  }
  dmx::quant::write_train_checkpoint(path, fp, ck.step, ck.seconds, ck.log, tensors);
}

// Every field is validated by parse_train_checkpoint (fuzzed on its own); what depends on this
// model (names, shapes) is checked here before anything is copied.
Checkpoint load_checkpoint(const std::string& path, const std::string& fp, CausalLM& model,
                           torch::optim::Optimizer& opt) {
  const dmx::quant::SafetensorsFile file(path);
  dmx::quant::SafetensorsHeader header;  // the file's views (parse reads names, shapes, data)
  header.metadata = file.metadata();
  header.tensors = file.tensors();
  const dmx::quant::TrainCheckpoint saved = dmx::quant::parse_train_checkpoint(header, path);
  if (saved.fingerprint != fp)
    throw UsageError(path +
                     ": checkpoint of a run with other settings (pass --fresh to discard it)");
  const auto named = model.named_parameters();
  if (saved.params.size() != named.size())
    throw std::runtime_error(path + ": checkpoint holds " + std::to_string(saved.params.size()) +
                             " parameters, the model " + std::to_string(named.size()));
  auto as_tensor = [&](const dmx::quant::TensorView& v, const torch::Tensor& like) {
    torch::Tensor t = torch::empty(like.sizes(), torch::kFloat);
    std::memcpy(t.data_ptr<float>(), v.data, v.nbytes);
    return t.to(like.scalar_type());
  };
  for (const auto& [name, p] : named) {
    const auto it = saved.params.find(name);
    if (it == saved.params.end()) throw std::runtime_error(path + ": no tensor of " + name);
    if (it->second.param.shape != p.sizes().vec())
      throw std::runtime_error(path + ": tensor " + name + " has another shape");
  }
  torch::NoGradGuard no_grad;
  for (auto& [name, p] : named) {
    const dmx::quant::TrainParamState& s = saved.params.at(name);
    p.copy_(as_tensor(s.param, p));
    if (!s.has_adam_state) continue;
    auto st = std::make_unique<torch::optim::AdamWParamState>();
    st->step(s.adam_step);
    st->exp_avg(as_tensor(s.exp_avg, p));
    st->exp_avg_sq(as_tensor(s.exp_avg_sq, p));
    opt.state()[state_key(p)] = std::move(st);
  }
  Checkpoint ck;
  ck.step = saved.step;
  ck.seconds = saved.seconds;
  ck.log = saved.log;
  return ck;
}

std::vector<int32_t> tokens_of(const dmx::quant::Tokenizer& tok, const std::string& path) {
  std::vector<int32_t> ids = tok.encode(read_file(path, "text corpus"));
  return ids;
}

int run(const Args& a) {
  if (a.seq < 2) throw UsageError("--seq must be at least 2");
  if (a.warmup >= a.steps) throw UsageError("--warmup must be below --steps");
  const std::string config_json = read_file(a.config, "model config");
  const dmx::quant::ModelConfig cfg = dmx::quant::parse_config(config_json, a.config);
  const auto tok = dmx::quant::Tokenizer::load(a.tokenizer);
  if (tok.vocab_size() > cfg.vocab_size)
    throw UsageError(a.config + ": vocab_size " + std::to_string(cfg.vocab_size) +
                     " is below the tokenizer's " + std::to_string(tok.vocab_size()));
  const std::string work = a.work.empty() ? a.out + "/train-work" : a.work;
  fs::create_directories(work);
  fs::create_directories(a.out);
  const std::string ckpt_path = work + "/checkpoint.safetensors";
  // The thread count resolved from --threads (0: chosen from --batch x --seq) is what the
  // fingerprint and the logs record: a resumed run uses the same one.
  Args resolved = a;
  resolved.threads = dmx::quant::configure_threads(
                         a.threads, dmx::quant::thread_work_size(a.batch * a.seq, cfg.hidden_size))
                         .threads;
  const std::string fp = fingerprint(resolved, config_json);

  std::fprintf(stderr, "dmx-train: tokenizing %s\n", a.train.c_str());
  const std::vector<int32_t> train_ids = tokens_of(tok, a.train);
  const std::vector<int32_t> valid_ids =
      a.valid.empty() ? std::vector<int32_t>{} : tokens_of(tok, a.valid);
  const int64_t N = static_cast<int64_t>(train_ids.size());
  if (N <= a.seq)
    throw UsageError(a.train + ": " + std::to_string(N) + " tokens, not more than --seq");
  torch::Tensor train_t = torch::empty({N}, torch::kLong);
  std::copy(train_ids.begin(), train_ids.end(), train_t.data_ptr<int64_t>());

  dmx::quant::check_pass_fits(cfg, a.batch, a.seq, dmx::quant::Pass::Train, "training " + a.config);
  CausalLM model = CausalLM::random(cfg, a.seed, a.init_std, at::kFloat);
  model.set_requires_grad(true);
  std::vector<torch::Tensor> decay, no_decay, all;
  for (const auto& [name, t] : model.named_parameters()) {
    (t.dim() >= 2 ? decay : no_decay).push_back(t);
    all.push_back(t);
  }
  int64_t n_params = 0;
  for (const auto& t : all) n_params += t.numel();
  auto base = torch::optim::AdamWOptions(a.lr).betas({a.beta1, a.beta2}).eps(1e-8);
  std::vector<torch::optim::OptimizerParamGroup> groups;
  groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                 torch::optim::AdamWOptions(base).weight_decay(a.weight_decay)));
  groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                    torch::optim::AdamWOptions(base).weight_decay(0.0)));
  torch::optim::AdamW opt(groups, base);

  Checkpoint ck;
  if (!a.fresh && fs::exists(ckpt_path)) {
    ck = load_checkpoint(ckpt_path, fp, model, opt);
    std::fprintf(stderr, "dmx-train: resumed from %s at step %lld\n", ckpt_path.c_str(),
                 static_cast<long long>(ck.step));
  }
  std::fprintf(stderr,
               "dmx-train: %s, %lld parameters, %lld training tokens, %lld steps of %lld x %lld, "
               "%lld threads\n",
               cfg.architecture_name.c_str(), static_cast<long long>(n_params),
               static_cast<long long>(N), static_cast<long long>(a.steps),
               static_cast<long long>(a.batch), static_cast<long long>(a.seq),
               static_cast<long long>(resolved.threads));

  const torch::Tensor offsets = torch::arange(a.seq, torch::kLong).unsqueeze(0);
  auto t_run = std::chrono::steady_clock::now();
  auto t_last = t_run;
  int64_t steps_since_log = 0;
  double loss_acc = 0;
  const int64_t first_step = ck.step + 1;
  for (int64_t step = first_step; step <= a.steps; ++step) {
    at::Generator gen = at::detail::createCPUGenerator(a.seed * 0x9E3779B97F4A7C15ULL + step);
    torch::Tensor starts = at::randint(0, N - a.seq + 1, {a.batch}, gen, torch::kLong);
    torch::Tensor batch = train_t.index({starts.unsqueeze(1) + offsets});
    const double lr = lr_at(a, step);
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamWOptions&>(g.options()).lr(lr);
    opt.zero_grad();
    torch::Tensor loss = model.next_token_loss(batch);
    loss.backward();
    const double gnorm = torch::nn::utils::clip_grad_norm_(all, a.clip);
    opt.step();
    const double l = loss.item<double>();
    if (!std::isfinite(l))
      throw std::runtime_error("loss is not finite at step " + std::to_string(step));
    loss_acc += l;
    ++steps_since_log;
    LogRow row{step, lr, l, gnorm, std::nan("")};
    if (!valid_ids.empty() && (step % a.eval_every == 0 || step == a.steps)) {
      dmx::quant::PerplexityOptions po;
      po.seqlen = a.seq;
      po.max_windows = a.eval_windows;
      po.batch = 8;
      row.val_loss = dmx::quant::perplexity(model, valid_ids, po).mean_nll;
    }
    ck.log.push_back(row);
    if (step % a.log_every == 0 || step == a.steps || !std::isnan(row.val_loss)) {
      const auto now = std::chrono::steady_clock::now();
      const double dt = std::chrono::duration<double>(now - t_last).count();
      const double run_s = std::chrono::duration<double>(now - t_run).count();
      const double tps = steps_since_log * a.batch * a.seq / dt;
      const double eta = run_s / (step - first_step + 1) * (a.steps - step);
      std::fprintf(
          stderr, "step %lld/%lld  loss %.4f  lr %.2e  |g| %.3f  %.0f tok/s  eta %.0f s%s\n",
          static_cast<long long>(step), static_cast<long long>(a.steps), loss_acc / steps_since_log,
          lr, gnorm, tps, eta,
          std::isnan(row.val_loss) ? "" : ("  val_loss " + std::to_string(row.val_loss)).c_str());
      t_last = now;
      steps_since_log = 0;
      loss_acc = 0;
    }
    if (step % a.ckpt_every == 0 || step == a.steps) {
      Checkpoint out = ck;
      out.step = step;
      out.seconds = ck.seconds +
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
      save_checkpoint(ckpt_path, fp, out, model, opt);
      write_log_csv(a.out + "/loss.csv", ck.log);
    }
    if (step == a.die_at_step) std::raise(SIGKILL);  // test hook: die as a kill would
  }
  const double train_s =
      ck.seconds + std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count();
  const int64_t run_steps = a.steps - first_step + 1;

  model.save(a.out, at::kBFloat16);
  if (fs::absolute(a.tokenizer) != fs::absolute(a.out + "/tokenizer.json"))
    dmx::quant::write_file_atomic(a.out + "/tokenizer.json", read_file(a.tokenizer, "tokenizer"));
  write_log_csv(a.out + "/loss.csv", ck.log);

  // The numbers a user of the shipped files gets: reload the BF16 checkpoint as dmx-eval does.
  nlohmann::ordered_json summary = {
      {"architecture", cfg.architecture_name},
      {"parameters", n_params},
      {"training_tokens_in_corpus", N},
      {"steps", a.steps},
      {"batch", a.batch},
      {"seq", a.seq},
      {"tokens_seen", a.steps * a.batch * a.seq},
      {"threads", resolved.threads},
      {"train_seconds", train_s},
      {"tokens_per_second_this_run",
       run_steps > 0
           ? run_steps * a.batch * a.seq /
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t_run).count()
           : 0.0},
      {"final_train_loss", ck.log.empty() ? 0.0 : ck.log.back().loss}};
  const CausalLM shipped = CausalLM::load(a.out);
  for (const auto& [key, path] :
       {std::pair<std::string, std::string>{"valid", a.valid}, {"test", a.test}}) {
    if (path.empty()) continue;
    dmx::quant::PerplexityOptions po;
    po.seqlen = a.seq;
    po.batch = 8;
    const auto r = dmx::quant::perplexity_of_file(shipped, tok, path, po);
    summary[key] = {{"file", path},
                    {"seqlen", a.seq},
                    {"perplexity", r.perplexity},
                    {"mean_nll", r.mean_nll},
                    {"windows", r.windows}};
    std::fprintf(stderr, "dmx-train: %s perplexity %.4f (%lld windows of %lld)\n", key.c_str(),
                 r.perplexity, static_cast<long long>(r.windows), static_cast<long long>(a.seq));
  }
  dmx::write_json_atomic(a.out + "/train_summary.json", summary);
  std::fprintf(stderr, "dmx-train: wrote %s (%.0f s of training)\n", a.out.c_str(), train_s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dmx-train: train a Llama / Qwen3 causal LM from a config.json on the CPU"};
  Args a;
  app.add_option("--config", a.config, "Hugging Face config.json of the model")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--tokenizer", a.tokenizer, "tokenizer.json")
      ->required()
      ->check(CLI::ExistingFile);
  app.add_option("--train", a.train, "training text")->required()->check(CLI::ExistingFile);
  app.add_option("--valid", a.valid, "validation text (loss during training, final perplexity)")
      ->check(CLI::ExistingFile);
  app.add_option("--test", a.test, "test text (final perplexity)")->check(CLI::ExistingFile);
  app.add_option("--out", a.out, "output model folder")->required();
  app.add_option("--work", a.work, "checkpoint folder (default: OUT/train-work)");
  app.add_option("--steps", a.steps, "optimizer steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--batch", a.batch, "sequences per step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seq", a.seq, "tokens per sequence (also the eval window)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--lr", a.lr, "peak learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--min-lr-frac", a.min_lr_frac, "final lr as a fraction of the peak")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--warmup", a.warmup, "linear warmup steps")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--weight-decay", a.weight_decay, "AdamW decay of matrices (not norms)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  app.add_option("--beta1", a.beta1, "AdamW beta1")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--beta2", a.beta2, "AdamW beta2")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--clip", a.clip, "gradient-norm clip")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--init-std", a.init_std, "initial weight std")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--seed", a.seed, "seed of the init and of the batches")->capture_default_str();
  app.add_option("--threads", a.threads,
                 "compute threads, exactly (0: chosen from --batch x --seq, see quant/README.md)")
      ->capture_default_str()
      ->check(CLI::Range(int64_t{0}, int64_t{dmx::quant::kMaxThreads}));
  app.add_option("--checkpoint-every", a.ckpt_every, "steps between checkpoints")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--eval-every", a.eval_every, "steps between validation losses")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--eval-windows", a.eval_windows, "validation windows per evaluation")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_option("--log-every", a.log_every, "steps between progress lines")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  app.add_flag("--fresh", a.fresh, "ignore an existing checkpoint");
  app.add_option("--die-at-step", a.die_at_step, "test hook: SIGKILL this process after that step");
  if (const auto rc = dmx::parse_cli(app, "dmx-train", argc, argv)) return *rc;
  return dmx::run_tool("dmx-train", [&] { return run(a); });
}
