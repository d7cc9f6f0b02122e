// libFuzzer harness: gzip members (data/gzip.hpp: header, DEFLATE stream, CRC-32 and size trailer).
#include <cxrl/data/gzip.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    (void)cxrl::data::gunzip(fuzz_text(data, size), "fuzz.gz");
  } catch (const std::exception&) {
  }
  return 0;
}
