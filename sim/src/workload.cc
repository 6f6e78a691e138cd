// Workloads as data: a decoder's operations from its config.json, or any network's GEMMs from a
// topology CSV. Shapes and byte counts only; costing is in table.cc.
#include <charconv>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "dmx/json.h"
#include "dmx/sim.h"

namespace dmx::sim {
namespace {

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Packed bytes of `elements` values in a format, padded to whole blocks.
int64_t packed_row_bytes(MxFormat f, int64_t elements) {
  return ceil_div(elements, kBlockSize) * block_bytes(f);
}

// Limits that every published dense decoder fits inside (Llama-3.1-405B: hidden 16384,
// intermediate 53248, 126 layers, 128 heads, vocab 128256), and that keep every product of
// shapes far inside int64.
struct Limit {
  const char* key;
  int64_t max;
};
constexpr Limit kLimits[] = {{"hidden_size", 1 << 17},      {"intermediate_size", 1 << 20},
                             {"num_hidden_layers", 4096},   {"num_attention_heads", 4096},
                             {"num_key_value_heads", 4096}, {"head_dim", 4096},
                             {"vocab_size", 1 << 23}};
int64_t limit_of(const char* key) {
  for (const Limit& l : kLimits)
    if (std::string(key) == l.key) return l.max;
  return int64_t(1) << 30;
}

}  // namespace

int64_t block_bytes(MxFormat f) { return int64_t(packed_bytes(f, kBlockSize)) + 1; }

const char* op_kind_name(OpKind k) {
  switch (k) {
    case OpKind::Linear:
      return "linear";
    case OpKind::LmHead:
      return "lm_head";
    case OpKind::AttnScore:
      return "attn_score";
    case OpKind::AttnValue:
      return "attn_value";
    case OpKind::Embedding:
      return "embedding";
    case OpKind::KvWrite:
      return "kv_write";
    case OpKind::Gemm:
      return "gemm";
  }
  return "?";
}

ModelShape parse_model_json(const std::string& text, const std::string& origin) {
  nlohmann::json j = parse_json<ConfigError>(text, origin);
  if (!j.is_object()) throw ConfigError(origin + ": a config.json must be a JSON object");
  if (j.contains("text_config") && !j.contains("hidden_size")) j = j["text_config"];
  if (!j.is_object()) throw ConfigError(origin + ": key 'text_config': must be a JSON object");
  ModelShape m;
  // Only dense Llama-family decoders are modelled: refuse the rest instead of costing them wrong.
  for (const char* moe : {"num_local_experts", "num_experts", "n_routed_experts",
                          "moe_intermediate_size", "num_experts_per_tok"})
    if (j.contains(moe) && !j[moe].is_null() && !(j[moe].is_number() && j[moe] == 0))
      throw ConfigError(origin + ": key '" + moe +
                        "': a mixture-of-experts model; dmx-sim costs dense decoders only "
                        "(Llama, SmolLM2, Qwen3)");
  static const std::set<std::string> kTypes = {"llama", "qwen3"};
  static const std::set<std::string> kArchs = {"LlamaForCausalLM", "Qwen3ForCausalLM"};
  if (j.contains("model_type")) {
    if (!j["model_type"].is_string())
      throw ConfigError(origin + ": key 'model_type': must be a string");
    m.name = j["model_type"].get<std::string>();
    if (!kTypes.count(m.name))
      throw ConfigError(origin + ": key 'model_type': '" + m.name +
                        "' is not supported (dense decoders: llama, qwen3)");
  }
  if (j.contains("architectures")) {
    const auto& a = j["architectures"];
    if (!a.is_array() || a.empty() || !a[0].is_string())
      throw ConfigError(origin + ": key 'architectures': must be a non-empty array of strings");
    m.architecture = a[0].get<std::string>();
    if (!kArchs.count(m.architecture))
      throw ConfigError(origin + ": key 'architectures': '" + m.architecture +
                        "' is not supported (LlamaForCausalLM, Qwen3ForCausalLM)");
  }
  if (m.name.empty() && m.architecture.empty())
    throw ConfigError(origin +
                      ": key 'model_type': missing (and no 'architectures'): cannot tell the "
                      "model family");
  if (m.name.empty()) m.name = m.architecture == "Qwen3ForCausalLM" ? "qwen3" : "llama";
  auto get = [&](const char* key, int64_t dflt, bool required) -> int64_t {
    if (!j.contains(key) || j[key].is_null()) {
      if (required) throw ConfigError(origin + ": key '" + key + "': missing");
      return dflt;
    }
    const auto& v = j[key];
    const int64_t hi = limit_of(key);
    if (!v.is_number_integer() || (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(hi)) ||
        v.get<int64_t>() < 1 || v.get<int64_t>() > hi)
      throw ConfigError(origin + ": key '" + key + "': must be an integer in [1, " +
                        std::to_string(hi) + "], got " + v.dump());
    return v.get<int64_t>();
  };
  m.hidden_size = get("hidden_size", 0, true);
  m.intermediate_size = get("intermediate_size", 0, true);
  m.num_hidden_layers = get("num_hidden_layers", 0, true);
  m.num_attention_heads = get("num_attention_heads", 0, true);
  m.num_key_value_heads = get("num_key_value_heads", m.num_attention_heads, false);
  m.vocab_size = get("vocab_size", 0, true);
  if (j.contains("tie_word_embeddings")) {
    if (!j["tie_word_embeddings"].is_boolean())
      throw ConfigError(origin + ": key 'tie_word_embeddings': must be true or false");
    m.tie_word_embeddings = j["tie_word_embeddings"].get<bool>();
  }
  if (!j.contains("head_dim") || j["head_dim"].is_null()) {
    if (m.hidden_size % m.num_attention_heads != 0)
      throw ConfigError(origin + ": key 'head_dim': missing and hidden_size (" +
                        std::to_string(m.hidden_size) + ") is not a multiple of " +
                        "num_attention_heads (" + std::to_string(m.num_attention_heads) + ")");
    m.head_dim = m.hidden_size / m.num_attention_heads;
  } else {
    m.head_dim = get("head_dim", 0, true);
  }
  if (m.num_attention_heads % m.num_key_value_heads != 0)
    throw ConfigError(origin + ": key 'num_key_value_heads': shape mismatch: " +
                      std::to_string(m.num_key_value_heads) + " does not divide " +
                      "num_attention_heads (" + std::to_string(m.num_attention_heads) + ")");
  return m;
}

ModelShape load_model_config(const std::string& path) {
  return parse_model_json(read_config_file(path, "model config"), path);
}

Workload decoder_workload(const ModelShape& m, const Phase& ph, const FixedFormats& fx,
                          int64_t causal_chunk) {
  if (m.hidden_size < 1 || m.num_hidden_layers < 1 || m.num_attention_heads < 1 ||
      m.num_key_value_heads < 1 || m.head_dim < 1 || m.vocab_size < 1 ||
      m.num_attention_heads % m.num_key_value_heads != 0)
    throw ConfigError(m.name + ": incomplete model shape");
  if (ph.kind == PhaseKind::Network)
    throw ConfigError("a decoder workload's phase is prefill or decode");
  if (ph.batch < 1 || ph.batch > 4096)
    throw ConfigError("batch " + std::to_string(ph.batch) + ": must be in [1, 4096]");
  if (ph.kind == PhaseKind::Prefill && (ph.tokens < 1 || ph.tokens > (1 << 20)))
    throw ConfigError("prefill tokens " + std::to_string(ph.tokens) + ": must be in [1, 1048576]");
  if (ph.kind == PhaseKind::Decode && (ph.context < 1 || ph.context > (1 << 22)))
    throw ConfigError("decode context " + std::to_string(ph.context) + ": must be in [1, 4194304]");
  if (ph.token_count() > (int64_t(1) << 24))
    throw ConfigError("batch x tokens = " + std::to_string(ph.token_count()) +
                      ": at most 16777216 rows per GEMM");
  if (causal_chunk < 1) throw ConfigError("causal chunk must be >= 1");
  Workload w;
  w.name = m.name;
  w.phase = ph;
  const int64_t h = m.hidden_size, d = m.head_dim, hkv = m.num_key_value_heads;
  const int64_t q = m.num_attention_heads * d, kv = hkv * d, ff = m.intermediate_size;
  const int64_t group = m.num_attention_heads / hkv;  // query heads sharing a KV head
  const int64_t rows = ph.token_count();              // tokens through the Linears
  const MxFormat embed_fmt = m.tie_word_embeddings ? fx.lm_head_weight : fx.embedding;

  WorkloadOp embed;
  embed.kind = OpKind::Embedding;
  embed.name = "embed_tokens";
  embed.module = "model.embed_tokens";
  embed.wfmt = embed.afmt = embed_fmt;
  embed.read_bytes = rows * packed_row_bytes(embed_fmt, h);
  w.ops.push_back(embed);

  for (int64_t l = 0; l < m.num_hidden_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    auto linear = [&](const char* name, const char* block, int64_t in, int64_t out) {
      WorkloadOp op;
      op.kind = OpKind::Linear;
      op.name = name;
      op.module = p + block + "." + name;
      op.layer = int(l);
      op.shape = {rows, out, in};
      w.ops.push_back(op);
    };
    auto attention = [&](OpKind kind, const std::string& name, GemmShape s, GemmPlacement pl) {
      WorkloadOp op;
      op.kind = kind;
      op.name = name;
      op.module = p + "self_attn";
      op.layer = int(l);
      op.shape = s;
      op.count = ph.batch * hkv;
      op.wfmt = fx.kv_cache;
      op.afmt = fx.attention;
      op.place = pl;
      w.ops.push_back(op);
    };
    linear("q_proj", "self_attn", h, q);
    linear("k_proj", "self_attn", h, kv);
    linear("v_proj", "self_attn", h, kv);
    WorkloadOp kvw;
    kvw.kind = OpKind::KvWrite;
    kvw.name = "kv_write";
    kvw.module = p + "self_attn";
    kvw.layer = int(l);
    kvw.wfmt = kvw.afmt = fx.kv_cache;
    kvw.write_bytes = 2 * rows * hkv * packed_row_bytes(fx.kv_cache, d);
    w.ops.push_back(kvw);
    // Scores stay on chip (fused attention): QK^T keeps C in SRAM, PV reads A from there.
    const GemmPlacement qk_place{true, false}, pv_place{false, true};
    if (ph.kind == PhaseKind::Prefill) {
      const int64_t c = std::min(causal_chunk, ph.tokens);
      for (int64_t q0 = 0; q0 < ph.tokens; q0 += c) {
        const int64_t qn = std::min(c, ph.tokens - q0), keys = q0 + qn;
        const std::string range = "[" + std::to_string(q0) + ":" + std::to_string(q0 + qn) + "]";
        attention(OpKind::AttnScore, "qk" + range, {group * qn, keys, d}, qk_place);
        attention(OpKind::AttnValue, "pv" + range, {group * qn, d, keys}, pv_place);
      }
    } else {
      attention(OpKind::AttnScore, "qk", {group, ph.context, d}, qk_place);
      attention(OpKind::AttnValue, "pv", {group, d, ph.context}, pv_place);
    }
    linear("o_proj", "self_attn", q, h);
    linear("gate_proj", "mlp", h, ff);
    linear("up_proj", "mlp", h, ff);
    linear("down_proj", "mlp", ff, h);
  }

  WorkloadOp head;
  head.kind = OpKind::LmHead;
  head.name = "lm_head";
  head.module = "lm_head";
  head.shape = {ph.batch, m.vocab_size, h};  // the next token's logits of each sequence
  head.wfmt = fx.lm_head_weight;
  head.afmt = fx.lm_head_act;
  w.ops.push_back(head);
  return w;
}

namespace {

std::string trim(const std::string& s) {
  size_t a = 0, b = s.size();
  while (a < b && (s[a] == ' ' || s[a] == '\t' || s[a] == '\r')) ++a;
  while (b > a && (s[b - 1] == ' ' || s[b - 1] == '\t' || s[b - 1] == '\r')) --b;
  return s.substr(a, b - a);
}

std::vector<std::string> split_csv(const std::string& line) {
  std::vector<std::string> out;
  std::stringstream ss(line);
  std::string x;
  while (std::getline(ss, x, ',')) out.push_back(trim(x));
  if (!line.empty() && line.back() == ',') out.push_back("");
  return out;
}

}  // namespace

Workload topology_workload(const std::string& text, const std::string& origin) {
  if (text.find('\0') != std::string::npos)
    throw ConfigError(origin + ": topology contains a NUL byte");
  std::stringstream in(text);
  std::string line;
  std::vector<std::string> hdr;
  int64_t lineno = 0;
  Workload w;
  w.name = origin;
  w.phase.kind = PhaseKind::Network;
  w.phase.tokens = 1;
  w.phase.batch = 1;
  int ccount = -1, cw = -1, ca = -1;
  auto fail = [&](const std::string& what) {
    throw ConfigError(origin + ":" + std::to_string(lineno) + ": " + what);
  };
  while (std::getline(in, line)) {
    ++lineno;
    const std::string t = trim(line);
    if (t.empty() || t[0] == '#') continue;
    std::vector<std::string> f = split_csv(t);
    if (hdr.empty()) {
      hdr = f;
      if (hdr.size() < 4 || hdr[0] != "name" || hdr[1] != "m" || hdr[2] != "n" || hdr[3] != "k")
        fail("the header must start with name,m,n,k (then optional count, wfmt, afmt)");
      std::set<std::string> seen;
      for (size_t c = 0; c < hdr.size(); ++c) {
        if (!seen.insert(hdr[c]).second) fail("column '" + hdr[c] + "' appears twice");
        if (c < 4) continue;
        if (hdr[c] == "count")
          ccount = int(c);
        else if (hdr[c] == "wfmt")
          cw = int(c);
        else if (hdr[c] == "afmt")
          ca = int(c);
        else
          fail("unknown column '" + hdr[c] + "' (known: name, m, n, k, count, wfmt, afmt)");
      }
      if ((cw < 0) != (ca < 0)) fail("columns wfmt and afmt go together");
      continue;
    }
    if (f.size() != hdr.size())
      fail(std::to_string(f.size()) + " fields, the header has " + std::to_string(hdr.size()));
    if (w.ops.size() >= 100000) fail("more than 100000 GEMMs");
    auto integer = [&](size_t c, int64_t hi) {
      int64_t v = 0;
      const std::string& s = f[c];
      auto r = std::from_chars(s.data(), s.data() + s.size(), v);
      if (s.empty() || r.ec != std::errc() || r.ptr != s.data() + s.size() || v < 1 || v > hi)
        fail("column '" + hdr[c] + "': '" + s + "' is not an integer in [1, " + std::to_string(hi) +
             "]");
      return v;
    };
    WorkloadOp op;
    op.kind = OpKind::Linear;
    op.name = f[0];
    if (op.name.empty()) fail("column 'name': empty");
    op.module = op.name;
    op.shape = {integer(1, 1 << 24), integer(2, 1 << 24), integer(3, 1 << 24)};
    if (ccount >= 0) op.count = integer(size_t(ccount), 1 << 20);
    if (cw >= 0) {
      const std::string& ws = f[size_t(cw)];
      const std::string& as = f[size_t(ca)];
      if (ws.empty() != as.empty()) fail("give both wfmt and afmt, or neither (assignable)");
      if (!ws.empty()) {
        auto wf = parse_format(ws), af = parse_format(as);
        if (!wf) fail("column 'wfmt': unknown MX format '" + ws + "'");
        if (!af) fail("column 'afmt': unknown MX format '" + as + "'");
        op.kind = OpKind::Gemm;
        op.wfmt = *wf;
        op.afmt = *af;
      }
    }
    w.ops.push_back(op);
  }
  if (hdr.empty()) throw ConfigError(origin + ": empty topology (expected a name,m,n,k header)");
  if (w.ops.empty()) throw ConfigError(origin + ": topology has a header but no GEMM rows");
  return w;
}

FormatAssignment parse_assignment_json(const std::string& text, const std::string& origin) {
  nlohmann::json j = parse_json<ConfigError>(text, origin);
  if (!j.is_object() || !j.contains("layers") || !j["layers"].is_array())
    throw ConfigError(origin + ": key 'layers': missing (an assignment.json of dmx-search)");
  FormatAssignment a;
  for (const auto& l : j["layers"]) {
    auto str = [&](const char* key) {
      if (!l.is_object() || !l.contains(key) || !l[key].is_string())
        throw ConfigError(origin + ": key 'layers[].'" + key + ": missing or not a string");
      return l[key].get<std::string>();
    };
    const std::string module = str("layer");
    auto wf = parse_format(str("weight_format")), af = parse_format(str("act_format"));
    if (!wf || !af)
      throw ConfigError(origin + ": " + module + ": unknown format " +
                        (!wf ? str("weight_format") : str("act_format")));
    if (!a.emplace(module, std::make_pair(*wf, *af)).second)
      throw ConfigError(origin + ": " + module + " is assigned twice");
  }
  if (a.empty()) throw ConfigError(origin + ": key 'layers': empty");
  return a;
}

FormatAssignment load_assignment(const std::string& path) {
  return parse_assignment_json(read_config_file(path, "assignment"), path);
}

Workload load_topology(const std::string& path) {
  return topology_workload(read_config_file(path, "topology"), path);
}

}  // namespace dmx::sim
