// wordpiece fixtures: exact ids/tokens/masks of the slow BertTokenizer for every text and setting.
#include "golden.hpp"

#include <cxrl/text/wordpiece.hpp>

namespace {

bool ends_with(const std::string& s, const std::string& p) { return s.size() >= p.size() && s.compare(s.size() - p.size(), p.size(), p) == 0; }

cxrl::text::WordPieceConfig settings(const nlohmann::json& s) {
  cxrl::text::WordPieceConfig c;
  c.do_lower_case = s.value("do_lower_case", c.do_lower_case);
  if (s.contains("strip_accents") && !s["strip_accents"].is_null()) c.strip_accents = s["strip_accents"].get<bool>();
  c.tokenize_chinese_chars = s.value("tokenize_chinese_chars", c.tokenize_chinese_chars);
  c.max_input_chars_per_word = s.value("max_input_chars_per_word", c.max_input_chars_per_word);
  c.unk_token = s.value("unk_token", c.unk_token);
  return c;
}

}  // namespace

CXRL_GOLDEN_KIND("wordpiece") {
  const auto cases = ctx.json("cases");
  if (!cases.contains("tokenizer_settings")) throw std::runtime_error(ctx.file("cases").string() + ": needs 'tokenizer_settings'");
  for (const auto& [setting, sj] : cases["tokenizer_settings"].items()) {
    const auto tok = cxrl::text::WordPieceTokenizer::from_file(ctx.file("vocab"), settings(sj));
    if (cases.contains("vocab_size"))
      ctx.expect(setting + ": vocab_size", tok.vocab_size() == cases["vocab_size"].get<int64_t>(), std::to_string(tok.vocab_size()));
    if (cases.contains("special_token_ids"))
      for (const auto& [t, id] : cases["special_token_ids"].items())
        ctx.expect(setting + ": id of " + t, tok.token_to_id(t) == id.get<int64_t>());
    // max_length: the length of a truncated encoding, else of the padded example, else 512.
    int64_t max_length = 512;
    std::vector<std::string> groups;
    for (const auto& [name, g] : cases.items())
      if (g.is_array() && (name == setting || ends_with(name, "_" + setting))) groups.push_back(name);
    for (const auto& name : groups)
      for (const auto& e : cases[name])
        if (e.value("truncated", false)) max_length = static_cast<int64_t>(e["input_ids"].size());
    for (const auto& [name, g] : cases.items())
      if (g.is_object() && g.contains("padding") && ends_with(name, "_" + setting) && g["input_ids"].size())
        max_length = static_cast<int64_t>(g["input_ids"][0].size());
    int ok = 0, total = 0;
    for (const auto& name : groups) {
      int i = 0;
      for (const auto& e : cases[name]) {
        const auto text = e["text"].get<std::string>();
        const auto enc = tok.encode(text, max_length);
        bool good = enc.input_ids == e["input_ids"].get<std::vector<int64_t>>();
        if (e.contains("tokens")) good = good && enc.tokens == e["tokens"].get<std::vector<std::string>>();
        if (e.contains("attention_mask")) good = good && enc.attention_mask == e["attention_mask"].get<std::vector<int64_t>>();
        if (e.contains("token_type_ids")) good = good && enc.token_type_ids == e["token_type_ids"].get<std::vector<int64_t>>();
        if (e.contains("truncated")) good = good && enc.truncated == e["truncated"].get<bool>();
        if (e.contains("num_wordpieces_untruncated"))
          good = good && enc.num_wordpieces_untruncated == e["num_wordpieces_untruncated"].get<int64_t>();
        if (e.contains("input_ids_untruncated"))
          good = good && tok.encode(text, 1 << 20).input_ids == e["input_ids_untruncated"].get<std::vector<int64_t>>();
        ctx.expect(setting + ": " + name + "[" + std::to_string(i) + "]", good, good ? "" : "text: " + text);
        ok += good;
        ++total;
        ++i;
      }
    }
    ctx.expect(setting + ": all texts", total > 0 && ok == total, std::to_string(ok) + "/" + std::to_string(total) + " exact");
    // Padded batch examples for this setting: "padding" + "texts_index" into the setting's main group.
    for (const auto& [name, g] : cases.items()) {
      if (!g.is_object() || !g.contains("padding") || !ends_with(name, "_" + setting)) continue;
      const auto pad = g["padding"].get<std::string>();
      if (pad != "max_length" && pad != "longest") throw std::runtime_error(name + ": unknown padding '" + pad + "'");
      std::vector<std::string> texts;
      for (const auto& i : g["texts_index"]) texts.push_back(cases[setting][i.get<size_t>()]["text"].get<std::string>());
      const auto b = tok.encode_batch(texts, max_length, pad == "max_length" ? cxrl::text::Padding::max_length : cxrl::text::Padding::longest);
      std::vector<int64_t> ids, mask, tt;
      for (const auto& row : g["input_ids"]) for (auto v : row) ids.push_back(v.get<int64_t>());
      for (const auto& row : g["attention_mask"]) for (auto v : row) mask.push_back(v.get<int64_t>());
      for (const auto& row : g["token_type_ids"]) for (auto v : row) tt.push_back(v.get<int64_t>());
      ctx.expect(name, b.input_ids == ids && b.attention_mask == mask && b.token_type_ids == tt,
                 std::to_string(b.batch) + "x" + std::to_string(b.length));
    }
  }
}
