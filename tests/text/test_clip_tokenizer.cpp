// CLIP BPE tokenizer: UTF-8 and Unicode classes, the ftfy subset, pre-tokenisation, SD padding/truncation,
// count_tokens and file errors. The exact ids of the 41 report texts are checked by the golden kind.
#include <cxrl/text/clip_tokenizer.hpp>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>

using namespace cxrl::text;

namespace {

const std::filesystem::path kDir = std::filesystem::path(CXRL_TEST_DATA) / "clip_tokenizer";

const ClipTokenizer& tok() {
  static const ClipTokenizer t = ClipTokenizer::from_pretrained(kDir);
  return t;
}

std::string utf8(std::u32string_view s) { return clip_unicode::encode_utf8(s); }

}  // namespace

TEST_CASE("utf8 decode/encode round trip and replacement of malformed bytes", "[text][clip_tokenizer]") {
  const std::string s = "a\xC3\xA9\xE2\x89\xA5\xF0\x9F\x98\x80";  // a é ≥ 😀
  const auto cps = clip_unicode::decode_utf8(s);
  REQUIRE(cps == std::u32string{U'a', 0xE9, 0x2265, 0x1F600});
  CHECK(clip_unicode::encode_utf8(cps) == s);
  // lone continuation byte, truncated 3-byte sequence, overlong '/'
  CHECK(clip_unicode::decode_utf8("\x80x") == std::u32string{0xFFFD, U'x'});
  CHECK(clip_unicode::decode_utf8("\xE2\x89") == std::u32string{0xFFFD, 0xFFFD});
  CHECK(clip_unicode::decode_utf8("\xC0\xAF") == std::u32string{0xFFFD, 0xFFFD});
}

TEST_CASE("unicode letter/number/space classes follow \\p{L}, \\p{N}, \\s", "[text][clip_tokenizer]") {
  using namespace clip_unicode;
  CHECK(is_letter(U'a'));
  CHECK(is_letter(0xE9));     // é
  CHECK(is_letter(0x3B1));    // α
  CHECK(is_letter(0x436));    // ж
  CHECK(is_letter(0x4E2D));   // 中
  CHECK_FALSE(is_letter(0xD7));    // ×
  CHECK_FALSE(is_letter(0x2265));  // ≥
  CHECK_FALSE(is_letter(U'1'));
  CHECK(is_number(U'7'));
  CHECK(is_number(0xB2));     // ²
  CHECK(is_number(0xBD));     // ½
  CHECK(is_number(0x0663));   // Arabic-Indic 3
  CHECK_FALSE(is_number(U'x'));
  CHECK(is_space(U'\t'));
  CHECK(is_space(0xA0));
  CHECK(is_space(0x3000));
  CHECK_FALSE(is_space(U'_'));
  CHECK(to_lower(U'Q') == U'q');
  CHECK(to_lower(0xC9) == 0xE9);   // É → é
  CHECK(to_lower(0xD7) == 0xD7);   // × unchanged
  CHECK(to_lower(0x394) == 0x3B4); // Δ → δ
  CHECK(to_lower(0x416) == 0x436); // Ж → ж
  CHECK(to_lower(0x141) == 0x142); // Ł → ł (shifted block)
  CHECK(to_lower(0x160) == 0x161); // Š → š
}

TEST_CASE("ftfy subset: entities, quotes, width, ligatures, line breaks, NFC", "[text][clip_tokenizer]") {
  auto clean = [](std::string_view s, CleanFlavor f = CleanFlavor::transformers) {
    return clip_unicode::encode_utf8(clean_text(s, f));
  };
  CHECK(clean("L &gt; R, 5&#37; &#x41;") == "l > r, 5% a");
  CHECK(clean("&amp;gt;") == "&gt;");              // one pass in ftfy
  CHECK(clean("&amp;gt;", CleanFlavor::openai) == ">");  // ftfy + html.unescape twice
  // ftfy leaves entities alone when the text has a literal '<'; openai unescapes anyway.
  CHECK(clean("a < b &gt; c") == "a < b &gt; c");
  CHECK(clean("a < b &gt; c", CleanFlavor::openai) == "a < b > c");
  CHECK(clean("&unknownentity; &") == "&unknownentity; &");
  CHECK(clean(utf8(U"patient\u2019s \u201Csupine\u201D")) == "patient's \"supine\"");
  CHECK(clean(utf8(U"\uFF30\uFF21 view\u3000\uFF11")) == "pa view 1");
  CHECK(clean(utf8(U"\uFB01nding")) == "finding");
  CHECK(clean("a\r\nb\rc\x01" "d") == "a b cd");
  CHECK(clean(utf8(U"cafe\u0301")) == utf8(U"caf\u00E9"));
  CHECK(clean("  MIXED\tCase \n\n Text  ") == "mixed case text");
  CHECK(clean("\x1b[31mred\x1b[0m") == "red");
}

TEST_CASE("pre-tokeniser reproduces the CLIP pattern", "[text][clip_tokenizer]") {
  auto pieces = [](std::u32string_view s) {
    std::vector<std::string> out;
    for (const auto& p : pre_tokenize(std::u32string(s))) out.push_back(clip_unicode::encode_utf8(p));
    return out;
  };
  using V = std::vector<std::string>;
  CHECK(pieces(U"there's 12.5cm...") == V{"there", "'s", "1", "2", ".", "5", "cm", "..."});
  CHECK(pieces(U"(chf). l>r -- ''s") == V{"(", "chf", ").", "l", ">", "r", "--", "''", "s"});
  CHECK(pieces(U"we'll it'd i'm you've they're isn't") ==
        V{"we", "'ll", "it", "'d", "i", "'m", "you", "'ve", "they", "'re", "isn", "'t"});
  CHECK(pieces(U"a<|endoftext|>b") == V{"a", "<|endoftext|>", "b"});
  CHECK(pieces(U"caf\u00E9 \u2265 2\u00B2") == V{utf8(U"caf\u00E9"), utf8(U"\u2265"), "2", utf8(U"\u00B2")});
  CHECK(pieces(U"") == V{});
}

TEST_CASE("BPE ids of known words and special tokens", "[text][clip_tokenizer]") {
  const auto& t = tok();
  CHECK(t.bos_id() == 49406);
  CHECK(t.eos_id() == 49407);
  CHECK(t.vocab_size() == 49408);
  CHECK(t.encode("a") == std::vector<int64_t>{320});
  CHECK(t.encode("There's") == std::vector<int64_t>{997, 568});
  CHECK(t.tokenize("Café") == std::vector<std::string>{"cafÃ©</w>"});
  CHECK(t.encode("finding") == std::vector<int64_t>{6002});
  // A special token written in the text maps to its id, as in both references.
  CHECK(t.encode("a <|endoftext|>") == std::vector<int64_t>{320, 49407});
  CHECK(t.id_to_token(320) == "a</w>");
  CHECK_THROWS_AS(t.id_to_token(49408), std::out_of_range);
}

TEST_CASE("SD padding, attention mask, truncation and count_tokens", "[text][clip_tokenizer]") {
  const auto& t = tok();
  const auto empty = t.encode_padded("");
  REQUIRE(empty.input_ids.size() == 77);
  CHECK(empty.input_ids[0] == 49406);
  CHECK(std::all_of(empty.input_ids.begin() + 1, empty.input_ids.end(), [](int64_t i) { return i == 49407; }));
  CHECK(empty.attention_mask[0] == 1);
  CHECK(empty.attention_mask[1] == 1);
  CHECK(empty.attention_mask[2] == 0);
  CHECK_FALSE(empty.truncated);

  std::string longtext;
  for (int i = 0; i < 100; ++i) longtext += "lung ";
  REQUIRE(t.count_tokens(longtext) == 100);
  const auto e = t.encode_padded(longtext);
  REQUIRE(e.input_ids.size() == 77);
  CHECK(e.truncated);
  CHECK(e.input_ids.front() == 49406);
  CHECK(e.input_ids.back() == 49407);
  CHECK(e.input_ids[75] == t.encode("lung")[0]);
  CHECK(std::all_of(e.attention_mask.begin(), e.attention_mask.end(), [](int64_t m) { return m == 1; }));
  const auto oa = t.openai_tokenize(longtext);
  CHECK(oa == e.input_ids);  // same when truncating (eos overwrites the last kept id)
  const auto oa_short = t.openai_tokenize("lung");
  CHECK(oa_short[2] == 49407);
  CHECK(oa_short[3] == 0);  // clip.tokenize pads with 0

  // The "<= 74 tokens" impression filter: 74 content tokens fit (bos + 74 + eos = 76 <= 77) untruncated.
  std::string t74;
  for (int i = 0; i < 74; ++i) t74 += "lung ";
  CHECK(t.count_tokens(t74) == 74);
  CHECK_FALSE(t.encode_padded(t74).truncated);
  CHECK(t.count_tokens("No acute cardiopulmonary process.") == 8);
  CHECK(t.encode_padded("x", 5, 0).input_ids == std::vector<int64_t>{49406, 343, 49407, 0, 0});
  CHECK_THROWS_AS(t.encode_padded("x", 1), std::invalid_argument);
}

TEST_CASE("tokenizer file errors name the file", "[text][clip_tokenizer]") {
  const auto tmp = std::filesystem::temp_directory_path() / "cxrl_clip_tok_err";
  std::filesystem::create_directories(tmp);
  try {
    ClipTokenizer::from_pretrained(tmp);
    FAIL("expected TokenizerError");
  } catch (const TokenizerError& e) {
    CHECK(std::string(e.what()).find("vocab.json") != std::string::npos);
  }
  {
    std::ofstream(tmp / "vocab.json") << R"({"a": 0, "b": 1, "a</w>": 2, "<|startoftext|>": 3, "<|endoftext|>": 4})";
    std::ofstream(tmp / "merges.txt") << "#version: 0.2\na b c\n";
  }
  try {
    ClipTokenizer::from_pretrained(tmp);
    FAIL("expected TokenizerError");
  } catch (const TokenizerError& e) {
    CHECK(std::string(e.what()).find("merges.txt:2") != std::string::npos);
  }
  std::ofstream(tmp / "merges.txt") << "#version: 0.2\na b\n";
  std::ofstream(tmp / "vocab.json") << R"({"a": 0, "<|startoftext|>": 3})";
  CHECK_THROWS_WITH(ClipTokenizer::from_pretrained(tmp), Catch::Contains("<|endoftext|>"));
  std::filesystem::remove_all(tmp);
}
