// safetensors reader (memory-mapped, validated) and writer, independent of LibTorch.
//
// The reader hands out raw views into the mapped file; quant/include/dmx/quant/model.h turns them
// into tensors. Every malformed file raises SafetensorsError with a one-line message that names
// the file and the problem.
#pragma once

#include <dmx/util.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dmx::quant {

class SafetensorsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The dtypes of the safetensors format (incl. the 8/6/4-bit float ones of safetensors >= 0.5).
enum class DType : uint8_t {
  BOOL,
  U8,
  I8,
  I16,
  U16,
  I32,
  U32,
  I64,
  U64,
  F16,
  BF16,
  F32,
  F64,
  F8_E4M3,
  F8_E5M2,
  F8_E8M0,
  F6_E2M3,
  F6_E3M2,
  F4
};
int dtype_bits(DType d);
const char* dtype_name(DType d);  // the name used in the header, e.g. "BF16", "F8_E4M3"
std::optional<DType> parse_dtype(std::string_view name);

// One tensor of a file: a view into its bytes (valid while the owning file is open).
struct TensorView {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;
  size_t nbytes = 0;
  int64_t numel() const;
};

// A parsed, validated header: tensors in file order of their offsets.
struct SafetensorsHeader {
  std::vector<TensorView> tensors;  // data points into the buffer given to parse
  std::map<std::string, std::string> metadata;
  size_t data_offset = 0;  // 8 + header length
};

// Parses and validates a whole file image: header length within the file, JSON well-formed,
// entries well-typed, offsets in bounds, tensors contiguous and non-overlapping and covering the
// data section, byte sizes equal to dtype x shape. `source` names the file in error messages.
SafetensorsHeader parse_safetensors(const uint8_t* bytes, size_t size, const std::string& source);

// A memory-mapped safetensors file.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::vector<TensorView>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string>& metadata() const { return header_.metadata; }
  const TensorView* find(const std::string& name) const;

 private:
  std::string path_;
  void* map_ = nullptr;
  size_t size_ = 0;
  SafetensorsHeader header_;
  std::map<std::string, size_t> index_;
};

// A checkpoint: a single `model.safetensors`, or the shards listed by
// `model.safetensors.index.json` ("weight_map": tensor name -> shard file). `path` is the model
// directory, a .safetensors file, or an index .json file.
class Checkpoint {
 public:
  explicit Checkpoint(const std::string& path);
  std::vector<std::string> names() const;  // sorted
  const TensorView* find(const std::string& name) const;
  const TensorView& at(const std::string& name) const;  // throws SafetensorsError when absent
  const std::vector<std::string>& files() const { return files_; }

 private:
  std::vector<std::string> files_;
  std::vector<std::unique_ptr<SafetensorsFile>> shards_;
  std::map<std::string, const TensorView*> tensors_;
};

// A tensor to write: raw bytes in little-endian element order.
struct TensorToWrite {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const void* data = nullptr;
  size_t nbytes = 0;
};
// Writes a safetensors file (tensors sorted by name, as the Python library does; header padded
// with spaces to 8 bytes). Written to a temporary file then renamed: never half-written.
void write_safetensors(const std::string& path, const std::vector<TensorToWrite>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

// Writes `text` to `path` through a temporary file and a rename.
using ::dmx::write_file_atomic;  // dmx/util.h

}  // namespace dmx::quant
