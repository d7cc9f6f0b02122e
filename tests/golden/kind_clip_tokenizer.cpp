// Golden kind "clip_tokenizer": CLIP BPE ids of every text in the cases file, against the openai and
// transformers references. Which fields and texts exist is read from the JSON.
#include "golden.hpp"

#include <cxrl/text/clip_tokenizer.hpp>

#include <sstream>

namespace {

std::string show(const std::vector<int64_t>& v) {
  std::ostringstream s;
  s << '[';
  for (std::size_t i = 0; i < v.size(); ++i) s << (i ? "," : "") << v[i];
  s << ']';
  return s.str();
}

}  // namespace

CXRL_GOLDEN_KIND("clip_tokenizer") {
  using cxrl::text::ClipTokenizer;
  using cxrl::text::CleanFlavor;
  const ClipTokenizer tok(ctx.file("vocab"), ctx.file("merges"));
  const auto cases = ctx.json("cases");
  if (cases.contains("special_tokens")) {
    const auto& sp = cases["special_tokens"];
    if (sp.contains("bos_id")) ctx.expect("bos_id", tok.bos_id() == sp["bos_id"].get<int64_t>());
    if (sp.contains("eos_id")) ctx.expect("eos_id", tok.eos_id() == sp["eos_id"].get<int64_t>());
    if (sp.contains("vocab_size")) ctx.expect("vocab_size", tok.vocab_size() == sp["vocab_size"].get<int64_t>());
    if (sp.contains("num_merges")) ctx.expect("num_merges", tok.num_merges() == sp["num_merges"].get<int64_t>());
  }
  const auto& items = cases.at("items");
  // One aggregated line per field; each mismatch is printed with its text.
  std::map<std::string, std::pair<int, int>> tally;  // field -> (checked, failed)
  auto compare = [&](const std::string& field, const nlohmann::json& item, const auto& actual) {
    if (!item.contains(field)) return;
    using T = std::decay_t<decltype(actual)>;
    const auto expected = item[field].get<T>();
    auto& t = tally[field];
    ++t.first;
    if (expected != actual) {
      ++t.second;
      std::ostringstream s;
      s << "    mismatch " << field << " for text " << item.value("index", -1) << ' '
        << nlohmann::json(item.at("text").get<std::string>()).dump();
      if constexpr (std::is_same_v<T, std::vector<int64_t>>) s << "\n      got      " << show(actual) << "\n      expected " << show(expected);
      std::printf("%s\n", s.str().c_str());
    }
  };
  for (const auto& item : items) {
    const auto text = item.at("text").get<std::string>();
    compare("openai_ids", item, tok.encode(text, CleanFlavor::openai));
    compare("openai_tokens", item, tok.tokenize(text, CleanFlavor::openai));
    compare("hf_input_ids", item, tok.encode_with_special_tokens(text));
    const auto enc = tok.encode_padded(text);
    compare("hf_input_ids_77", item, enc.input_ids);
    compare("hf_attention_mask_77", item, enc.attention_mask);
    compare("openai_clip_tokenize_77", item, tok.openai_tokenize(text));
    compare("num_content_tokens", item, tok.count_tokens(text));
    compare("truncated", item, enc.truncated);
  }
  for (const auto& [field, t] : tally)
    ctx.expect(field + " (" + std::to_string(t.first) + " texts)", t.second == 0,
               t.second ? std::to_string(t.second) + " mismatching" : std::string("all equal"));
  ctx.expect("cases found", !tally.empty() && items.size() > 0, std::to_string(items.size()) + " texts");
}
