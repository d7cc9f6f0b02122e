/**
 * @file labeler.hpp
 * @brief A rule-based CheXpert-style radiology report labeler: report text → 14 CheXpert labels.
 *
 * The pipeline follows the Stanford CheXpert labeler (Irvin et al., AAAI 2019;
 * stanfordmlgroup/chexpert-labeler): normalise → split into sentences → find observation *mentions*
 * (phrase lists, minus *unmention* phrases) → classify each mention as negative / uncertain / positive
 * with negation and uncertainty *cues* → aggregate the mentions of a report into one label per
 * observation. The phrase and cue tables live in cxr/labeler_rules.hpp.
 *
 * ## Normalisation (reference loader/load.py `clean`)
 * Lower case; "and/or" → "or"; "x/y" between letters → "x or y"; ".." → "."; hyphens → spaces
 * ("air-space" = "air space"); "can not"/"can't" → "cannot"; "vs." → "vs"; white space collapsed.
 * Sentences end at ".", "?" or "!" (not at a decimal point).
 *
 * ## Cue scope (stands in for the reference's dependency-graph patterns)
 * The reference attaches negation and uncertainty to a mention through NegBio patterns over a
 * dependency parse. cxrl has no parser; a cue instead covers a token *scope* inside its sentence:
 * - **forward** (cue before the mention: "no effusion"): from the end of the cue to the first
 *   clause break; **backward** (cue after: "effusion has resolved"): from the clause start to the cue.
 * - Clause breaks: the sentence end; ";", ":", "but", "however", "although", "though", "whereas",
 *   "while", "except", "aside", "apart", "which", "with"; a "," or "and" followed by a clause opener
 *   ("the", "there", "a", "an", "this", "it", …); another cue (except the conjunctions "or"/"versus"),
 *   once the scope has already reached a mention ("no effusion, possible atelectasis" — but "no suspicious
 *   nodule" keeps "nodule" negated).
 * - Noun-scope cues ("no", "without", "normal", …) modify a noun phrase: their forward scope also
 *   ends at an auxiliary verb ("no effusion is seen and the heart …"), unless "to suggest|explain|
 *   indicate" follows in the clause ("no consolidation is seen to suggest pneumonia" — the
 *   reference's "there is no NN to suggest XXX" pattern); after a "," a severity word ("small",
 *   "moderate", "new", …) starts a new clause ("no pneumothorax, small left effusion").
 * - Backward scopes (except those of "or"/"versus") stop at a plain "," unless the cue's verb is plural
 *   ("heart size, mediastinal and hilar contours are normal"), and at an auxiliary verb once a mention has been passed
 *   ("effusion is seen and heart is normal").
 * - "or"/"versus" (the reference's conj:or / conj:versus rules) cover the conjuncts on both sides up to
 *   a clause break or a predicate word ("opacity, likely atelectasis or pneumonia" leaves "opacity").
 *
 * Per mention the cues are checked in the reference order: pre-negation uncertainty ("cannot
 * exclude", "not excluded", "no new"), then negation, then post-negation uncertainty; no cue = positive.
 * Then the phrase flags apply (labeler_rules.hpp: always-uncertain edema phrases, the
 * "stable/unchanged heart size" rule).
 *
 * ## Aggregation (reference stages/aggregate.py, exactly)
 * Per observation, over the report's mentions: one label → it; {0,−1} → −1 (also with 1 present);
 * {0,1} → 1; {−1,1} → 1; none → blank. A positive or uncertain "chf"/"heart failure" mention adds −1 to
 * Cardiomegaly. No Finding = 1 when no mention other than Support Devices (the "other finding" list
 * included) is positive or uncertain, otherwise blank.
 *
 * ## Known limits (no parser)
 * Scope is surface order, so comma splices without a clause opener ("no effusion, heart enlarged")
 * and long-distance attachments can be mislabeled; see tests/data/labeler for the behaviour pinned.
 */
#pragma once

#include <algorithm>
#include <cctype>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "cxrl/cxr/labeler_rules.hpp"
#include "cxrl/cxr/observations.hpp"

namespace cxrl::cxr {

/// @brief A token of a normalised sentence with its character span in that sentence.
struct LabelerToken {
  std::string text;        ///< token text (apostrophes dropped)
  std::size_t begin = 0;   ///< first character
  std::size_t end = 0;     ///< one past the last character
};

/// @brief One observation mention found in a report, with its classification.
struct Mention {
  int observation = -1;            ///< index in kObservations; −1 for an "other finding"
  std::string phrase;              ///< the rule pattern that matched
  std::string text;                ///< the matched text of the normalised sentence
  std::size_t sentence = 0;        ///< sentence index in the report
  std::size_t token_begin = 0;     ///< first token
  std::size_t token_end = 0;       ///< one past the last token
  Label label = Label::positive;   ///< negative, uncertain or positive
  std::string cue;                 ///< the cue (or rule) that decided the label; empty when positive
  unsigned flags = 0;              ///< labeler_rules::PhraseFlag bits of the phrase
};

namespace detail {

/// One token of a compiled pattern.
struct TokenPattern {
  std::vector<std::string> alts;  // alternatives
  std::vector<bool> prefix;       // alternative ends in '*'
  bool optional = false;          // trailing '?'
};
using Pattern = std::vector<TokenPattern>;

/// Compiles the pattern syntax of labeler_rules.hpp.
inline Pattern compile_pattern(std::string_view text) {
  Pattern out;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && text[i] == ' ') ++i;
    std::size_t j = i;
    while (j < text.size() && text[j] != ' ') ++j;
    if (j > i) {
      std::string_view tok = text.substr(i, j - i);
      TokenPattern tp;
      if (tok.back() == '?') {
        tp.optional = true;
        tok.remove_suffix(1);
      }
      std::size_t a = 0;
      while (a <= tok.size()) {
        std::size_t b = tok.find('|', a);
        if (b == std::string_view::npos) b = tok.size();
        std::string_view alt = tok.substr(a, b - a);
        bool pre = !alt.empty() && alt.back() == '*';
        if (pre) alt.remove_suffix(1);
        if (alt.empty())
          throw std::invalid_argument("labeler rule pattern '" + std::string(text) +
                                      "' has an empty alternative in token '" + std::string(tok) + "'");
        tp.alts.emplace_back(alt);
        tp.prefix.push_back(pre);
        a = b + 1;
      }
      out.push_back(std::move(tp));
    }
    i = j;
  }
  bool any_required = std::any_of(out.begin(), out.end(), [](const TokenPattern& t) { return !t.optional; });
  if (!any_required)
    throw std::invalid_argument("labeler rule pattern '" + std::string(text) +
                                "' must contain at least one non-optional token");
  return out;
}

inline bool token_matches(const TokenPattern& p, const std::string& t) {
  for (std::size_t k = 0; k < p.alts.size(); ++k) {
    if (p.prefix[k] ? t.compare(0, p.alts[k].size(), p.alts[k]) == 0 : t == p.alts[k]) return true;
  }
  return false;
}

// Longest match of p[pi..] starting at token ti; returns the end token or -1.
inline std::ptrdiff_t match_from(const Pattern& p, std::size_t pi, const std::vector<LabelerToken>& toks,
                                 std::size_t ti) {
  if (pi == p.size()) return static_cast<std::ptrdiff_t>(ti);
  std::ptrdiff_t best = -1;
  if (ti < toks.size() && token_matches(p[pi], toks[ti].text)) best = match_from(p, pi + 1, toks, ti + 1);
  if (p[pi].optional) best = std::max(best, match_from(p, pi + 1, toks, ti));
  return best;
}

/// End token of the longest match of @p p at @p pos, or @p pos when there is none.
inline std::size_t match_at(const Pattern& p, const std::vector<LabelerToken>& toks, std::size_t pos) {
  std::ptrdiff_t e = match_from(p, 0, toks, pos);
  return e > static_cast<std::ptrdiff_t>(pos) ? static_cast<std::size_t>(e) : pos;
}

template <std::size_t N>
inline bool in_list(const std::string_view (&list)[N], std::string_view t) {
  return std::find(std::begin(list), std::end(list), t) != std::end(list);
}

// Builds a new string (GCC 12 warns falsely about std::string::replace in place).
inline void replace_all(std::string& s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  std::size_t pos = 0;
  for (std::size_t hit; (hit = s.find(from, pos)) != std::string::npos; pos = hit + from.size()) {
    out.append(s, pos, hit - pos);
    out.append(to);
  }
  out.append(s, pos, std::string::npos);
  s = std::move(out);
}

}  // namespace detail

/**
 * @brief Rule-based CheXpert-style labeler (see the file documentation for the rules and scope).
 *
 * Construction compiles the tables of labeler_rules.hpp; labelling is then const and thread-safe.
 * Use default_labeler() for a shared instance.
 */
class ReportLabeler {
 public:
  /// @brief Compiles the built-in phrase and cue tables.
  ReportLabeler() {
    for (const auto& r : labeler_rules::kMentions)
      phrases_.push_back({obs_index(r.observation), std::string(r.pattern), detail::compile_pattern(r.pattern), r.flags});
    for (const auto& r : labeler_rules::kUnmentions)
      unmentions_.push_back({obs_index(r.observation), detail::compile_pattern(r.pattern)});
    for (const auto& r : labeler_rules::kCues)
      cues_.push_back({std::string(r.pattern), detail::compile_pattern(r.pattern), r.kind, r.scope, r.flags});
  }

  /// @brief The 14 labels of one report, in kObservations order.
  /// @param report free report text (any case, several sentences)
  Labels label(std::string_view report) const { return aggregate(mentions(report)); }

  /// @brief Every classified mention of @p report (before aggregation), for inspection and debugging.
  /// @param report free report text
  std::vector<Mention> mentions(std::string_view report) const {
    std::vector<Mention> out;
    const auto sentences = split_sentences(normalize(report));
    for (std::size_t s = 0; s < sentences.size(); ++s) label_sentence(sentences[s], s, out);
    return out;
  }

  /**
   * @brief Aggregates classified mentions into the 14 labels (reference stages/aggregate.py).
   * @param mentions the mentions of one report
   */
  static Labels aggregate(const std::vector<Mention>& mentions) {
    std::array<std::vector<Label>, kNumObservations> per;
    const int support = observation_index("Support Devices");
    const int no_finding = observation_index("No Finding");
    const int cardiomegaly = observation_index("Cardiomegaly");
    bool finding = false;
    for (const auto& m : mentions) {
      const bool pos_or_unc = m.label == Label::positive || m.label == Label::uncertain;
      if (m.observation != support && pos_or_unc) finding = true;
      if (m.observation < 0) continue;
      if ((m.flags & labeler_rules::kAddsUncertainCardiomegaly) && pos_or_unc)
        per[static_cast<std::size_t>(cardiomegaly)].push_back(Label::uncertain);
      per[static_cast<std::size_t>(m.observation)].push_back(m.label);
    }
    Labels out;
    for (int i = 0; i < kNumObservations; ++i) {
      const auto& v = per[static_cast<std::size_t>(i)];
      Label l = Label::blank;
      if (i == no_finding) {
        l = finding ? Label::blank : Label::positive;
      } else if (!v.empty()) {
        auto has = [&](Label x) { return std::find(v.begin(), v.end(), x) != v.end(); };
        if (has(Label::negative) && has(Label::uncertain)) l = Label::uncertain;
        else if (has(Label::negative) && has(Label::positive)) l = Label::positive;
        else if (has(Label::uncertain) && has(Label::positive)) l = Label::positive;
        else l = v.front();
      }
      out[static_cast<std::size_t>(i)] = l;
    }
    return out;
  }

  /// @brief Report normalisation (see the file documentation).
  /// @param report raw report text
  static std::string normalize(std::string_view report) {
    std::string s;
    s.reserve(report.size() + 8);
    for (char c : report) {
      unsigned char u = static_cast<unsigned char>(c);
      if (c == '\n' || c == '\r' || c == '\t' || c == '-') s.push_back(' ');
      else s.push_back(static_cast<char>(std::tolower(u)));
    }
    detail::replace_all(s, "and/or", "or");
    std::string t;
    t.reserve(s.size() + 16);
    for (std::size_t i = 0; i < s.size(); ++i) {
      const bool slash_between_letters = s[i] == '/' && i > 0 && i + 1 < s.size() &&
                                         std::isalpha(static_cast<unsigned char>(s[i - 1])) &&
                                         std::isalpha(static_cast<unsigned char>(s[i + 1]));
      if (slash_between_letters) t += " or ";
      else t.push_back(s[i]);
    }
    while (t.find("..") != std::string::npos) detail::replace_all(t, "..", ".");
    // Collapse white space, pad with spaces so that word-level replacements see boundaries.
    std::string u = " ";
    for (char c : t) {
      if (c == ' ' && u.back() == ' ') continue;
      u.push_back(c);
    }
    if (u.back() != ' ') u.push_back(' ');
    detail::replace_all(u, " vs. ", " vs ");
    detail::replace_all(u, " can not ", " cannot ");
    detail::replace_all(u, " can't ", " cannot ");
    if (u.size() <= 2) return {};
    return u.substr(1, u.size() - 2);
  }

  /// @brief Splits normalised text into sentences at ".", "?" and "!" (not inside decimals).
  /// @param normalized output of normalize()
  static std::vector<std::string> split_sentences(std::string_view normalized) {
    std::vector<std::string> out;
    std::string cur;
    auto flush = [&] {
      std::size_t a = cur.find_first_not_of(' ');
      if (a != std::string::npos) {
        std::size_t b = cur.find_last_not_of(' ');
        out.push_back(cur.substr(a, b - a + 1));
      }
      cur.clear();
    };
    for (std::size_t i = 0; i < normalized.size(); ++i) {
      char c = normalized[i];
      const bool decimal = c == '.' && i > 0 && i + 1 < normalized.size() &&
                           std::isdigit(static_cast<unsigned char>(normalized[i - 1])) &&
                           std::isdigit(static_cast<unsigned char>(normalized[i + 1]));
      if ((c == '.' || c == '?' || c == '!') && !decimal) {
        flush();
      } else {
        cur.push_back(c);
      }
    }
    flush();
    return out;
  }

  /// @brief Tokenises one normalised sentence: words of letters/digits (apostrophes dropped) and the
  /// punctuation tokens "," ";" ":"; other characters separate tokens.
  /// @param sentence one sentence of split_sentences()
  static std::vector<LabelerToken> tokenize(std::string_view sentence) {
    std::vector<LabelerToken> out;
    std::size_t i = 0;
    while (i < sentence.size()) {
      unsigned char c = static_cast<unsigned char>(sentence[i]);
      if (std::isalnum(c) || c == '\'') {
        LabelerToken t;
        t.begin = i;
        while (i < sentence.size() &&
               (std::isalnum(static_cast<unsigned char>(sentence[i])) || sentence[i] == '\'')) {
          if (sentence[i] != '\'') t.text.push_back(sentence[i]);
          ++i;
        }
        t.end = i;
        if (!t.text.empty()) out.push_back(std::move(t));
      } else if (c == ',' || c == ';' || c == ':') {
        out.push_back({std::string(1, static_cast<char>(c)), i, i + 1});
        ++i;
      } else {
        ++i;
      }
    }
    return out;
  }

 private:
  struct CompiledPhrase {
    int observation;
    std::string text;
    detail::Pattern pattern;
    unsigned flags;
  };
  struct CompiledUnmention {
    int observation;
    detail::Pattern pattern;
  };
  struct CompiledCue {
    std::string text;
    detail::Pattern pattern;
    labeler_rules::CueKind kind;
    unsigned scope;
    unsigned flags;
  };
  // A cue occurrence in a sentence with its scope.
  struct CueHit {
    std::size_t begin, end;
    const CompiledCue* cue;
    std::size_t fwd_end = 0;    // forward scope [end, fwd_end)
    std::size_t bwd_begin = 0;  // backward scope [bwd_begin, begin)
  };

  static int obs_index(std::string_view name) {
    if (name == labeler_rules::kOtherFinding) return -1;
    return observation_index(name);
  }

  static bool is_severity_word(std::string_view t) {
    static constexpr std::string_view kWords[] = {"small", "moderate", "large", "mild", "severe", "trace",
                                                  "minimal", "new", "increased", "decreased", "persistent",
                                                  "improved", "worsened", "worsening", "slight", "subtle"};
    return detail::in_list(kWords, t);
  }

  // A clause break at token i (for scopes of any cue).
  static bool is_break(const std::vector<LabelerToken>& toks, std::size_t i) {
    const std::string& t = toks[i].text;
    if (detail::in_list(labeler_rules::kClauseBreaks, t)) return true;
    if ((t == "," || t == "and") && i + 1 < toks.size() &&
        detail::in_list(labeler_rules::kClauseOpeners, toks[i + 1].text))
      return true;
    return false;
  }

  void label_sentence(const std::string& sentence, std::size_t sidx, std::vector<Mention>& out) const {
    using labeler_rules::CueKind;
    const auto toks = tokenize(sentence);
    const std::size_t n = toks.size();
    if (n == 0) return;

    // 1. Mentions, minus unmentions, minus mentions contained in a longer one of the same observation.
    std::vector<Mention> ms;
    for (const auto& p : phrases_) {
      for (std::size_t i = 0; i < n; ++i) {
        std::size_t e = detail::match_at(p.pattern, toks, i);
        if (e == i) continue;
        Mention m;
        m.observation = p.observation;
        m.phrase = p.text;
        m.text = sentence.substr(toks[i].begin, toks[e - 1].end - toks[i].begin);
        m.sentence = sidx;
        m.token_begin = i;
        m.token_end = e;
        m.flags = p.flags;
        ms.push_back(std::move(m));
      }
    }
    for (const auto& u : unmentions_) {
      for (std::size_t i = 0; i < n; ++i) {
        std::size_t e = detail::match_at(u.pattern, toks, i);
        if (e == i) continue;
        std::erase_if(ms, [&](const Mention& m) {
          return m.observation == u.observation && m.token_begin < e && m.token_end > i;
        });
      }
    }
    {
      std::vector<Mention> kept;
      for (std::size_t a = 0; a < ms.size(); ++a) {
        bool drop = false;
        for (std::size_t b = 0; b < ms.size() && !drop; ++b) {
          if (a == b || ms[a].observation != ms[b].observation) continue;
          const bool inside = ms[b].token_begin <= ms[a].token_begin && ms[a].token_end <= ms[b].token_end;
          const bool same = ms[b].token_begin == ms[a].token_begin && ms[a].token_end == ms[b].token_end;
          if (inside && (!same || b < a)) drop = true;
        }
        if (!drop) kept.push_back(ms[a]);
      }
      ms = std::move(kept);
    }
    if (ms.empty()) return;
    std::vector<bool> mention_token(n, false);
    for (const auto& m : ms)
      for (std::size_t i = m.token_begin; i < m.token_end; ++i) mention_token[i] = true;

    // 2. Cues: longest match per position, then non-overlapping left to right; cues never overlap mentions.
    std::vector<CueHit> hits;
    {
      std::size_t next_free = 0;
      for (std::size_t i = 0; i < n; ++i) {
        if (i < next_free) continue;
        const CompiledCue* best = nullptr;
        std::size_t best_end = i;
        for (const auto& c : cues_) {
          std::size_t e = detail::match_at(c.pattern, toks, i);
          if (e > best_end) {
            best_end = e;
            best = &c;
          }
        }
        if (!best) continue;
        bool overlaps_mention = false;
        for (std::size_t k = i; k < best_end; ++k) overlaps_mention = overlaps_mention || mention_token[k];
        if (overlaps_mention) continue;
        hits.push_back({i, best_end, best});
        next_free = best_end;
      }
    }
    auto cue_starting_at = [&](std::size_t i, const CueHit* self) -> const CueHit* {
      for (const auto& h : hits)
        if (&h != self && h.begin == i) return &h;
      return nullptr;
    };
    auto cue_ending_at = [&](std::size_t i, const CueHit* self) -> const CueHit* {
      for (const auto& h : hits)
        if (&h != self && h.end == i) return &h;
      return nullptr;
    };
    auto is_conj = [](const CueHit* h) { return (h->cue->flags & labeler_rules::kConjunction) != 0; };

    // 3. Scopes.
    for (auto& h : hits) {
      const bool conj = is_conj(&h);
      const bool noun = (h.cue->flags & labeler_rules::kNounScope) != 0;
      const bool negation = h.cue->kind == CueKind::negation;
      // forward
      std::size_t i = h.end;
      bool fwd_collected = false;  // another cue ends the scope only after a mention ("no suspicious nodule")
      while (i < n) {
        const std::string& t = toks[i].text;
        if (is_break(toks, i)) break;
        if (mention_token[i]) fwd_collected = true;
        if (const CueHit* o = cue_starting_at(i, &h); o && !is_conj(o) && fwd_collected) {
          // "no consolidation to suggest pneumonia": the negation runs on through "to suggest"
          const bool continuation = negation && i > 0 && toks[i - 1].text == "to" &&
                                    (toks[i].text.rfind("suggest", 0) == 0);
          if (!continuation) break;
        }
        if (t == "," && negation && i + 1 < n && is_severity_word(toks[i + 1].text)) break;
        if (conj && detail::in_list(labeler_rules::kPredicateBreaks, t)) break;
        if ((noun || conj) && detail::in_list(labeler_rules::kAuxVerbs, t)) {
          // continue through "... is seen to suggest|explain|indicate XXX" for negations
          std::size_t k = i + 1;
          std::size_t resume = 0;
          while (k + 1 < n && !is_break(toks, k)) {
            if (toks[k].text == "to" && (toks[k + 1].text.rfind("suggest", 0) == 0 || toks[k + 1].text == "explain" ||
                                         toks[k + 1].text == "indicate")) {
              resume = k + 2;
              break;
            }
            ++k;
          }
          if (!(negation && resume)) break;
          i = resume;
          continue;
        }
        ++i;
      }
      h.fwd_end = i;
      // backward
      bool plural = false;
      {
        std::size_t j = h.begin;
        while (j > 0 && (detail::in_list(labeler_rules::kAuxVerbs, toks[j - 1].text) || is_adverb(toks[j - 1].text))) {
          const std::string& a = toks[j - 1].text;
          plural = plural || a == "are" || a == "were" || a == "have" || a == "remain" || a == "appear" ||
                   a == "persist";
          --j;
        }
      }
      std::size_t j = h.begin;
      bool collected = false;
      while (j > 0) {
        const std::size_t k = j - 1;
        const std::string& t = toks[k].text;
        if (is_break(toks, k)) break;
        if (t == "," && !plural && !conj) break;
        if (const CueHit* o = cue_ending_at(k + 1, &h); o && !is_conj(o) && collected) break;
        if (conj && detail::in_list(labeler_rules::kPredicateBreaks, t)) break;
        if (collected && detail::in_list(labeler_rules::kAuxVerbs, t)) break;
        if (mention_token[k]) collected = true;
        j = k;
      }
      h.bwd_begin = j;
    }

    // 4. Classification.
    for (auto& m : ms) {
      const CueHit* decided[3] = {nullptr, nullptr, nullptr};
      for (const auto& h : hits) {
        if (h.cue->kind == CueKind::pseudo) continue;
        const bool fwd = (h.cue->scope & labeler_rules::kForward) && m.token_begin >= h.end && m.token_begin < h.fwd_end;
        const bool bwd = (h.cue->scope & labeler_rules::kBackward) && m.token_end <= h.begin && m.token_begin >= h.bwd_begin;
        if (!(fwd || bwd)) continue;
        const int slot = h.cue->kind == CueKind::pre_negation_uncertainty ? 0 : h.cue->kind == CueKind::negation ? 1 : 2;
        if (!decided[slot]) decided[slot] = &h;
      }
      if (decided[0]) {
        m.label = Label::uncertain;
        m.cue = decided[0]->cue->text;
      } else if (decided[1]) {
        m.label = Label::negative;
        m.cue = decided[1]->cue->text;
      } else if (decided[2]) {
        m.label = Label::uncertain;
        m.cue = decided[2]->cue->text;
      } else {
        m.label = Label::positive;
      }
      if (m.label == Label::positive && (m.flags & labeler_rules::kUncertainWhenPositive)) {
        m.label = Label::uncertain;
        m.cue = "(always uncertain: " + m.phrase + ")";
      }
      if (m.label == Label::positive && (m.flags & labeler_rules::kStabilityUncertain)) {
        std::size_t a = m.token_begin, b = m.token_end;
        while (a > 0 && !is_break(toks, a - 1)) --a;
        while (b < n && !is_break(toks, b)) ++b;
        for (std::size_t k = a; k < b; ++k) {
          const std::string& t = toks[k].text;
          if (t == "stable" || t == "unchanged" || t == "similar" || t == "change" || t == "changed") {
            m.label = Label::uncertain;
            m.cue = "(stable/unchanged: " + t + ")";
            break;
          }
        }
      }
      out.push_back(std::move(m));
    }
  }

  static bool is_adverb(std::string_view t) {
    static constexpr std::string_view kAdverbs[] = {"not", "now", "otherwise", "also", "still", "again",
                                                     "within", "top", "upper", "been", "being"};
    return detail::in_list(kAdverbs, t) || (t.size() > 3 && t.substr(t.size() - 2) == "ly");
  }

  std::vector<CompiledPhrase> phrases_;
  std::vector<CompiledUnmention> unmentions_;
  std::vector<CompiledCue> cues_;
};

/// @brief A shared labeler with the built-in rules (compiled once, thread-safe to use).
inline const ReportLabeler& default_labeler() {
  static const ReportLabeler instance;
  return instance;
}

/// @brief Labels one report with default_labeler().
/// @param report free report text
inline Labels label_report(std::string_view report) { return default_labeler().label(report); }

/// @brief The JSON-style value of a label: 1, 0, −1, or "null" for blank.
/// @param l a label
inline std::string label_json_value(Label l) {
  switch (l) {
    case Label::positive: return "1";
    case Label::negative: return "0";
    case Label::uncertain: return "-1";
    default: return "null";
  }
}

}  // namespace cxrl::cxr
