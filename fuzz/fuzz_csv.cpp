// libFuzzer harness: MIMIC-CXR-JPG's CSV tables (data/csv.hpp). Malformed rows are reported or thrown, never a crash.
#include <cxrl/data/csv.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    cxrl::data::IssueLog log;
    (void)cxrl::data::parse_csv(fuzz_text(data, size), "fuzz.csv", &log);
  } catch (const std::exception&) {
  }
  return 0;
}
