// Tokenizer throughput on a few MB of mixed English / code / digits / CJK text with the real
// Qwen3 and Llama 3 tokenizer.json files. Counters: MB/s and tokens/s.
//   dmx-bench-tokenizer [--tokenizer-dir DIR] [benchmark flags]
#include <benchmark/benchmark.h>

#include <cstring>
#include <string>

#include "dmx/quant/tokenizer.h"

namespace {

std::string g_dir = DMX_QUANT_TOKENIZERS_DEFAULT;

// ~4 MB of text in the WikiText-2 raw style, varied so the BPE cache does not see one word only.
const std::string& corpus() {
  static const std::string text = [] {
    std::string s;
    const char* parts[] = {
        " = Valkyria Chronicles III = \n \n Senjō no Valkyria 3 : Unrecorded Chronicles ( Japanese "
        ": "
        "戦場のヴァルキュリア3 , lit . Valkyria of the Battlefield 3 ) , commonly referred to as "
        "Valkyria "
        "Chronicles III outside Japan , is a tactical role @-@ playing video game .\n",
        "def f(x):\n    return x**2 + 1  # square\n",
        " The game began development in 2010 , carrying over a large portion of the work done on "
        "Valkyria Chronicles II . While it retained the standard features of the series , it also "
        "underwent multiple adjustments , such as making the game more forgiving for newcomers .\n",
    };
    for (int i = 0; s.size() < (4u << 20); ++i) {
      s += parts[i % 3];
      s += " item " + std::to_string(i * 7919 % 100003) + " word" + std::to_string(i % 997) + " \n";
    }
    return s;
  }();
  return text;
}

void BM_Encode(benchmark::State& state, const char* family) {
  const dmx::quant::Tokenizer tok =
      dmx::quant::Tokenizer::load(g_dir + "/" + family + "_tokenizer.json");
  const std::string& text = corpus();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  const double it = static_cast<double>(state.iterations());
  state.counters["MB/s"] = benchmark::Counter(it * text.size() / 1e6, benchmark::Counter::kIsRate);
  state.counters["tokens/s"] = benchmark::Counter(it * tokens, benchmark::Counter::kIsRate);
  state.counters["MB"] = text.size() / 1e6;
}
BENCHMARK_CAPTURE(BM_Encode, qwen3, "qwen3")->Unit(benchmark::kMillisecond)->UseRealTime();
BENCHMARK_CAPTURE(BM_Encode, llama3, "llama3")->Unit(benchmark::kMillisecond)->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::strcmp(argv[i], "--tokenizer-dir") == 0) {
      g_dir = argv[i + 1];
      for (int j = i; j + 2 <= argc; ++j) argv[j] = argv[j + 2];
      argc -= 2;
      break;
    }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 2;
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
