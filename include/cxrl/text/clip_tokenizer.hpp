/// @file
/// @brief CLIP byte-level BPE tokenizer (openai/CLIP `simple_tokenizer.py`, transformers `CLIPTokenizer`).
///
/// Pipeline (the same for both references, see `tests/data/clip_tokenizer`):
///  1. text cleanup: a subset of `ftfy.fix_text` (see clean_text()), whitespace collapse, lowercase;
///  2. pre-tokenisation by the CLIP pattern
///     `<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+`,
///     implemented by hand over decoded code points (no std::regex: it does not know Unicode classes);
///  3. each piece → UTF-8 bytes → GPT-2 `bytes_to_unicode` symbols, last symbol suffixed with `</w>`;
///  4. BPE: repeatedly merge the adjacent pair with the lowest merge rank (all its occurrences);
///  5. symbols → ids through vocab.json; `<|startoftext|>` (49406) / `<|endoftext|>` (49407) wrap the content.
///
/// Stable Diffusion pipelines feed `encode_padded(text)`: bos + at most 75 content ids + eos, padded to 77
/// with the pad id 49407 (`<|endoftext|>`), as transformers `tokenizer(text, padding="max_length",
/// max_length=77, truncation=True)` does.
///
/// **Unicode limits.** The letter / number / space classes and the lowercase mapping below are tables for the
/// scripts that report texts use (Latin incl. Latin-1 / Extended-A/B / Extended Additional, Greek, Cyrillic,
/// Armenian, Hebrew, Arabic letters, CJK ideographs, kana, Hangul syllables; ASCII/Latin-1/super- and
/// subscript/Arabic-Indic/Devanagari/fullwidth/circled digits and number forms). Characters of other scripts
/// are classified as "other" (neither letter nor number), which can split words of such scripts differently
/// from Python's `regex` module. Lowercasing covers ASCII, Latin-1, Latin Extended-A, Greek and Cyrillic.
#pragma once

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cxrl::text {

// ---------------------------------------------------------------------------------------------------------
// UTF-8 and Unicode character classes
// ---------------------------------------------------------------------------------------------------------
namespace clip_unicode {

/// @brief Decodes UTF-8 into code points; malformed or truncated sequences become U+FFFD (one per bad byte),
/// like Python's `bytes.decode("utf-8", errors="replace")` for the common cases.
/// @param s UTF-8 text
inline std::u32string decode_utf8(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = 0;
    char32_t cp = 0;
    if (b0 < 0x80) { out.push_back(b0); ++i; continue; }
    if ((b0 & 0xE0) == 0xC0) { len = 2; cp = b0 & 0x1F; }
    else if ((b0 & 0xF0) == 0xE0) { len = 3; cp = b0 & 0x0F; }
    else if ((b0 & 0xF8) == 0xF0) { len = 4; cp = b0 & 0x07; }
    bool ok = len > 0 && i + len <= s.size();
    for (int k = 1; ok && k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if ((b & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (b & 0x3F);
    }
    // Reject overlong forms, surrogates and values beyond U+10FFFF.
    if (ok && ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
               (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF))
      ok = false;
    if (!ok) { out.push_back(0xFFFD); ++i; continue; }
    out.push_back(cp);
    i += static_cast<std::size_t>(len);
  }
  return out;
}

/// @brief Appends the UTF-8 encoding of @p cp to @p out.
/// @param out destination
/// @param cp code point (≤ U+10FFFF)
inline void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

/// @brief Encodes code points as UTF-8.
/// @param s code points
inline std::string encode_utf8(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t c : s) append_utf8(out, c);
  return out;
}

namespace detail {
struct Range {
  char32_t lo, hi;
};
template <std::size_t N>
constexpr bool in_ranges(const Range (&r)[N], char32_t c) {
  // Tables are sorted; they are short enough that a linear scan with early exit is fine.
  for (const auto& x : r) {
    if (c < x.lo) return false;
    if (c <= x.hi) return true;
  }
  return false;
}
// \p{L} (Lu, Ll, Lt, Lm, Lo) for the supported scripts.
inline constexpr Range kLetters[] = {
    {0x41, 0x5A},     {0x61, 0x7A},     {0xAA, 0xAA},     {0xB5, 0xB5},     {0xBA, 0xBA},
    {0xC0, 0xD6},     {0xD8, 0xF6},     {0xF8, 0x2C1},    {0x2C6, 0x2D1},   {0x2E0, 0x2E4},
    {0x2EC, 0x2EC},   {0x2EE, 0x2EE},   {0x370, 0x374},   {0x376, 0x377},   {0x37A, 0x37D},
    {0x37F, 0x37F},   {0x386, 0x386},   {0x388, 0x38A},   {0x38C, 0x38C},   {0x38E, 0x3A1},
    {0x3A3, 0x3F5},   {0x3F7, 0x481},   {0x48A, 0x52F},   {0x531, 0x556},   {0x559, 0x559},
    {0x560, 0x588},   {0x5D0, 0x5EA},   {0x5EF, 0x5F2},   {0x620, 0x64A},   {0x66E, 0x66F},
    {0x671, 0x6D3},   {0x6D5, 0x6D5},   {0x904, 0x939},   {0x1E00, 0x1F15}, {0x1F18, 0x1F1D},
    {0x1F20, 0x1F45}, {0x1F48, 0x1F4D}, {0x1F50, 0x1F57}, {0x1F59, 0x1F7D}, {0x1F80, 0x1FB4},
    {0x1FB6, 0x1FBC}, {0x1FC2, 0x1FC4}, {0x1FC6, 0x1FCC}, {0x1FD0, 0x1FD3}, {0x1FD6, 0x1FDB},
    {0x1FE0, 0x1FEC}, {0x1FF2, 0x1FF4}, {0x1FF6, 0x1FFC}, {0x2071, 0x2071}, {0x207F, 0x207F},
    {0x2090, 0x209C}, {0x3041, 0x3096}, {0x309D, 0x309F}, {0x30A1, 0x30FA}, {0x30FC, 0x30FF},
    {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xAC00, 0xD7A3}, {0xFB00, 0xFB06}, {0xFF21, 0xFF3A},
    {0xFF41, 0xFF5A}, {0xFF66, 0xFFBE}};
// \p{N} (Nd, Nl, No) for the supported scripts.
inline constexpr Range kNumbers[] = {
    {0x30, 0x39},     {0xB2, 0xB3},     {0xB9, 0xB9},     {0xBC, 0xBE},     {0x660, 0x669},
    {0x6F0, 0x6F9},   {0x966, 0x96F},   {0x2070, 0x2070}, {0x2074, 0x2079}, {0x2080, 0x2089},
    {0x2150, 0x2182}, {0x2185, 0x2189}, {0x2460, 0x249B}, {0x24EA, 0x24FF}, {0x2776, 0x2793},
    {0x3007, 0x3007}, {0x3021, 0x3029}, {0xFF10, 0xFF19}};
// Python's str.isspace() / re's \s for str patterns.
inline constexpr Range kSpaces[] = {{0x09, 0x0D},     {0x1C, 0x20},     {0x85, 0x85},
                                    {0xA0, 0xA0},     {0x1680, 0x1680}, {0x2000, 0x200A},
                                    {0x2028, 0x2029}, {0x202F, 0x202F}, {0x205F, 0x205F},
                                    {0x3000, 0x3000}};
}  // namespace detail

/// @brief Unicode letter (\\p{L}) within the supported scripts (see the file comment).
/// @param c code point
constexpr bool is_letter(char32_t c) { return detail::in_ranges(detail::kLetters, c); }
/// @brief Unicode number (\\p{N}) within the supported ranges.
/// @param c code point
constexpr bool is_number(char32_t c) { return detail::in_ranges(detail::kNumbers, c); }
/// @brief Whitespace as Python's `str.isspace()` (and `re`'s `\s`) defines it.
/// @param c code point
constexpr bool is_space(char32_t c) { return detail::in_ranges(detail::kSpaces, c); }

/// @brief Simple lowercase mapping (Python `str.lower()`) for ASCII, Latin-1, Latin Extended-A, Greek and
/// Cyrillic; other code points are returned unchanged.
/// @param c code point
constexpr char32_t to_lower(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0xC0) return c;
  if ((c >= 0xC0 && c <= 0xDE) && c != 0xD7) return c + 32;  // À..Þ except ×
  if (c >= 0x100 && c <= 0x17F) {
    // Latin Extended-A: mostly (upper, lower) pairs at even/odd positions, with a shifted block
    // 0x139..0x148 and 0x179..0x17E (odd upper, even lower); 0x130 İ → i̇ is a two-code-point lowering
    // in Python that is approximated by 'i'; 0x178 Ÿ → ÿ.
    if (c == 0x130) return 'i';
    if (c == 0x178) return 0xFF;
    if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E)) return (c % 2 == 1) ? c + 1 : c;
    if (c == 0x131 || c == 0x138 || c == 0x149 || c == 0x17F) return c;
    return (c % 2 == 0) ? c + 1 : c;
  }
  if (c >= 0x391 && c <= 0x3AB && c != 0x3A2) return c + 32;  // Greek capitals
  if (c == 0x386) return 0x3AC;
  if (c >= 0x388 && c <= 0x38A) return c + 37;
  if (c == 0x38C) return 0x3CC;
  if (c == 0x38E || c == 0x38F) return c + 63;
  if (c >= 0x400 && c <= 0x40F) return c + 80;  // Ѐ..Џ
  if (c >= 0x410 && c <= 0x42F) return c + 32;  // А..Я
  if (((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF) || (c >= 0x4D0 && c <= 0x52F)) && c % 2 == 0)
    return c + 1;
  return c;
}

}  // namespace clip_unicode

// ---------------------------------------------------------------------------------------------------------
// Text cleanup
// ---------------------------------------------------------------------------------------------------------

/// @brief Which reference's cleanup order to follow (they differ only for texts with a literal `<` and an
/// HTML entity, where openai unescapes and ftfy alone does not).
enum class CleanFlavor {
  transformers,  ///< transformers 4.30 CLIPTokenizer: `whitespace_clean(ftfy.fix_text(t)).lower()`
  /// openai/CLIP: ftfy.fix_text → html.unescape ×2 → strip → whitespace_clean → lower. Limit: the entity
  /// decoder needs the closing ';' (Python's html.unescape also decodes a few legacy forms such as "&amp").
  openai,
};

namespace detail {

// HTML entities of the HTML5 table that clinical text plausibly contains (the full table has 2,231).
inline const std::unordered_map<std::string, char32_t>& html_entities() {
  static const std::unordered_map<std::string, char32_t> t = {
      {"amp", '&'},      {"lt", '<'},        {"gt", '>'},       {"quot", '"'},     {"apos", '\''},
      {"nbsp", 0xA0},    {"ndash", 0x2013},  {"mdash", 0x2014}, {"lsquo", 0x2018}, {"rsquo", 0x2019},
      {"sbquo", 0x201A}, {"ldquo", 0x201C},  {"rdquo", 0x201D}, {"bdquo", 0x201E}, {"hellip", 0x2026},
      {"deg", 0xB0},     {"plusmn", 0xB1},   {"times", 0xD7},   {"divide", 0xF7},  {"micro", 0xB5},
      {"middot", 0xB7},  {"le", 0x2264},     {"ge", 0x2265},    {"ne", 0x2260},    {"asymp", 0x2248},
      {"minus", 0x2212}, {"frac12", 0xBD},   {"frac14", 0xBC},  {"frac34", 0xBE},  {"sup2", 0xB2},
      {"sup3", 0xB3},    {"sup1", 0xB9},     {"copy", 0xA9},    {"reg", 0xAE},     {"trade", 0x2122},
      {"sect", 0xA7},    {"para", 0xB6},     {"bull", 0x2022},  {"larr", 0x2190},  {"rarr", 0x2192},
      {"uarr", 0x2191},  {"darr", 0x2193},   {"alpha", 0x3B1},  {"beta", 0x3B2},   {"gamma", 0x3B3},
      {"delta", 0x3B4},  {"mu", 0x3BC},      {"eacute", 0xE9},  {"Eacute", 0xC9}, {"egrave", 0xE8},
      {"aacute", 0xE1},  {"agrave", 0xE0},   {"ouml", 0xF6},    {"uuml", 0xFC},    {"auml", 0xE4},
      {"ccedil", 0xE7},  {"ntilde", 0xF1},   {"szlig", 0xDF},   {"shy", 0xAD},     {"laquo", 0xAB},
      {"raquo", 0xBB},   {"iexcl", 0xA1},    {"iquest", 0xBF},  {"cent", 0xA2},    {"pound", 0xA3},
      {"euro", 0x20AC},  {"yen", 0xA5}};
  return t;
}

// Decodes `&name;`, `&#123;` and `&#x7B;` (semicolon required, as ftfy's HTML_ENTITY_RE); unknown names stay.
inline std::u32string unescape_html(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') { out.push_back(s[i]); continue; }
    std::size_t j = i + 1;
    while (j < s.size() && j - i <= 26 && s[j] != ';' && s[j] < 0x80 &&
           (std::isalnum(static_cast<int>(s[j])) || s[j] == '#'))
      ++j;
    if (j >= s.size() || s[j] != ';' || j == i + 1) { out.push_back(s[i]); continue; }
    std::string name;
    for (std::size_t k = i + 1; k < j; ++k) name.push_back(static_cast<char>(s[k]));
    char32_t cp = 0;
    bool ok = false;
    if (name[0] == '#' && name.size() > 1) {
      const bool hex = name[1] == 'x' || name[1] == 'X';
      const std::string digits = name.substr(hex ? 2 : 1);
      if (!digits.empty() && digits.size() <= 7 &&
          std::all_of(digits.begin(), digits.end(), [&](char ch) { return hex ? std::isxdigit(ch) : std::isdigit(ch); })) {
        const unsigned long v = std::stoul(digits, nullptr, hex ? 16 : 10);
        if (v > 0 && v <= 0x10FFFF && !(v >= 0xD800 && v <= 0xDFFF)) { cp = static_cast<char32_t>(v); ok = true; }
      }
    } else {
      const auto& t = html_entities();
      auto it = t.find(name);
      if (it != t.end()) { cp = it->second; ok = true; }
    }
    if (!ok) { out.push_back(s[i]); continue; }
    out.push_back(cp);
    i = j;
  }
  return out;
}

// Canonical composition of a base letter with one combining mark (the Latin-1 precomposed letters).
inline char32_t compose(char32_t base, char32_t mark) {
  static const std::map<std::pair<char32_t, char32_t>, char32_t> table = [] {
    std::map<std::pair<char32_t, char32_t>, char32_t> m;
    auto add = [&](char32_t mk, std::u32string_view bases, std::u32string_view composed) {
      for (std::size_t k = 0; k < bases.size(); ++k) m[{bases[k], mk}] = composed[k];
    };
    add(0x300, U"AEIOUaeiou", U"ÀÈÌÒÙàèìòù");
    add(0x301, U"AEIOUYaeiouy", U"ÁÉÍÓÚÝáéíóúý");
    add(0x302, U"AEIOUaeiou", U"ÂÊÎÔÛâêîôû");
    add(0x303, U"ANOano", U"ÃÑÕãñõ");
    add(0x308, U"AEIOUaeiouy", U"ÄËÏÖÜäëïöüÿ");
    add(0x30A, U"Aa", U"Åå");
    add(0x327, U"Cc", U"Çç");
    return m;
  }();
  auto it = table.find({base, mark});
  return it == table.end() ? 0 : it->second;
}

}  // namespace detail

/// @brief The subset of `ftfy.fix_text` (ftfy 6.3, default config) that this library implements.
///
/// Implemented, in ftfy's order: HTML entity decoding when the text contains no `<` (`unescape_html="auto"`);
/// removal of terminal escapes (`ESC [ … letter`); line-break normalisation (CRLF, CR, U+0085, U+2028,
/// U+2029 → LF); removal of control characters (U+0000–0008, 000B, 000E–001F, 007F, 206A–206F,
/// FEFF, FFF9–FFFC); Latin ligatures (ﬀ ﬁ ﬂ ﬃ ﬄ ﬅ ﬆ Ĳ ĳ); full-width ASCII (U+FF01–FF5E → ASCII, U+3000 →
/// space); curly-quote uncurling (U+02BC, U+2018–201B → `'`; U+201C–201F → `"`); NFC composition of
/// a Latin base letter followed by one combining grave/acute/circumflex/tilde/diaeresis/ring/cedilla.
/// **Not implemented**: mojibake repair (`fix_encoding`, e.g. "cafÃ©" → "café"), C1-control and lossy-sequence
/// repair, surrogate fixing, full NFC. Texts that need those tokenise differently from the reference.
/// @param text UTF-8 input
inline std::u32string ftfy_fix_text(std::u32string text) {
  using std::u32string;
  if (text.find(U'<') == u32string::npos) text = detail::unescape_html(text);
  u32string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char32_t c = text[i];
    if (c == 0x1B && i + 1 < text.size() && text[i + 1] == '[') {  // terminal escape
      std::size_t j = i + 2;
      while (j < text.size() && ((text[j] >= '0' && text[j] <= '9') || text[j] == ';')) ++j;
      if (j < text.size() && ((text[j] >= 'A' && text[j] <= 'Z') || (text[j] >= 'a' && text[j] <= 'z'))) {
        i = j;
        continue;
      }
    }
    if (c == '\r') {  // CRLF or lone CR
      if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
      out.push_back('\n');
      continue;
    }
    if (c == 0x85 || c == 0x2028 || c == 0x2029) { out.push_back('\n'); continue; }
    if (c <= 0x08 || c == 0x0B || (c >= 0x0E && c <= 0x1F) || c == 0x7F || (c >= 0x206A && c <= 0x206F) ||
        c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFC))
      continue;
    switch (c) {
      case 0xFB00: out += U"ff"; continue;
      case 0xFB01: out += U"fi"; continue;
      case 0xFB02: out += U"fl"; continue;
      case 0xFB03: out += U"ffi"; continue;
      case 0xFB04: out += U"ffl"; continue;
      case 0xFB05: case 0xFB06: out += U"st"; continue;
      case 0x132: out += U"IJ"; continue;
      case 0x133: out += U"ij"; continue;
      default: break;
    }
    if (c >= 0xFF01 && c <= 0xFF5E) c = c - 0xFF01 + 0x21;
    else if (c == 0x3000) c = ' ';
    if (c == 0x2BC || (c >= 0x2018 && c <= 0x201B)) c = '\'';
    else if (c >= 0x201C && c <= 0x201F) c = '"';
    if (c >= 0x300 && c <= 0x36F && !out.empty()) {
      if (char32_t comp = detail::compose(out.back(), c)) { out.back() = comp; continue; }
    }
    out.push_back(c);
  }
  return out;
}

/// @brief Replaces every run of whitespace with one space and trims both ends (`re.sub(r"\s+", " ", t).strip()`).
/// @param s code points
inline std::u32string whitespace_clean(const std::u32string& s) {
  std::u32string out;
  out.reserve(s.size());
  bool pending = false;
  for (char32_t c : s) {
    if (clip_unicode::is_space(c)) { pending = !out.empty(); continue; }
    if (pending) out.push_back(' ');
    pending = false;
    out.push_back(c);
  }
  return out;
}

/// @brief The full cleanup applied before pre-tokenisation: ftfy subset, whitespace collapse, lowercase.
/// @param text UTF-8 input
/// @param flavor which reference's order to follow (identical unless the text has `<` and an entity)
inline std::u32string clean_text(std::string_view text, CleanFlavor flavor = CleanFlavor::transformers) {
  auto t = ftfy_fix_text(clip_unicode::decode_utf8(text));
  if (flavor == CleanFlavor::openai) t = detail::unescape_html(detail::unescape_html(t));
  t = whitespace_clean(t);
  for (auto& c : t) c = clip_unicode::to_lower(c);
  return t;
}

// ---------------------------------------------------------------------------------------------------------
// Pre-tokenisation
// ---------------------------------------------------------------------------------------------------------

/// @brief Splits cleaned text into the pieces the CLIP pattern finds (`re.findall` semantics: at each position
/// the first alternative that matches wins; positions where none matches, i.e. whitespace, are skipped).
/// @param s cleaned code points (lowercase, so the pattern's IGNORECASE flag has no further effect)
inline std::vector<std::u32string> pre_tokenize(const std::u32string& s) {
  static const std::u32string_view kSpecial[] = {U"<|startoftext|>", U"<|endoftext|>"};
  static const std::u32string_view kContractions[] = {U"'s", U"'t", U"'re", U"'ve", U"'m", U"'ll", U"'d"};
  using clip_unicode::is_letter, clip_unicode::is_number, clip_unicode::is_space;
  std::vector<std::u32string> out;
  std::size_t i = 0;
  const std::u32string_view sv(s);
  auto other = [&](char32_t c) { return !is_space(c) && !is_letter(c) && !is_number(c); };
  while (i < s.size()) {
    bool matched = false;
    for (auto lit : kSpecial)
      if (!matched && sv.substr(i, lit.size()) == lit) { out.emplace_back(lit); i += lit.size(); matched = true; }
    for (auto lit : kContractions)
      if (!matched && sv.substr(i, lit.size()) == lit) { out.emplace_back(lit); i += lit.size(); matched = true; }
    if (matched) continue;
    const char32_t c = s[i];
    std::size_t j = i + 1;
    if (is_letter(c)) {
      while (j < s.size() && is_letter(s[j])) ++j;
    } else if (is_number(c)) {
      // one number character per piece
    } else if (other(c)) {
      while (j < s.size() && other(s[j])) ++j;
    } else {
      ++i;  // whitespace: no alternative matches here
      continue;
    }
    out.emplace_back(s.substr(i, j - i));
    i = j;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Tokenizer
// ---------------------------------------------------------------------------------------------------------

/// @brief Errors in tokenizer files (vocab.json / merges.txt); the message names the file and the problem.
class TokenizerError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// @brief One tokenised text in the Stable Diffusion layout.
struct ClipEncoding {
  std::vector<int64_t> input_ids;       ///< bos, content (possibly truncated), eos, pads
  std::vector<int64_t> attention_mask;  ///< 1 for bos..eos, 0 for padding
  bool truncated = false;               ///< content was cut to fit max_length
};

/// @brief CLIP BPE tokenizer built from the Hugging Face `vocab.json` + `merges.txt` layout.
class ClipTokenizer {
 public:
  /// @brief Special token strings of CLIP.
  static constexpr std::string_view kBosToken = "<|startoftext|>";
  /// @brief End-of-text token string; also the unknown and the padding token in SD pipelines.
  static constexpr std::string_view kEosToken = "<|endoftext|>";

  /// @brief Loads `vocab.json` and `merges.txt`.
  /// @param vocab_json path of vocab.json (token string → id)
  /// @param merges_txt path of merges.txt (`#version` line, then one "a b" merge per line, in rank order)
  /// @param model_max_length context length used by encode_padded() (77 for CLIP)
  ClipTokenizer(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt,
                int64_t model_max_length = 77)
      : max_length_(model_max_length) {
    load_vocab(vocab_json);
    load_merges(merges_txt);
    init_byte_encoder();
    bos_id_ = special_id(kBosToken, vocab_json);
    eos_id_ = special_id(kEosToken, vocab_json);
    if (max_length_ < 2)
      throw std::invalid_argument("ClipTokenizer: model_max_length must be >= 2 (bos + eos), got " +
                                  std::to_string(max_length_));
  }

  /// @brief Loads a tokenizer folder (diffusers `tokenizer/` or a transformers save): vocab.json, merges.txt
  /// and, when present, `model_max_length` from tokenizer_config.json.
  /// @param dir folder path
  static ClipTokenizer from_pretrained(const std::filesystem::path& dir) {
    for (const char* f : {"vocab.json", "merges.txt"})
      if (!std::filesystem::exists(dir / f))
        throw TokenizerError("ClipTokenizer::from_pretrained: " + (dir / f).string() +
                             " not found (a CLIP tokenizer folder needs vocab.json and merges.txt)");
    int64_t max_len = 77;
    const auto cfg = dir / "tokenizer_config.json";
    if (std::filesystem::exists(cfg)) {
      std::ifstream in(cfg);
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(in);
      } catch (const std::exception& e) {
        throw TokenizerError(cfg.string() + ": invalid JSON: " + e.what());
      }
      // transformers writes a huge sentinel (1e30) when no limit is known; keep CLIP's 77 then.
      if (j.contains("model_max_length") && j["model_max_length"].is_number_integer()) {
        const auto v = j["model_max_length"].get<int64_t>();
        if (v >= 2 && v <= 1'000'000) max_len = v;
      }
    }
    return ClipTokenizer(dir / "vocab.json", dir / "merges.txt", max_len);
  }

  /// @brief BPE symbols of the content of @p text (openai `SimpleTokenizer` tokens, without bos/eos).
  /// @param text UTF-8 text
  /// @param flavor cleanup order (see CleanFlavor)
  std::vector<std::string> tokenize(std::string_view text, CleanFlavor flavor = CleanFlavor::transformers) const {
    std::vector<std::string> out;
    for (const auto& piece : pre_tokenize(clean_text(text, flavor))) {
      const std::string utf8 = clip_unicode::encode_utf8(piece);
      if (utf8 == kBosToken || utf8 == kEosToken) { out.push_back(utf8); continue; }
      std::string mapped;
      for (unsigned char b : utf8) mapped += byte_encoder_[b];
      for (auto& sym : bpe(mapped)) out.push_back(std::move(sym));
    }
    return out;
  }

  /// @brief Content ids of @p text, without bos/eos (openai `SimpleTokenizer.encode`).
  /// @param text UTF-8 text
  /// @param flavor cleanup order (see CleanFlavor)
  std::vector<int64_t> encode(std::string_view text, CleanFlavor flavor = CleanFlavor::transformers) const {
    std::vector<int64_t> ids;
    for (const auto& t : tokenize(text, flavor)) ids.push_back(token_to_id(t));
    return ids;
  }

  /// @brief `[bos] + content + [eos]` without padding or truncation (transformers `tokenizer(text).input_ids`).
  /// @param text UTF-8 text
  std::vector<int64_t> encode_with_special_tokens(std::string_view text) const {
    auto c = encode(text);
    std::vector<int64_t> ids;
    ids.reserve(c.size() + 2);
    ids.push_back(bos_id_);
    ids.insert(ids.end(), c.begin(), c.end());
    ids.push_back(eos_id_);
    return ids;
  }

  /// @brief What SD pipelines feed the text encoder: bos + content truncated to max_length − 2 + eos,
  /// padded to @p max_length with @p pad_id (transformers `padding="max_length", truncation=True`).
  /// @param text UTF-8 text
  /// @param max_length total length (≥ 2); −1 = model_max_length (77)
  /// @param pad_id padding id; −1 = `<|endoftext|>` (49407), as the SD tokenizer config sets
  ClipEncoding encode_padded(std::string_view text, int64_t max_length = -1, int64_t pad_id = -1) const {
    if (max_length < 0) max_length = max_length_;
    if (max_length < 2) throw std::invalid_argument("ClipTokenizer::encode_padded: max_length must be >= 2");
    if (pad_id < 0) pad_id = eos_id_;
    auto c = encode(text);
    ClipEncoding e;
    const auto keep = static_cast<std::size_t>(max_length - 2);
    if (c.size() > keep) { c.resize(keep); e.truncated = true; }
    e.input_ids.push_back(bos_id_);
    e.input_ids.insert(e.input_ids.end(), c.begin(), c.end());
    e.input_ids.push_back(eos_id_);
    e.attention_mask.assign(e.input_ids.size(), 1);
    e.input_ids.resize(static_cast<std::size_t>(max_length), pad_id);
    e.attention_mask.resize(static_cast<std::size_t>(max_length), 0);
    return e;
  }

  /// @brief openai `clip.tokenize(text, context_length, truncate=True)`: zero-padded; on truncation the
  /// last kept id is overwritten with eos. Uses the openai cleanup order.
  /// @param text UTF-8 text
  /// @param context_length total length; −1 = model_max_length
  std::vector<int64_t> openai_tokenize(std::string_view text, int64_t context_length = -1) const {
    if (context_length < 0) context_length = max_length_;
    if (context_length < 2) throw std::invalid_argument("ClipTokenizer::openai_tokenize: context_length must be >= 2");
    std::vector<int64_t> ids{bos_id_};
    auto c = encode(text, CleanFlavor::openai);
    ids.insert(ids.end(), c.begin(), c.end());
    ids.push_back(eos_id_);
    if (static_cast<int64_t>(ids.size()) > context_length) {
      ids.resize(static_cast<std::size_t>(context_length));
      ids.back() = eos_id_;
    }
    ids.resize(static_cast<std::size_t>(context_length), 0);
    return ids;
  }

  /// @brief Number of content tokens (no bos/eos) of @p text: the length used by the paper's "report
  /// impressions of 74 tokens or less" filter (CXRL, Sec. 4). A text passes when count_tokens(text) ≤ 74.
  /// @param text UTF-8 text
  int64_t count_tokens(std::string_view text) const { return static_cast<int64_t>(encode(text).size()); }

  /// @brief Id of a BPE symbol; unknown symbols map to `<|endoftext|>` (the unk token), as transformers does.
  /// @param token BPE symbol (byte-encoded, with `</w>` where it ends a word)
  int64_t token_to_id(const std::string& token) const {
    auto it = vocab_.find(token);
    return it == vocab_.end() ? eos_id_ : it->second;
  }
  /// @brief The symbol string of @p id.
  /// @param id token id in [0, vocab_size)
  const std::string& id_to_token(int64_t id) const {
    if (id < 0 || id >= static_cast<int64_t>(id_to_token_.size()) || id_to_token_[static_cast<std::size_t>(id)].empty())
      throw std::out_of_range("ClipTokenizer::id_to_token: id " + std::to_string(id) + " is not in the vocabulary");
    return id_to_token_[static_cast<std::size_t>(id)];
  }

  /// @brief `<|startoftext|>` id (49406 for CLIP).
  int64_t bos_id() const { return bos_id_; }
  /// @brief `<|endoftext|>` id (49407 for CLIP); also the SD padding id.
  int64_t eos_id() const { return eos_id_; }
  /// @brief Vocabulary size (49408 for CLIP).
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  /// @brief Number of merges loaded.
  int64_t num_merges() const { return static_cast<int64_t>(ranks_.size()); }
  /// @brief Default total length of encode_padded() (77).
  int64_t model_max_length() const { return max_length_; }

 private:
  void load_vocab(const std::filesystem::path& p) {
    std::ifstream in(p);
    if (!in) throw TokenizerError(p.string() + ": cannot open vocabulary file");
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(in);
    } catch (const std::exception& e) {
      throw TokenizerError(p.string() + ": invalid JSON: " + e.what());
    }
    if (!j.is_object() || j.empty())
      throw TokenizerError(p.string() + ": expected a non-empty JSON object {token: id}");
    for (auto it = j.begin(); it != j.end(); ++it) {
      if (!it.value().is_number_integer() || it.value().get<int64_t>() < 0)
        throw TokenizerError(p.string() + ": id of token '" + it.key() + "' is not a non-negative integer");
      const auto id = it.value().get<int64_t>();
      vocab_[it.key()] = id;
      if (static_cast<std::size_t>(id) >= id_to_token_.size()) id_to_token_.resize(static_cast<std::size_t>(id) + 1);
      id_to_token_[static_cast<std::size_t>(id)] = it.key();
    }
  }

  void load_merges(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    if (!in) throw TokenizerError(p.string() + ": cannot open merges file");
    std::string line;
    int64_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (lineno == 1 && line.rfind("#version", 0) == 0) continue;
      if (line.empty()) continue;
      const auto sp = line.find(' ');
      if (sp == std::string::npos || sp == 0 || sp + 1 >= line.size() || line.find(' ', sp + 1) != std::string::npos)
        throw TokenizerError(p.string() + ":" + std::to_string(lineno) + ": expected one merge 'a b', got '" + line + "'");
      // The first occurrence keeps the lowest rank (dict construction in the references keeps the last;
      // duplicates do not occur in CLIP's file).
      ranks_.emplace(line, static_cast<int64_t>(ranks_.size()));
    }
    if (ranks_.empty()) throw TokenizerError(p.string() + ": no merges found");
  }

  // GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the rest to U+0100 + k in byte order.
  void init_byte_encoder() {
    int n = 0;
    for (int b = 0; b < 256; ++b) {
      const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
      const char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + n++);
      byte_encoder_[b].clear();
      clip_unicode::append_utf8(byte_encoder_[b], cp);
    }
  }

  int64_t special_id(std::string_view tok, const std::filesystem::path& vocab_path) const {
    auto it = vocab_.find(std::string(tok));
    if (it == vocab_.end())
      throw TokenizerError(vocab_path.string() + ": special token '" + std::string(tok) + "' missing from the vocabulary");
    return it->second;
  }

  // BPE over one byte-encoded piece; returns the final symbols (the last carries "</w>"). No cache: words are
  // short, and a stateless tokenizer is safe to share between threads. Each merge rescans the word, so BPE is
  // quadratic in its length: a piece longer than kMaxBpeChars characters is encoded in consecutive chunks of that
  // many, which bounds the work per character (a 64 KB word took 6.4 s in one piece). No real text has such a
  // word; for every piece up to that length the result is the reference's.
  std::vector<std::string> bpe(const std::string& mapped) const {
    const auto chars = clip_unicode::decode_utf8(mapped);
    std::vector<std::string> out;
    for (std::size_t b = 0; b < chars.size(); b += kMaxBpeChars) {
      std::vector<std::string> word;
      for (std::size_t i = b; i < std::min(chars.size(), b + kMaxBpeChars); ++i) {
        std::string s;
        clip_unicode::append_utf8(s, chars[i]);
        word.push_back(std::move(s));
      }
      if (b + kMaxBpeChars >= chars.size()) word.back() += "</w>";
      for (auto& sym : merge(std::move(word))) out.push_back(std::move(sym));
    }
    return out;
  }

  std::vector<std::string> merge(std::vector<std::string> word) const {
    while (word.size() > 1) {
      int64_t best = std::numeric_limits<int64_t>::max();
      std::size_t best_i = 0;
      for (std::size_t i = 0; i + 1 < word.size(); ++i) {
        auto it = ranks_.find(word[i] + ' ' + word[i + 1]);
        if (it != ranks_.end() && it->second < best) { best = it->second; best_i = i; }
      }
      if (best == std::numeric_limits<int64_t>::max()) break;
      const std::string first = word[best_i], second = word[best_i + 1];
      std::vector<std::string> merged;
      merged.reserve(word.size());
      for (std::size_t i = 0; i < word.size();) {
        if (i + 1 < word.size() && word[i] == first && word[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(word[i]);
          ++i;
        }
      }
      word = std::move(merged);
    }
    return word;
  }

  static constexpr std::size_t kMaxBpeChars = 256;
  std::unordered_map<std::string, int64_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string, int64_t> ranks_;
  std::string byte_encoder_[256];
  int64_t bos_id_ = 0;
  int64_t eos_id_ = 0;
  int64_t max_length_ = 77;
};

}  // namespace cxrl::text
