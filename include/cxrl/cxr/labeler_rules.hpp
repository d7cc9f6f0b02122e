/**
 * @file labeler_rules.hpp
 * @brief The phrase and cue tables of the rule-based CheXpert-style report labeler (cxr/labeler.hpp).
 *
 * The tables are data: the engine in labeler.hpp compiles them once. They were written for cxrl,
 * guided by the facts of the Stanford CheXpert labeler (stanfordmlgroup/chexpert-labeler:
 * `phrases/mention/` and `phrases/unmention/` (one .txt per observation), `patterns/{pre_negation_uncertainty,negation,
 * post_negation_uncertainty}.txt`). The reference decides negation and uncertainty with NegBio
 * dependency-graph patterns over a BLLIP parse; cxrl has no parser, so each cue here is a surface
 * token pattern with a *scope* (see labeler.hpp, "Cue scope"). Where a cue stands in for a
 * dependency pattern the comment names the reference pattern it replaces.
 *
 * ## Pattern syntax (mentions, unmentions and cues)
 * Space-separated token patterns, matched against whole tokens of the normalised sentence
 * (lower case, hyphens turned into spaces, see ReportLabeler::normalize):
 * - `word`   matches exactly that token;
 * - `stem*`  matches any token that starts with `stem` (the reference matches phrases as substrings;
 *            cxrl anchors them at a word start so that "tube" does not match "tuberculosis");
 * - `a|b|c`  matches any of the alternatives (each may end in `*`);
 * - a trailing `?` makes the token optional (`not entirely|completely? excluded`).
 */
#pragma once

#include <string_view>

namespace cxrl::cxr::labeler_rules {

/// @brief Pseudo-observation of the "other finding" mentions: they only decide No Finding.
inline constexpr std::string_view kOtherFinding = "(other finding)";

/// @brief Flags of a mention phrase.
enum PhraseFlag : unsigned {
  kPlain = 0,
  /// A positive mention of this phrase is uncertain (reference post_negation_uncertainty.txt:
  /// "vascular congestion", "pulmonary congestion", "indistinctness", "vascular prominence").
  kUncertainWhenPositive = 1u << 0,
  /// A positive or uncertain mention also adds −1 to Cardiomegaly (reference aggregate.py:
  /// annotation text "chf" or "heart failure").
  kAddsUncertainCardiomegaly = 1u << 1,
  /// A generic heart/mediastinum term: "stable", "unchanged", "similar" or "change" in its clause
  /// makes it uncertain (reference post_negation_uncertainty.txt, the "Stable/unchanged silhouette"
  /// rules on the lemmas cardiomediastinal|mediastinum|contour|silhouette|size|heart|shadow).
  kStabilityUncertain = 1u << 2,
};

/// @brief A mention phrase of one observation.
struct PhraseRule {
  std::string_view observation;  ///< a name of kObservations, or kOtherFinding
  std::string_view pattern;      ///< token pattern (see the file docs)
  unsigned flags = kPlain;       ///< PhraseFlag bits
};

/// @brief Mention phrases. Ordered by observation in kObservations order; "No Finding" has none (it is
/// derived), the kOtherFinding list mirrors the reference's `phrases/mention/no_finding.txt` role.
inline constexpr PhraseRule kMentions[] = {
    // Atelectasis (reference: atelecta, collapse)
    {"Atelectasis", "atelecta*"},
    {"Atelectasis", "collapse|collapsed"},
    // Cardiomegaly (reference: cardiomegaly, the heart, heart size, cardiac enlargement, cardiac size,
    // cardiac shadow, cardiac contour, cardiac silhouette, enlarged heart)
    {"Cardiomegaly", "cardiomegaly"},
    {"Cardiomegaly", "cardiac enlargement"},
    {"Cardiomegaly", "enlarged heart"},
    {"Cardiomegaly", "enlargement of the? heart"},
    {"Cardiomegaly", "heart size", kStabilityUncertain},
    {"Cardiomegaly", "heart", kStabilityUncertain},
    {"Cardiomegaly", "cardiac size", kStabilityUncertain},
    {"Cardiomegaly", "cardiac shadow", kStabilityUncertain},
    {"Cardiomegaly", "cardiac contour|contours", kStabilityUncertain},
    {"Cardiomegaly", "cardiac silhouette", kStabilityUncertain},
    // Consolidation
    {"Consolidation", "consolidat*"},
    // Edema
    {"Edema", "edema|oedema"},
    {"Edema", "heart failure", kAddsUncertainCardiomegaly},
    {"Edema", "chf", kAddsUncertainCardiomegaly},
    {"Edema", "vascular congestion", kUncertainWhenPositive},
    {"Edema", "pulmonary congestion", kUncertainWhenPositive},
    {"Edema", "indistinctness", kUncertainWhenPositive},
    {"Edema", "vascular prominence", kUncertainWhenPositive},
    // Enlarged Cardiomediastinum (the reference also lists a bare "contour", which labels hilar and
    // diaphragm contours as well; cxrl keeps the mediastinal ones only)
    {"Enlarged Cardiomediastinum", "cardiomediastinal", kStabilityUncertain},
    {"Enlarged Cardiomediastinum", "cardiomediastinum", kStabilityUncertain},
    {"Enlarged Cardiomediastinum", "mediastinum", kStabilityUncertain},
    {"Enlarged Cardiomediastinum", "mediastinal contour|contours|silhouette|configuration", kStabilityUncertain},
    // an explicit finding, not a generic term: "mediastinal widening is unchanged" stays positive
    {"Enlarged Cardiomediastinum", "mediastinal widening|enlargement"},
    {"Enlarged Cardiomediastinum", "widened|widening of? the? mediastinum"},
    {"Enlarged Cardiomediastinum", "pericardial silhouette", kStabilityUncertain},
    // Fracture
    {"Fracture", "fracture*"},
    // Lung Lesion
    {"Lung Lesion", "mass|masses"},
    {"Lung Lesion", "nodule|nodules"},
    {"Lung Lesion", "nodular density|densities|opacity|opacities|opacification"},
    {"Lung Lesion", "lump"},
    {"Lung Lesion", "cavitary lesion|lesions"},
    {"Lung Lesion", "carcinoma"},
    {"Lung Lesion", "neoplasm"},
    {"Lung Lesion", "tumor|tumour|tumors|tumours"},
    // Lung Opacity (reference airspace_opacity / lung_opacity list)
    {"Lung Opacity", "opaci*"},
    {"Lung Opacity", "decreased translucency"},
    {"Lung Opacity", "increased density"},
    {"Lung Opacity", "airspace disease"},
    {"Lung Opacity", "air space disease"},
    {"Lung Opacity", "infiltrat*"},
    {"Lung Opacity", "interstitial marking|markings|pattern|lung"},
    {"Lung Opacity", "reticular pattern|marking|markings"},
    {"Lung Opacity", "reticulation"},
    {"Lung Opacity", "parenchymal scarring"},
    {"Lung Opacity", "peribronchial thickening"},
    {"Lung Opacity", "wall thickening"},
    {"Lung Opacity", "scar|scars|scarring"},
    // Pleural Effusion
    {"Pleural Effusion", "effusion|effusions"},
    {"Pleural Effusion", "pleural fluid"},
    // Pleural Other
    {"Pleural Other", "pleural thickening"},
    {"Pleural Other", "fibrosis"},
    {"Pleural Other", "fibrothorax"},
    {"Pleural Other", "pleural scar|scars|scarring"},
    {"Pleural Other", "pleural parenchymal scar|scars|scarring"},
    {"Pleural Other", "pleuro parenchymal scar|scars|scarring"},
    {"Pleural Other", "pleuro pericardial scar|scars|scarring"},
    // Pneumonia
    {"Pneumonia", "pneumonia|pneumonias|bronchopneumonia"},
    {"Pneumonia", "infection|infections"},
    {"Pneumonia", "infectious process"},
    {"Pneumonia", "infectious"},
    // Pneumothorax
    {"Pneumothorax", "pneumothorax|pneumothoraces|hydropneumothorax"},
    // Support Devices (reference support_devices list; "wire" added for sternotomy/pacer wires)
    {"Support Devices", "pacer|pacers"},
    {"Support Devices", "line|lines"},
    {"Support Devices", "picc"},
    {"Support Devices", "tube|tubes"},
    {"Support Devices", "valve|valves"},
    {"Support Devices", "catheter|catheters"},
    {"Support Devices", "pacemaker|pacemakers"},
    {"Support Devices", "hardware"},
    {"Support Devices", "arthroplast*"},
    {"Support Devices", "marker|markers"},
    {"Support Devices", "icd"},
    {"Support Devices", "defib*"},
    {"Support Devices", "device|devices"},
    {"Support Devices", "drain|drains"},
    {"Support Devices", "plate|plates"},
    {"Support Devices", "screw|screws"},
    {"Support Devices", "cannula"},
    {"Support Devices", "apparatus"},
    {"Support Devices", "coil|coils"},
    {"Support Devices", "equipment"},
    {"Support Devices", "mediport|port"},
    {"Support Devices", "wire|wires"},
    {"Support Devices", "stent|stents"},
    // Other findings: not one of the 14 labels, but a positive or uncertain mention means the study
    // is not "No Finding" (reference phrases/mention/no_finding.txt plays this role).
    {kOtherFinding, "emphysema"},
    {kOtherFinding, "blunt*"},
    {kOtherFinding, "density|densities"},
    {kOtherFinding, "elevation"},
    {kOtherFinding, "eventration"},
    {kOtherFinding, "scoliosis"},
    {kOtherFinding, "degenera*"},
    {kOtherFinding, "calcifi*"},
    {kOtherFinding, "hyperinflat*"},
    {kOtherFinding, "hyperexpan*"},
    {kOtherFinding, "bronchospasm"},
    {kOtherFinding, "asthma"},
    {kOtherFinding, "hernia"},
    {kOtherFinding, "copd"},
    {kOtherFinding, "plaque|plaques"},
    {kOtherFinding, "osteophyt*"},
    {kOtherFinding, "aortic disease"},
    {kOtherFinding, "bronchiolitis"},
    {kOtherFinding, "airways disease"},
    {kOtherFinding, "thickening"},
    {kOtherFinding, "cephalization"},
    {kOtherFinding, "aspiration"},
    {kOtherFinding, "bulla|bullae|bullous"},
    {kOtherFinding, "contusion|contusions"},
    {kOtherFinding, "atherosclero*"},
    {kOtherFinding, "osteopenia"},
    {kOtherFinding, "metasta*"},
    {kOtherFinding, "granuloma*"},
    {kOtherFinding, "pneumomediastinum"},
    {kOtherFinding, "pneumoperitoneum"},
    {kOtherFinding, "osteodystrophy"},
    {kOtherFinding, "cuffing"},
    {kOtherFinding, "irregular lucency"},
    {kOtherFinding, "inflam*"},
    {kOtherFinding, "hypertension"},
    {kOtherFinding, "kyphosis"},
    {kOtherFinding, "bullet|bullets"},
    {kOtherFinding, "thoracentesis"},
    {kOtherFinding, "bronchitis"},
    {kOtherFinding, "volume loss"},
    {kOtherFinding, "deformity|deformities"},
    {kOtherFinding, "hemorrhage"},
    {kOtherFinding, "hematoma"},
    {kOtherFinding, "radiopaque"},
    {kOtherFinding, "aerophagia"},
    {kOtherFinding, "arthropathy"},
    {kOtherFinding, "tracheostomy"},
    {kOtherFinding, "bronchiectasis"},
};

/// @brief A phrase that, where it overlaps a mention of @ref observation, cancels that mention.
struct UnmentionRule {
  std::string_view observation;  ///< a name of kObservations
  std::string_view pattern;      ///< token pattern
};

/// @brief Unmention phrases (reference phrases/unmention/*.txt and the positional unmentions that
/// extract.py generates for Cardiomegaly and Enlarged Cardiomediastinum, written out here).
inline constexpr UnmentionRule kUnmentions[] = {
    {"Pleural Effusion", "pericardial effusion|effusions"},
    {"Pleural Effusion", "joint effusion|effusions"},
    {"Lung Lesion", "calcified nodule|nodules"},
    {"Lung Lesion", "massive"},
    {"Lung Opacity", "pleural scar|scars|scarring"},
    {"Lung Opacity", "pleural parenchymal scar|scars|scarring"},
    {"Lung Opacity", "pleuro parenchymal|pericardial scar|scars|scarring"},
    {"Cardiomegaly", "heart failure"},
    {"Cardiomegaly", "heart border|borders"},
    {"Cardiomegaly", "over|overlying|overlies|overlie|in|behind|projects|projecting the? superior|left|right? heart"},
    {"Cardiomegaly",
     "over|overlying|overlies|overlie|in|behind|projects|projecting the? superior|left|right? cardiac silhouette|shadow|contour"},
    {"Cardiomegaly", "projecting|projects over the? superior|left|right? heart|cardiac"},
    {"Enlarged Cardiomediastinum",
     "over|overlying|overlies|overlie|in|projects|projecting the? superior|left|right? mediastinum|cardiomediastinum"},
    {"Enlarged Cardiomediastinum", "projecting|projects over the? superior|left|right? mediastinum"},
    {"Support Devices", "pleural line|lines"},
    {"Support Devices", "plate like"},
};

/// @brief What a cue does to the mentions in its scope. Checked in this order per mention:
/// pre-negation uncertainty, then negation, then post-negation uncertainty (reference classify.py).
enum class CueKind {
  pre_negation_uncertainty,   ///< "cannot exclude": uncertain, overrides negation
  negation,                   ///< "no", "without", "resolved": negative
  post_negation_uncertainty,  ///< "possible", "may": uncertain unless negated
  pseudo,                     ///< "no change": blocks the shorter cues it contains, labels nothing
};

/// @brief Which side of the cue its scope lies on.
enum CueScope : unsigned {
  kForward = 1u,   ///< the mention follows the cue ("no effusion")
  kBackward = 2u,  ///< the mention precedes the cue ("effusion has resolved")
  kBoth = 3u,
};

/// @brief Scope modifiers.
enum CueFlag : unsigned {
  kCuePlain = 0,
  /// The forward scope also ends at an auxiliary verb ("is", "are", "has", "remains", "appears"):
  /// the cue modifies a noun phrase ("no effusion is seen and ..."); a following "to suggest|explain|
  /// indicate" continues it ("no focal consolidation is seen to suggest pneumonia").
  kNounScope = 1u << 0,
  /// A coordinating cue ("or", "versus"): its scope is the conjuncts around it; it does not end the
  /// scopes of other cues, and its own scope also ends at predicate words ("likely", "represents").
  kConjunction = 1u << 1,
};

/// @brief A negation / uncertainty cue.
struct CueRule {
  std::string_view pattern;  ///< token pattern
  CueKind kind;              ///< effect
  unsigned scope;            ///< CueScope bits
  unsigned flags = kCuePlain;  ///< CueFlag bits
};

/// @brief Cue table. At one position the longest matching cue wins; selected cues do not overlap.
inline constexpr CueRule kCues[] = {
    // ---- pre-negation uncertainty (reference pre_negation_uncertainty.txt) ----
    {"cannot|cant exclude", CueKind::pre_negation_uncertainty, kForward},
    {"cannot|cant be entirely|completely|fully? excluded", CueKind::pre_negation_uncertainty, kBoth},
    {"not entirely|completely|fully? excluded", CueKind::pre_negation_uncertainty, kBackward},
    {"cannot|cant rule out", CueKind::pre_negation_uncertainty, kForward},
    {"cannot|cant be entirely|completely|fully? ruled out", CueKind::pre_negation_uncertainty, kBoth},
    {"not entirely|completely|fully? ruled out", CueKind::pre_negation_uncertainty, kBackward},
    {"difficult to exclude|rule", CueKind::pre_negation_uncertainty, kForward},
    {"no evidence to rule out", CueKind::pre_negation_uncertainty, kForward},
    // "no new XXX" is uncertain in the reference (it says nothing about the old finding)
    {"no new", CueKind::pre_negation_uncertainty, kForward, kNounScope},
    {"no definite new", CueKind::pre_negation_uncertainty, kForward, kNounScope},

    // ---- pseudo cues: contain a negation word but negate nothing they govern ----
    {"no|without significant|interval|appreciable|substantial? change|changes", CueKind::pseudo, kBoth},
    {"not changed", CueKind::pseudo, kBoth},
    {"no|without significant|interval? increase|decrease|worsening|improvement", CueKind::pseudo, kBoth},
    {"no further", CueKind::pseudo, kBoth},
    {"not only", CueKind::pseudo, kBoth},

    // ---- negation (reference negation.txt) ----
    {"no", CueKind::negation, kForward, kNounScope},  // "no XXX", "no evidence of XXX", "no focal XXX"
    {"without", CueKind::negation, kForward, kNounScope},
    {"negative for", CueKind::negation, kForward, kNounScope},
    {"free of", CueKind::negation, kForward, kNounScope},
    {"clear of", CueKind::negation, kForward, kNounScope},
    {"absence of", CueKind::negation, kForward, kNounScope},
    {"absent", CueKind::negation, kBoth, kNounScope},
    {"rather than", CueKind::negation, kForward, kNounScope},
    {"resolution|removal|clearing|disappearance|drainage of", CueKind::negation, kForward, kNounScope},
    {"resolved|removed|cleared", CueKind::negation, kBoth, kNounScope},
    {"no longer", CueKind::negation, kBoth, kNounScope},
    {"normal|unremarkable", CueKind::negation, kBoth, kNounScope},  // also "within normal limits"
    {"not enlarged|dilated|widened|increased", CueKind::negation, kBackward},
    {"not seen|identified|demonstrated|present|evident|detected|visible|noted", CueKind::negation,
     kBackward},
    {"rule out", CueKind::negation, kForward, kNounScope},
    {"ruled out|excluded", CueKind::negation, kBackward},
    {"not", CueKind::negation, kForward, kNounScope},

    // ---- post-negation uncertainty (reference post_negation_uncertainty.txt) ----
    {"possible|possibly|probable|probably|presumed|presumably|questionable|equivocal",
     CueKind::post_negation_uncertainty, kForward},
    {"is|are|be possible|questionable|equivocal", CueKind::post_negation_uncertainty, kBackward},
    // reference: "{} < nmod:for suspicious" (forward) and "{} < nsubjpass suspect" ("XXX is suspected")
    {"suspicious|suspicion for|of?", CueKind::post_negation_uncertainty, kForward},
    {"suspect|suspected", CueKind::post_negation_uncertainty, kBoth},
    {"question of", CueKind::post_negation_uncertainty, kForward},
    {"concern|concerning|worrisome|worrying for", CueKind::post_negation_uncertainty, kForward},
    {"suggest*", CueKind::post_negation_uncertainty, kForward},
    {"may|might|could|would|can", CueKind::post_negation_uncertainty, kForward},
    {"may|might|could|can be|appear present|seen", CueKind::post_negation_uncertainty, kBackward},
    {"differential diagnosis? include|includes|including|is", CueKind::post_negation_uncertainty, kForward},
    {"less likely|favored", CueKind::post_negation_uncertainty, kBoth},
    {"unlikely", CueKind::post_negation_uncertainty, kBoth},
    {"borderline", CueKind::post_negation_uncertainty, kBoth},
    {"indeterminate|unclear|uncertain", CueKind::post_negation_uncertainty, kBoth},
    {"not clear|certain", CueKind::post_negation_uncertainty, kBoth},
    {"obscur*", CueKind::post_negation_uncertainty, kBoth},
    {"not well? visualized|evaluated|assessed|appreciated", CueKind::post_negation_uncertainty, kBackward},
    {"not well seen", CueKind::post_negation_uncertainty, kBackward},
    {"not clearly seen|visualized", CueKind::post_negation_uncertainty, kBackward},
    {"poorly|incompletely evaluated|assessed|visualized", CueKind::post_negation_uncertainty, kBackward},
    {"cannot|cant be evaluated|assessed", CueKind::post_negation_uncertainty, kBackward},
    {"difficult to assess|evaluate", CueKind::post_negation_uncertainty, kBackward},
    {"correlate|correlation clinically? for", CueKind::post_negation_uncertainty, kForward},
    {"clinical correlation", CueKind::post_negation_uncertainty, kBoth},
    {"secondary to", CueKind::post_negation_uncertainty, kForward},
    {"versus|vs", CueKind::post_negation_uncertainty, kBoth, kConjunction},
    {"or", CueKind::post_negation_uncertainty, kBoth, kConjunction},
};

/// @brief Tokens that end every cue scope (clause boundaries; sentence ends are boundaries too).
inline constexpr std::string_view kClauseBreaks[] = {
    ";", ":", "but", "however", "although", "though", "whereas", "while", "except", "aside", "apart",
    "which", "with"};

/// @brief After "," or "and", these words open a new clause and end a scope.
inline constexpr std::string_view kClauseOpeners[] = {
    "the", "there", "a", "an", "this", "these", "those", "it", "its", "their", "his", "her"};

/// @brief Auxiliary verbs that end a noun-scope cue's forward scope.
inline constexpr std::string_view kAuxVerbs[] = {
    "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "remains", "remain",
    "remained", "appears", "appear", "appeared", "persists", "persist"};

/// @brief Predicate words that end a conjunction cue's scope ("opacity, likely atelectasis or pneumonia").
inline constexpr std::string_view kPredicateBreaks[] = {
    "likely", "represent", "represents", "reflect", "reflects", "suggest", "suggests", "suggesting",
    "concerning", "consistent", "compatible", "due", "from"};

}  // namespace cxrl::cxr::labeler_rules
