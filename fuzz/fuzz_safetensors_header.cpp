// libFuzzer harness: the safetensors header (io/safetensors_header.hpp): length prefix, JSON table, dtypes, shapes and
// offsets with overflow checks. Every accepted entry must lie inside the data and have a consistent byte size.
#include <cxrl/io/safetensors_header.hpp>

#include "fuzz_common.hpp"

#include <cstdlib>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto h = cxrl::io::parse_safetensors_header(data, size, "fuzz.safetensors");
    for (const auto& [name, e] : h.entries) {
      unsigned __int128 bytes = e.element_size;
      for (auto d : e.shape) bytes *= d;
      if (bytes != e.end - e.begin || h.data_start + e.end > size) std::abort();  // an accepted entry must be consistent
    }
  } catch (const std::exception&) {
  }
  return 0;
}
