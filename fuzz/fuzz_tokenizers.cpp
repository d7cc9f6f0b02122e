// libFuzzer harness: CLIP's byte-level BPE (text/clip_tokenizer.hpp) and BERT's WordPiece (text/wordpiece.hpp) on
// arbitrary bytes, with the vocabularies the project ships.
#include <cxrl/text/clip_tokenizer.hpp>
#include <cxrl/text/wordpiece.hpp>

#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto clip = cxrl::text::ClipTokenizer::from_pretrained(std::string(CXRL_TEST_DATA) + "/clip_tokenizer");
  static const auto wp = [] {
    cxrl::text::WordPieceConfig c;
    c.do_lower_case = true;
    return cxrl::text::WordPieceTokenizer::from_file(std::string(CXRL_TEST_DATA) + "/wordpiece/vocab.txt", c);
  }();
  const auto text = fuzz_text(data, size);
  try {
    (void)clip.encode_padded(text);
  } catch (const std::exception&) {
  }
  try {
    (void)wp.encode_batch({text}, 128);
  } catch (const std::exception&) {
  }
  return 0;
}
