// The shared tool plumbing (util/): JSON parsing errors, atomic writes, progress lines, run_tool's
// exit codes. Expected values are written out by hand from the contracts in util/README.md.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "dmx/progress.h"
#include "dmx/util.h"
#ifdef DMX_TEST_JSON
#include "dmx/json.h"
#endif

namespace fs = std::filesystem;

namespace {

fs::path fresh_dir(const std::string& name) {
  const fs::path d =
      fs::temp_directory_path() / ("dmx_test_util_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct CustomError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace

#ifdef DMX_TEST_JSON
TEST(Json, ParseErrorNamesTheSourceInOneLineWithTheCallersType) {
  try {
    dmx::parse_json<CustomError>("{\"a\": [1, 2", "cfg.json");
    FAIL() << "no error";
  } catch (const CustomError& e) {
    const std::string msg = e.what();
    EXPECT_EQ(msg.rfind("cfg.json: not valid JSON (", 0), 0u) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
    EXPECT_EQ(msg.find("[json.exception"), std::string::npos) << msg;  // prefix stripped
    EXPECT_EQ(msg.back(), ')');
  }
  // A number beyond double's range is refused, not turned into infinity.
  EXPECT_THROW(dmx::parse_json("{\"x\": 1e400}", "big.json"), dmx::InputFileError);
  EXPECT_EQ(dmx::parse_json("{\"x\": [1, 2.5]}", "ok.json")["x"][1].get<double>(), 2.5);
}

TEST(Json, ReadJsonFileRefusesMissingAndNonRegularFiles) {
  const fs::path d = fresh_dir("read");
  EXPECT_THROW(dmx::read_json_file((d / "absent.json").string(), "settings"), dmx::InputFileError);
  EXPECT_THROW(dmx::read_json_file(d.string(), "settings"), dmx::InputFileError);  // a folder
  std::ofstream(d / "big.json") << "[" << std::string(100, ' ') << "]";
  try {
    dmx::read_json_file((d / "big.json").string(), "settings", 50);
    FAIL() << "no error";
  } catch (const dmx::InputFileError& e) {
    EXPECT_NE(std::string(e.what()).find("more than the 50 accepted"), std::string::npos);
  }
  EXPECT_TRUE(dmx::read_json_file((d / "big.json").string(), "settings").empty());
  fs::remove_all(d);
}

TEST(Json, WriteJsonAtomicWritesTheSuitesLayoutAndLeavesNoTemporary) {
  const fs::path d = fresh_dir("write");
  const fs::path p = d / "metrics.json";
  dmx::write_json_atomic(p.string(), nlohmann::json{{"a", 1}, {"b", {true, nullptr}}});
  EXPECT_EQ(slurp(p), "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ]\n}\n");
  // NaN has no JSON form: nlohmann writes null, and the file still parses.
  dmx::write_json_atomic(p.string(), nlohmann::json{{"x", std::nan("")}});
  EXPECT_TRUE(dmx::read_json_file(p.string(), "metrics")["x"].is_null());
  int entries = 0;
  for (const auto& e : fs::directory_iterator(d)) entries += e.path() != p;
  EXPECT_EQ(entries, 0) << "a temporary file was left beside the output";
  // An unwritable destination throws and creates nothing.
  EXPECT_THROW(dmx::write_json_atomic((d / "no" / "such" / "dir.json").string(), nlohmann::json{}),
               std::runtime_error);
  fs::remove_all(d);
}
#endif

TEST(Progress, PrintsEveryUpdateAtIntervalZeroWithCountsAndEta) {
  testing::internal::CaptureStderr();  // stderr becomes a file: line mode, not \r
  {
    dmx::ProgressLine p("dmx-x", "window", false, 0.0);
    p.update(1, 4, "loss 2.5");
    p.update(4, 4);
  }
  const std::string out = testing::internal::GetCapturedStderr();
  std::istringstream lines(out);
  std::string l1, l2, l3;
  ASSERT_TRUE(std::getline(lines, l1)) << out;
  ASSERT_TRUE(std::getline(lines, l2)) << out;
  EXPECT_FALSE(std::getline(lines, l3)) << out;
  EXPECT_EQ(l1.rfind("dmx-x: window 1/4 (", 0), 0u) << l1;
  EXPECT_NE(l1.find(", ETA "), std::string::npos) << l1;
  EXPECT_EQ(l1.substr(l1.size() - 10), ") loss 2.5") << l1;
  EXPECT_EQ(l2.rfind("dmx-x: window 4/4 (", 0), 0u) << l2;
  EXPECT_EQ(l2.find("ETA"), std::string::npos) << l2;  // finished: no estimate
}

TEST(Progress, ThrottlesIntermediateLinesButAlwaysPrintsTheLast) {
  testing::internal::CaptureStderr();
  {
    dmx::ProgressLine p("dmx-x", "step", false, 3600.0);
    for (int i = 1; i <= 100; ++i) p.update(i, 100);
  }
  const std::string out = testing::internal::GetCapturedStderr();
  // The first update prints (nothing was printed yet), the next 98 fall within the hour, the
  // last always prints.
  EXPECT_EQ(out.find("dmx-x: step 1/100 ("), 0u) << out;
  EXPECT_NE(out.find("step 100/100"), std::string::npos) << out;
  EXPECT_EQ(std::count(out.begin(), out.end(), '\n'), 2) << out;
}

TEST(Progress, QuietPrintsNothingAndUnknownTotalHasNoEta) {
  testing::internal::CaptureStderr();
  {
    dmx::ProgressLine q("dmx-x", "step", true, 0.0);
    q.update(5, 10);
    dmx::ProgressLine u("dmx-y", "merges", false, 0.0);
    u.update(7, 0);
  }
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(out.find("dmx-x"), std::string::npos) << out;
  EXPECT_EQ(out.rfind("dmx-y: merges 7 (", 0), 0u) << out;
  EXPECT_EQ(out.find("ETA"), std::string::npos) << out;
}

TEST(RunTool, MapsUsageErrorsTo2OtherErrorsTo1AndPrintsOneLine) {
  testing::internal::CaptureStderr();
  const int usage =
      dmx::run_tool("dmx-x", []() -> int { throw dmx::UsageError("--n: must be > 0"); });
  const int other =
      dmx::run_tool("dmx-x", []() -> int { throw std::runtime_error("f.bin: truncated\ntrace"); });
  const int fine = dmx::run_tool("dmx-x", [] { return 0; });
  const std::string out = testing::internal::GetCapturedStderr();
  EXPECT_EQ(usage, 2);
  EXPECT_EQ(other, 1);
  EXPECT_EQ(fine, 0);
  EXPECT_EQ(out, "dmx-x: error: --n: must be > 0\ndmx-x: error: f.bin: truncated\n");
}

TEST(StagedDirectory, CommitReplacesAndAbandonLeavesNothing) {
  const fs::path d = fresh_dir("staged");
  const fs::path out = d / "run";
  {
    dmx::StagedDirectory s(out.string());
    std::ofstream(fs::path(s.dir()) / "a.txt") << "first";
  }  // not committed
  EXPECT_FALSE(fs::exists(out));
  EXPECT_EQ(std::distance(fs::directory_iterator(d), fs::directory_iterator()), 0);
  {
    dmx::StagedDirectory s(out.string());
    std::ofstream(fs::path(s.dir()) / "a.txt") << "second";
    s.commit();
  }
  EXPECT_EQ(slurp(out / "a.txt"), "second");
  EXPECT_EQ(std::distance(fs::directory_iterator(d), fs::directory_iterator()), 1);
  fs::remove_all(d);
}
