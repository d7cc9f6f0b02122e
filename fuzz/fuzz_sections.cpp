// libFuzzer harness: MIMIC-CXR report sectioning (data/sections.hpp) and the CheXpert-style labeler (cxr/labeler.hpp)
// on the text it extracts.
#include <cxrl/cxr/labeler.hpp>
#include <cxrl/data/sections.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  try {
    const auto r = cxrl::data::parse_report(fuzz_text(data, size));
    (void)cxrl::cxr::default_labeler().label(r.main);
    (void)cxrl::cxr::default_labeler().label(fuzz_text(data, size));
  } catch (const std::exception&) {
  }
  return 0;
}
