// safetensors: mmap reader with full header validation, sharded index, atomic writer.
#include "dmx/quant/safetensors.h"

#include <dmx/json.h>
#include <dmx/util.h>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

namespace dmx::quant {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct DTypeInfo {
  DType dtype;
  const char* name;
  int bits;
};
constexpr std::array<DTypeInfo, 19> kDTypes = {{
    {DType::BOOL, "BOOL", 8},       {DType::U8, "U8", 8},           {DType::I8, "I8", 8},
    {DType::I16, "I16", 16},        {DType::U16, "U16", 16},        {DType::I32, "I32", 32},
    {DType::U32, "U32", 32},        {DType::I64, "I64", 64},        {DType::U64, "U64", 64},
    {DType::F16, "F16", 16},        {DType::BF16, "BF16", 16},      {DType::F32, "F32", 32},
    {DType::F64, "F64", 64},        {DType::F8_E4M3, "F8_E4M3", 8}, {DType::F8_E5M2, "F8_E5M2", 8},
    {DType::F8_E8M0, "F8_E8M0", 8}, {DType::F6_E2M3, "F6_E2M3", 6}, {DType::F6_E3M2, "F6_E3M2", 6},
    {DType::F4, "F4", 4},
}};

// The Python/Rust libraries refuse headers above 100 MB; so do we (a corrupt length would
// otherwise make us parse gigabytes).
constexpr uint64_t kMaxHeaderBytes = 100u << 20;

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw SafetensorsError(source + ": " + what);
}

std::string json_quoted(const std::string& s) { return json(s).dump(); }

// Reads a non-negative integer that fits in int64 from a JSON value; nullopt otherwise.
std::optional<uint64_t> as_u64(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    int64_t x = v.get<int64_t>();
    if (x >= 0) return static_cast<uint64_t>(x);
  }
  return std::nullopt;
}

}  // namespace

int dtype_bits(DType d) { return kDTypes[static_cast<size_t>(d)].bits; }
const char* dtype_name(DType d) { return kDTypes[static_cast<size_t>(d)].name; }
std::optional<DType> parse_dtype(std::string_view name) {
  for (const auto& i : kDTypes)
    if (name == i.name) return i.dtype;
  return std::nullopt;
}

int64_t TensorView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source) {
  if (size < 8)
    fail(source,
         "file is " + std::to_string(size) + " bytes, too short for the 8-byte header length");
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | bytes[i];
  if (header_len > size - 8)
    fail(source, "header length " + std::to_string(header_len) + " exceeds the file size " +
                     std::to_string(size));
  if (header_len > kMaxHeaderBytes)
    fail(source, "header length " + std::to_string(header_len) + " above the 100 MB limit");
  if (header_len < 2 || bytes[8] != '{') fail(source, "header does not start with a JSON object");
  const char* hbegin = reinterpret_cast<const char*>(bytes + 8);

  // Duplicate keys would silently replace each other in the parsed object (a tensor name, or a
  // field such as "dtype" inside one entry): reject them at every depth, as safetensors does.
  std::vector<std::set<std::string>> seen_keys;  // one set per open object
  std::string duplicate;
  json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      seen_keys.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!seen_keys.empty()) seen_keys.pop_back();
    } else if (event == json::parse_event_t::key && duplicate.empty() && !seen_keys.empty()) {
      auto k = parsed.get<std::string>();
      if (!seen_keys.back().insert(k).second) duplicate = k;
    }
    return true;
  };
  json header;
  try {
    header = json::parse(hbegin, hbegin + header_len, on_event);
  } catch (const json::exception& e) {
    fail(source, "header is not valid JSON (" + json_error_detail(e) + ")");
  }
  if (!header.is_object()) fail(source, "header is not a JSON object");
  if (!duplicate.empty()) fail(source, "header has the key " + json_quoted(duplicate) + " twice");

  SafetensorsHeader out;
  out.data_offset = 8 + static_cast<size_t>(header_len);
  const size_t data_size = size - out.data_offset;
  const uint8_t* data = bytes + out.data_offset;
  struct Range {
    uint64_t begin, end;
    size_t index;
  };
  std::vector<Range> ranges;

  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail(source, "__metadata__ is not an object");
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail(source, "__metadata__ value of " + json_quoted(m.key()) + " is not a string");
        out.metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string where = "tensor " + json_quoted(name);
    if (!v.is_object()) fail(source, where + " is not an object");
    for (auto f = v.begin(); f != v.end(); ++f)
      if (f.key() != "dtype" && f.key() != "shape" && f.key() != "data_offsets")
        fail(source, where + " has an unknown field " + json_quoted(f.key()));
    if (!v.contains("dtype") || !v["dtype"].is_string())
      fail(source, where + " has no string dtype");
    auto dtype = parse_dtype(v["dtype"].get<std::string>());
    if (!dtype) fail(source, where + " has an unknown dtype " + v["dtype"].dump());
    if (!v.contains("shape") || !v["shape"].is_array()) fail(source, where + " has no shape array");
    if (!v.contains("data_offsets") || !v["data_offsets"].is_array() ||
        v["data_offsets"].size() != 2)
      fail(source, where + " has no data_offsets [begin, end]");

    TensorView t;
    t.name = name;
    t.dtype = *dtype;
    unsigned __int128 numel = 1;
    // Every dimension and the product of the non-zero ones stay far inside int64 (LibTorch
    // computes strides and sizes in int64 even for an empty tensor).
    unsigned __int128 span = 1;
    if (v["shape"].size() > 8) fail(source, where + " has more than 8 dimensions");
    for (const json& d : v["shape"]) {
      auto n = as_u64(d);
      if (!n || *n > (uint64_t{1} << 40))
        fail(source, where + " has a bad shape entry " + d.dump() + " (at most 2^40)");
      t.shape.push_back(static_cast<int64_t>(*n));
      numel *= *n;
      span *= std::max<uint64_t>(*n, 1);
      if (span > (static_cast<unsigned __int128>(1) << 48))
        fail(source, where + " shape has more than 2^48 elements");
    }
    auto begin = as_u64(v["data_offsets"][0]);
    auto end = as_u64(v["data_offsets"][1]);
    if (!begin || !end) fail(source, where + " has non-integer data_offsets");
    if (*begin > *end)
      fail(source, where + " has data_offsets [" + std::to_string(*begin) + ", " +
                       std::to_string(*end) + "] with begin after end");
    if (*end > data_size)
      fail(source, where + " ends at byte " + std::to_string(*end) + " past the data section of " +
                       std::to_string(data_size) + " bytes");
    const unsigned __int128 bits = numel * static_cast<unsigned>(dtype_bits(*dtype));
    if (bits % 8 != 0)
      fail(source, where + " has " + std::to_string(static_cast<uint64_t>(numel)) + " " +
                       dtype_name(*dtype) + " elements, not a whole number of bytes");
    if (bits / 8 != *end - *begin)
      fail(source, where + " holds " + std::to_string(*end - *begin) + " bytes but " +
                       dtype_name(*dtype) + " x shape needs " +
                       std::to_string(static_cast<uint64_t>(bits / 8)));
    t.data = data + *begin;
    t.nbytes = static_cast<size_t>(*end - *begin);
    ranges.push_back({*begin, *end, out.tensors.size()});
    out.tensors.push_back(std::move(t));
  }

  // Contiguous, non-overlapping, covering the data section exactly.
  std::stable_sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  uint64_t pos = 0;
  for (const Range& r : ranges) {
    const std::string& name = out.tensors[r.index].name;
    if (r.begin < pos)
      fail(source, "tensor " + json_quoted(name) + " overlaps the previous tensor");
    if (r.begin > pos)
      fail(source, "gap of " + std::to_string(r.begin - pos) + " bytes before tensor " +
                       json_quoted(name) + " (tensors must be contiguous)");
    pos = r.end;
  }
  if (pos != data_size)
    fail(source, "data section has " + std::to_string(data_size - pos) +
                     " trailing bytes not covered by any tensor");
  std::vector<TensorView> sorted;
  sorted.reserve(ranges.size());
  for (const Range& r : ranges) sorted.push_back(std::move(out.tensors[r.index]));
  out.tensors = std::move(sorted);
  return out;
}

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  int fd = -1;
  try {
    fd = open_regular_file(path, "safetensors file");  // never blocks on a FIFO
  } catch (const InputFileError& e) {
    throw SafetensorsError(e.what());
  }
  struct stat st {};
  ::fstat(fd, &st);
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    map_ = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map_ == MAP_FAILED) {
      map_ = nullptr;
      ::close(fd);
      fail(path, std::string("cannot mmap (") + std::strerror(errno) + ")");
    }
  }
  ::close(fd);
  try {
    header_ = parse_safetensors(static_cast<const uint8_t*>(map_), size_, path);
  } catch (...) {
    if (map_) ::munmap(map_, size_);
    map_ = nullptr;
    throw;
  }
  for (size_t i = 0; i < header_.tensors.size(); ++i) index_[header_.tensors[i].name] = i;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_) ::munmap(map_, size_);
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
  auto it = index_.find(name);
  return it == index_.end() ? nullptr : &header_.tensors[it->second];
}

Checkpoint::Checkpoint(const std::string& path) {
  fs::path p(path);
  fs::path index_path;
  if (fs::is_directory(p)) {
    if (fs::exists(p / "model.safetensors.index.json")) {
      index_path = p / "model.safetensors.index.json";
    } else if (fs::exists(p / "model.safetensors")) {
      files_.push_back((p / "model.safetensors").string());
    } else {
      fail(path, "no model.safetensors or model.safetensors.index.json in the directory");
    }
  } else if (!fs::exists(p)) {
    fail(path, "does not exist");
  } else if (p.extension() == ".json") {
    index_path = p;
  } else {
    files_.push_back(p.string());
  }
  if (!index_path.empty()) {
    const std::string src = index_path.string();
    json index;
    try {
      index = read_json_file<SafetensorsError>(src, "safetensors index");
    } catch (const InputFileError& e) {
      throw SafetensorsError(e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
      fail(src, "no \"weight_map\" object");
    std::map<std::string, std::string> weight_map;
    std::set<std::string> shard_names;
    for (auto it = index["weight_map"].begin(); it != index["weight_map"].end(); ++it) {
      if (!it.value().is_string())
        fail(src, "weight_map entry " + json_quoted(it.key()) + " is not a string");
      std::string shard = it.value().get<std::string>();
      const bool control = std::any_of(shard.begin(), shard.end(),
                                       [](char ch) { return static_cast<unsigned char>(ch) < 0x20; });
      if (shard.empty() || shard.find('/') != std::string::npos || shard == "." ||
          shard == ".." || control)
        fail(src, "weight_map entry " + json_quoted(it.key()) + " names a bad shard " +
                      json_quoted(shard));
      weight_map[it.key()] = shard;
      shard_names.insert(shard);
    }
    std::map<std::string, size_t> shard_index;
    for (const auto& s : shard_names) {
      shard_index[s] = shards_.size();
      files_.push_back((index_path.parent_path() / s).string());
      shards_.push_back(std::make_unique<SafetensorsFile>(files_.back()));
    }
    for (const auto& [name, shard] : weight_map) {
      const SafetensorsFile& f = *shards_[shard_index[shard]];
      const TensorView* t = f.find(name);
      if (!t)
        fail(src, "tensor " + json_quoted(name) + " is mapped to " + shard + " which lacks it");
      tensors_[name] = t;
    }
    // A tensor stored in a shard but missing from the map would be silently ignored: refuse.
    for (const auto& f : shards_)
      for (const auto& t : f->tensors())
        if (!weight_map.count(t.name))
          fail(src, "tensor " + json_quoted(t.name) + " of " + f->path() + " is not in weight_map");
    return;
  }
  shards_.push_back(std::make_unique<SafetensorsFile>(files_.back()));
  for (const auto& t : shards_.back()->tensors()) tensors_[t.name] = &t;
}

std::vector<std::string> Checkpoint::names() const {
  std::vector<std::string> out;
  for (const auto& kv : tensors_) out.push_back(kv.first);
  return out;
}

const TensorView* Checkpoint::find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : it->second;
}

const TensorView& Checkpoint::at(const std::string& name) const {
  const TensorView* t = find(name);
  if (!t)
    fail(files_.empty() ? std::string("checkpoint") : files_.front(),
         "no tensor " + json_quoted(name));
  return *t;
}

void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<const TensorToWrite*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorToWrite* a, const TensorToWrite* b) { return a->name < b->name; });
  json header = json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  uint64_t offset = 0;
  for (const TensorToWrite* t : order) {
    if (t->name == "__metadata__" || header.contains(t->name))
      throw SafetensorsError(path + ": cannot write tensor name " + json_quoted(t->name) +
                             " twice");
    unsigned __int128 numel = 1;
    for (int64_t d : t->shape) {
      if (d < 0)
        throw SafetensorsError(path + ": tensor " + json_quoted(t->name) + " has a negative dim");
      numel *= static_cast<uint64_t>(d);
    }
    if (numel * static_cast<unsigned>(dtype_bits(t->dtype)) != t->nbytes * 8u)
      throw SafetensorsError(path + ": tensor " + json_quoted(t->name) + " has " +
                             std::to_string(t->nbytes) + " bytes, not dtype x shape");
    header[t->name] = {{"dtype", dtype_name(t->dtype)},
                       {"shape", t->shape},
                       {"data_offsets", {offset, offset + t->nbytes}}};
    offset += t->nbytes;
  }
  std::string h = header.dump();
  while (h.size() % 8 != 0) h.push_back(' ');
  std::string file;
  file.reserve(8 + h.size() + offset);
  uint64_t n = h.size();
  for (int i = 0; i < 8; ++i) file.push_back(static_cast<char>((n >> (8 * i)) & 0xFF));
  file += h;
  for (const TensorToWrite* t : order) file.append(static_cast<const char*>(t->data), t->nbytes);
  write_file_atomic(path, file);
}

}  // namespace dmx::quant
