// dmx-train end to end on a tiny config: a run killed (SIGKILL) after a checkpoint and resumed
// ends bit-identical to an uninterrupted run; the loss falls; the logged learning rate follows
// warmup + cosine; settings that differ from the checkpoint's are refused.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace {

const std::string kRoot = DMX_SOURCE_DIR;
const std::string kTrain = DMX_TRAIN_BIN;

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Exit {
  bool killed = false;  // by SIGKILL (directly or as the shell's 137)
  int code = -1;
};

Exit run(const std::string& cmd) {
  const int st = std::system(cmd.c_str());
  Exit e;
  if (WIFSIGNALED(st)) {
    e.killed = WTERMSIG(st) == SIGKILL;
  } else if (WIFEXITED(st)) {
    e.code = WEXITSTATUS(st);
    e.killed = e.code == 128 + SIGKILL;
  }
  return e;
}

class ZooTrain : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) / ("dmx_zoo_train_" + std::to_string(::getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    std::ofstream(dir_ / "config.json") << R"({
      "architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 32,
      "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
      "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 4096, "rms_norm_eps": 1e-6,
      "rope_theta": 10000.0, "tie_word_embeddings": true})";
  }
  void TearDown() override {
    if (!HasFailure()) fs::remove_all(dir_);
  }
  // The tiny training command writing to out/ with checkpoints in work/.
  std::string command(const std::string& name, const std::string& extra = "") const {
    const fs::path d = dir_ / name;
    fs::create_directories(d);
    return "'" + kTrain + "' --config '" + (dir_ / "config.json").string() + "' --tokenizer '" +
           kRoot + "/models/tokenizer.json' --train '" + kRoot + "/data/wiki.valid.raw' --out '" +
           (d / "out").string() + "' --work '" + (d / "work").string() +
           "' --steps 12 --batch 4 --seq 32 --warmup 3 --lr 1e-2 --threads 1 --seed 7"
           " --checkpoint-every 4 --log-every 4 " +
           extra + " >> '" + (d / "log.txt").string() + "' 2>&1";
  }
  fs::path dir_;
};

std::vector<std::vector<double>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);  // header
  std::vector<std::vector<double>> rows;
  while (std::getline(in, line)) {
    std::vector<double> r;
    std::stringstream ss(line);
    std::string cell;
    while (std::getline(ss, cell, ',')) r.push_back(cell.empty() ? NAN : std::stod(cell));
    rows.push_back(r);
  }
  return rows;
}

TEST_F(ZooTrain, ResumeAfterKillMatchesUninterruptedRun) {
  ASSERT_EQ(run(command("straight")).code, 0) << read_file((dir_ / "straight/log.txt").string());

  // Killed right after step 6: the last checkpoint is step 4, steps 5-6 are lost and redone.
  const Exit k = run(command("killed", "--die-at-step 6"));
  ASSERT_TRUE(k.killed) << "exit " << k.code << "\n"
                        << read_file((dir_ / "killed/log.txt").string());
  EXPECT_FALSE(fs::exists(dir_ / "killed/out/model.safetensors"));
  ASSERT_EQ(run(command("killed")).code, 0) << read_file((dir_ / "killed/log.txt").string());
  const std::string log = read_file((dir_ / "killed/log.txt").string());
  EXPECT_NE(log.find("resumed from"), std::string::npos) << log;
  EXPECT_NE(log.find("at step 4"), std::string::npos) << log;

  const std::string a = read_file((dir_ / "straight/out/model.safetensors").string());
  const std::string b = read_file((dir_ / "killed/out/model.safetensors").string());
  ASSERT_GT(a.size(), 100000u);
  EXPECT_TRUE(a == b) << "resumed weights differ from the uninterrupted run's";
  EXPECT_EQ(read_file((dir_ / "straight/out/loss.csv").string()),
            read_file((dir_ / "killed/out/loss.csv").string()));
  EXPECT_TRUE(fs::exists(dir_ / "killed/out/tokenizer.json"));
  EXPECT_TRUE(fs::exists(dir_ / "killed/out/config.json"));
}

TEST_F(ZooTrain, LossFallsAndScheduleIsWarmupCosine) {
  ASSERT_EQ(run(command("s")).code, 0) << read_file((dir_ / "s/log.txt").string());
  const auto rows = read_csv((dir_ / "s/out/loss.csv").string());
  ASSERT_EQ(rows.size(), 12u);
  const double lr = 1e-2, min_lr = 1e-3;  // --min-lr-frac 0.1 by default
  for (size_t i = 0; i < rows.size(); ++i) {
    const int step = static_cast<int>(rows[i][0]);
    ASSERT_EQ(step, static_cast<int>(i) + 1);
    const double want =
        step <= 3 ? lr * step / 3.0
                  : min_lr + 0.5 * (lr - min_lr) * (1 + std::cos(M_PI * (step - 3) / 9.0));
    EXPECT_NEAR(rows[i][1], want, want * 1e-5) << "step " << step;
    EXPECT_LE(rows[i][3], 1e6);  // grad norm logged (pre-clip)
  }
  // Random init predicts ~uniformly over 4096 tokens: loss ~ ln 4096 = 8.32. Twelve steps at
  // lr 1e-2 learn the unigram statistics at least partly (this run: 8.33 -> 7.62).
  EXPECT_NEAR(rows.front()[2], std::log(4096.0), 0.3);
  EXPECT_LT(rows.back()[2], rows.front()[2] - 0.4);
}

TEST_F(ZooTrain, RefusesACheckpointOfOtherSettings) {
  ASSERT_TRUE(run(command("x", "--die-at-step 5")).killed);
  // Same work folder, another clip: the checkpoint must not be silently mixed in.
  const Exit e = run(command("x", "--clip 0.5"));
  EXPECT_EQ(e.code, 2);
  EXPECT_NE(read_file((dir_ / "x/log.txt").string()).find("other settings"), std::string::npos);
  EXPECT_EQ(run(command("x", "--clip 0.5 --fresh")).code, 0);
}

// A checkpoint that is not one (garbage bytes, or a safetensors file of another layout) is
// refused with one line naming it, and nothing is written.
TEST_F(ZooTrain, RefusesACorruptCheckpointWithOneLine) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  std::string model_file(8, '\0');
  model_file[0] = static_cast<char>(header.size());
  model_file += header + std::string(4, '\0');
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not a safetensors file at all", "checkpoint.safetensors: "},
      {model_file, "checkpoint.safetensors: not a dmx-train checkpoint (no metadata \"format\")"}};
  for (const auto& [bytes, expect] : cases) {
    fs::remove_all(dir_ / "c");
    fs::create_directories(dir_ / "c/work");
    std::ofstream(dir_ / "c/work/checkpoint.safetensors", std::ios::binary) << bytes;
    EXPECT_EQ(run(command("c")).code, 1);
    const std::string log = read_file((dir_ / "c/log.txt").string());
    const size_t at = log.find("dmx-train: error: ");
    ASSERT_NE(at, std::string::npos) << log;
    EXPECT_NE(log.find(expect, at), std::string::npos) << log;
    EXPECT_EQ(log.find('\n', at), log.size() - 1) << "one error line, last: " << log;
    EXPECT_FALSE(fs::exists(dir_ / "c/out/model.safetensors"));
  }
}

TEST_F(ZooTrain, UsageErrors) {
  EXPECT_EQ(run("'" + kTrain + "' --steps 3 > /dev/null 2>&1").code, 2);  // required options
  EXPECT_EQ(run(command("u", "--warmup 12")).code, 2);                    // warmup >= steps
  EXPECT_EQ(run("'" + kTrain + "' --help > /dev/null 2>&1").code, 0);
}

}  // namespace
