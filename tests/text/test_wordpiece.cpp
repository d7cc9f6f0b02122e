// WordPiece tokenizer: BasicTokenizer rules and WordPiece edge cases on the bert-base-cased vocabulary
// (the golden kind checks every fixture text; these pin individual rules and the error paths).
#include <cxrl/text/wordpiece.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

namespace {
using cxrl::text::WordPieceConfig;
using cxrl::text::WordPieceTokenizer;
using Tokens = std::vector<std::string>;

const std::string kVocab = std::string(CXRL_TEST_DATA) + "/wordpiece/vocab.txt";

WordPieceTokenizer make(bool lower) {
  WordPieceConfig c;
  c.do_lower_case = lower;
  return WordPieceTokenizer::from_file(kVocab, c);
}
}  // namespace

TEST_CASE("WordPiece special ids and greedy longest-match", "[wordpiece]") {
  const auto tok = make(false);
  CHECK(tok.vocab_size() == 28996);
  CHECK(tok.pad_id() == 0);
  CHECK(tok.unk_id() == 100);
  CHECK(tok.cls_id() == 101);
  CHECK(tok.sep_id() == 102);
  CHECK(tok.token_to_id("Hello") == 8667);
  CHECK(tok.tokenize("cardiopulmonary") == Tokens{"card", "##io", "##pu", "##lm", "##ona", "##ry"});
  CHECK(tok.encode("Hello world").input_ids == std::vector<int64_t>{101, 8667, 1362, 102});
}

TEST_CASE("BasicTokenizer: cleaning, punctuation, CJK, accents, special tokens", "[wordpiece]") {
  const auto cased = make(false), lower = make(true);
  // NBSP is whitespace; zero-width space (Cf) and BEL (Cc) are removed.
  CHECK(cased.basic_tokenize("non\u00a0breaking") == Tokens{"non", "breaking"});
  CHECK(cased.basic_tokenize("zero\u200bwidth") == Tokens{"zerowidth"});
  CHECK(cased.basic_tokenize("control\u0007char") == Tokens{"controlchar"});
  // Every punctuation character (ASCII or category P) is its own token; symbols such as ° are not.
  CHECK(cased.basic_tokenize("L>R, 6\u20138 ~15\u00b0") == Tokens{"L", ">", "R", ",", "6", "\u2013", "8", "~", "15\u00b0"});
  // CJK ideographs are split into single characters.
  CHECK(cased.basic_tokenize("\u80ba\u708e") == Tokens{"\u80ba", "\u708e"});
  // Lower-casing strips accents (NFD, drop Mn); cased mode keeps them; decomposed input is NFC-composed.
  CHECK(lower.basic_tokenize("Na\u00efve CAF\u00c9") == Tokens{"naive", "cafe"});
  CHECK(cased.basic_tokenize("Na\u00efve") == Tokens{"Na\u00efve"});
  CHECK(cased.basic_tokenize("cafe\u0301") == Tokens{"caf\u00e9"});
  // Special tokens are never split, also next to text, and are matched case-sensitively.
  CHECK(lower.tokenize("[CLS]no[SEP]") == Tokens{"[CLS]", "no", "[SEP]"});
  CHECK(lower.tokenize("[cls]") == Tokens{"[", "c", "##ls", "]"});  // "cls", "cl" not in the vocab
}

TEST_CASE("WordPiece [UNK] rules, truncation and padding", "[wordpiece]") {
  const auto tok = make(false);
  CHECK(tok.tokenize("\U0001F600") == Tokens{"[UNK]"});
  CHECK(tok.tokenize(std::string(101, 'a')) == Tokens{"[UNK]"});
  CHECK(tok.tokenize(std::string(100, 'a')) != Tokens{"[UNK]"});
  auto e = tok.encode("one two three four five six", 5);
  CHECK(e.truncated);
  CHECK(e.num_wordpieces_untruncated == 6);
  CHECK(e.tokens == Tokens{"[CLS]", "one", "two", "three", "[SEP]"});
  CHECK_THROWS_AS(tok.encode("one two three four five six", 5, false), std::length_error);
  auto p = tok.encode("one", 6, true, true);
  CHECK(p.input_ids.size() == 6);
  CHECK(p.attention_mask == std::vector<int64_t>{1, 1, 1, 0, 0, 0});
  auto b = tok.encode_batch({"one", "one two three"}, 64, cxrl::text::Padding::longest);
  CHECK(b.batch == 2);
  CHECK(b.length == 5);
  CHECK(b.attention_mask == std::vector<int64_t>{1, 1, 1, 0, 0, 1, 1, 1, 1, 1});
  CHECK_THROWS_WITH(tok.encode_batch({"one", "one two"}, 64, cxrl::text::Padding::none), Catch::Contains("different lengths"));
}

TEST_CASE("WordPiece bad input: invalid UTF-8, missing vocabulary, missing special token", "[wordpiece]") {
  const auto tok = make(false);
  CHECK_THROWS_WITH(tok.tokenize("abc\xff"), Catch::Contains("invalid UTF-8 at byte 3"));
  CHECK_THROWS_WITH(tok.tokenize("\xe2\x82"), Catch::Contains("truncated"));
  CHECK_THROWS_WITH(WordPieceTokenizer::from_file("/nonexistent/vocab.txt"), Catch::Contains("/nonexistent/vocab.txt"));
  CHECK_THROWS_WITH(WordPieceTokenizer(std::vector<std::string>{"[PAD]", "a"}), Catch::Contains("special token '[UNK]'"));
  CHECK_THROWS_WITH(tok.encode("x", 1), Catch::Contains("max_length must be >= 2"));
  CHECK_THROWS_AS(tok.id_to_token(28996), std::out_of_range);
}
