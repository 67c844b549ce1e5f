#include "starmesh/model/tokenizer.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "starmesh/model/bpe.hpp"
#include "starmesh/model/pre_tokenizer.hpp"

namespace starmesh {

using detail::BpeModel;
using detail::RegexSplitter;
using nlohmann::json;

namespace {

// Added tokens, matched in the raw text leftmost-longest (as HF's Aho-Corasick does) by
// walking a byte trie from each position that can start one.
class AddedTokenMatcher {
 public:
  void add(std::string_view content, int32_t id) {
    if (content.empty()) return;
    int32_t node = 0;
    for (const char c : content) {
      const auto byte = static_cast<unsigned char>(c);
      auto& children = nodes_[node].children;
      auto it = std::find_if(children.begin(), children.end(), [&](const auto& child) { return child.first == byte; });
      if (it == children.end()) {
        children.emplace_back(byte, static_cast<int32_t>(nodes_.size()));
        node = static_cast<int32_t>(nodes_.size());
        nodes_.emplace_back();
      } else {
        node = it->second;
      }
    }
    nodes_[node].id = id;
    can_start_[static_cast<unsigned char>(content.front())] = true;
  }

  // Calls on_gap(text) for each stretch between matches and pushes each match's id to `out`,
  // in order.
  template <class OnGap>
  void split(std::string_view text, std::vector<int32_t>& out, OnGap&& on_gap) const {
    size_t last = 0;
    for (size_t pos = 0; pos < text.size();) {
      size_t end = 0;
      const int32_t id = can_start_[static_cast<unsigned char>(text[pos])] ? longest_at(text, pos, end) : -1;
      if (id < 0) {
        ++pos;
        continue;
      }
      if (pos > last) on_gap(text.substr(last, pos - last));
      out.push_back(id);
      last = pos = end;
    }
    if (last < text.size()) on_gap(text.substr(last));
  }

 private:
  int32_t longest_at(std::string_view text, size_t pos, size_t& end) const {
    int32_t node = 0, found = -1;
    for (size_t i = pos; i < text.size(); ++i) {
      const auto byte = static_cast<unsigned char>(text[i]);
      const auto& children = nodes_[node].children;
      auto it = std::find_if(children.begin(), children.end(), [&](const auto& child) { return child.first == byte; });
      if (it == children.end()) break;
      node = it->second;
      if (nodes_[node].id >= 0) {
        found = nodes_[node].id;
        end = i + 1;
      }
    }
    return found;
  }

  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> children;
    int32_t id = -1;
  };
  std::vector<Node> nodes_{1};
  std::array<bool, 256> can_start_{};
};

// One step of the pre-tokenizer: a regex Split, or the (final) ByteLevel.
struct PreTokenizerStep {
  std::optional<RegexSplitter> splitter;  // Split's pattern, or ByteLevel's GPT-2 regex
  bool byte_level = false;
  bool add_prefix_space = false;  // ByteLevel only
};

}  // namespace

struct Tokenizer::Impl {
  BpeModel model;
  std::vector<PreTokenizerStep> steps;
  AddedTokenMatcher raw_added;         // added tokens with normalized = false
  AddedTokenMatcher normalized_added;  // added tokens with normalized = true
  detail::TokenMap added_by_content;
  std::vector<int32_t> bos_prefix;  // the post_processor's special tokens before $A
  int32_t vocab_size = 0;
  std::vector<std::string> bytes;  // per id: the bytes the token decodes to
  enum Flag : uint8_t { kHasToken = 1, kSpecial = 2 };
  std::vector<uint8_t> flags;  // per id

  void encode_plain(std::string_view text, std::vector<int32_t>& out) const;
};

namespace {

std::string type_of(const json& j) {
  if (!j.is_object()) return j.is_null() ? "null" : "(not an object)";
  return j.value("type", std::string("(no type)"));
}

Status parse_pre_tokenizer(const json& j, std::vector<PreTokenizerStep>& steps) {
  const std::string type = type_of(j);
  if (type == "Sequence") {
    for (const json& child : j.at("pretokenizers")) SM_TRY(parse_pre_tokenizer(child, steps));
    return Status::ok();
  }
  PreTokenizerStep step;
  if (type == "Split") {
    const std::string behavior = j.value("behavior", std::string("(none)"));
    if (behavior != "Isolated") {
      return make_error("tokenizer.json: Split pre-tokenizer behavior '", behavior,
                        "' is not supported (only Isolated)");
    }
    if (j.value("invert", false)) {
      return make_error("tokenizer.json: Split pre-tokenizer with invert true is not supported");
    }
    const json& pattern = j.at("pattern");
    if (pattern.contains("Regex")) {
      SM_ASSIGN(splitter, RegexSplitter::compile_regex(pattern.at("Regex").get<std::string>()));
      step.splitter = std::move(splitter);
    } else if (pattern.contains("String")) {
      step.splitter = RegexSplitter::literal(pattern.at("String").get<std::string>());
    } else {
      return make_error(
          "tokenizer.json: Split pattern must be {\"Regex\": ...} or "
          "{\"String\": ...}, got ",
          pattern.dump());
    }
  } else if (type == "ByteLevel") {
    step.byte_level = true;
    step.add_prefix_space = j.value("add_prefix_space", true);  // HF's defaults
    if (j.value("use_regex", true)) {
      SM_ASSIGN(splitter, RegexSplitter::compile_regex(detail::kGpt2SplitPattern));
      step.splitter = std::move(splitter);
    }
  } else {
    return make_error("tokenizer.json: pre_tokenizer type '", type,
                      "' is not supported (only ByteLevel, Split and Sequence of them)");
  }
  steps.push_back(std::move(step));
  return Status::ok();
}

// Collects the special tokens the template puts before $A (the BOS).
Status parse_post_processor(const json& j, std::vector<int32_t>& prefix, int& templates) {
  const std::string type = j.is_null() ? "null" : type_of(j);
  if (type == "null" || type == "ByteLevel") return Status::ok();  // ByteLevel: offsets only
  if (type == "Sequence") {
    for (const json& child : j.at("processors")) {
      SM_TRY(parse_post_processor(child, prefix, templates));
    }
    return Status::ok();
  }
  if (type != "TemplateProcessing") {
    return make_error("tokenizer.json: post_processor type '", type,
                      "' is not supported (only TemplateProcessing, ByteLevel, Sequence)");
  }
  if (++templates > 1) {
    return make_error("tokenizer.json: more than one TemplateProcessing is not supported");
  }
  const json& specials = j.at("special_tokens");
  for (const json& piece : j.at("single")) {
    if (piece.contains("Sequence")) break;
    const std::string name = piece.at("SpecialToken").at("id").get<std::string>();
    if (!specials.contains(name)) {
      return make_error("tokenizer.json: TemplateProcessing names special token '", name,
                        "' that its special_tokens lacks");
    }
    for (const json& id : specials.at(name).at("ids")) prefix.push_back(id.get<int32_t>());
  }
  return Status::ok();
}

Expected<BpeModel> parse_model(const json& m) {
  const std::string type = m.value("type", m.contains("merges") ? "BPE" : "(no type)");
  if (type != "BPE") {
    return make_error("tokenizer.json: model type '", type, "' is not supported (only BPE)");
  }
  if (m.contains("dropout") && !m.at("dropout").is_null() && m.at("dropout").get<double>() != 0) {
    return make_error("tokenizer.json: BPE dropout is not supported");
  }
  if (m.value("byte_fallback", false)) {
    return make_error("tokenizer.json: BPE byte_fallback is not supported (byte-level BPE only)");
  }
  for (const char* field : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(field) && !m.at(field).is_null() && !m.at(field).get<std::string>().empty()) {
      return make_error("tokenizer.json: BPE ", field, " is not supported");
    }
  }
  BpeModel::Options options;
  options.ignore_merges = m.value("ignore_merges", false);
  options.fuse_unk = m.value("fuse_unk", false);
  if (m.contains("unk_token") && !m.at("unk_token").is_null()) {
    options.unk_token = m.at("unk_token").get<std::string>();
  }
  detail::TokenMap vocab;
  const json& vocab_json = m.at("vocab");
  vocab.reserve(vocab_json.size());
  for (const auto& [token, id] : vocab_json.items()) {
    const auto value = id.get<int64_t>();
    if (value < 0 || value >= kMaxVocabulary) {
      return make_error(ErrorCode::invalid_argument, "tokenizer.json: vocab token '", token, "' has id ", value,
                        ", outside [0, ", kMaxVocabulary, ")");
    }
    vocab.emplace(token, static_cast<int32_t>(value));
  }
  SM_ASSIGN(model, BpeModel::create(std::move(vocab), std::move(options)));
  model.reserve_merges(m.at("merges").size());
  for (const json& merge : m.at("merges")) {
    if (merge.is_string()) {  // "left right": exactly one space, as HF requires
      const auto& text = merge.get_ref<const std::string&>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return make_error("tokenizer.json: merge '", text, "' is not two tokens split by a space");
      }
      SM_TRY(model.add_merge(std::string_view(text).substr(0, space), std::string_view(text).substr(space + 1)));
    } else if (merge.is_array() && merge.size() == 2) {
      SM_TRY(model.add_merge(merge[0].get_ref<const std::string&>(), merge[1].get_ref<const std::string&>()));
    } else {
      return make_error("tokenizer.json: merge ", merge.dump(), " is not \"a b\" or [\"a\", \"b\"]");
    }
  }
  return model;
}

Expected<std::shared_ptr<Tokenizer::Impl>> parse_tokenizer(const json& root) {
  auto impl = std::make_shared<Tokenizer::Impl>();
  if (root.contains("normalizer") && !root.at("normalizer").is_null()) {
    return make_error("tokenizer.json: normalizer type '", type_of(root.at("normalizer")),
                      "' is not supported (only null)");
  }
  SM_ASSIGN(model, parse_model(root.at("model")));
  impl->model = std::move(model);

  const json& pre = root.contains("pre_tokenizer") ? root.at("pre_tokenizer") : json();
  if (pre.is_null()) {
    return make_error("tokenizer.json: pre_tokenizer null is not supported (need ByteLevel)");
  }
  SM_TRY(parse_pre_tokenizer(pre, impl->steps));
  const auto byte_levels =
      std::count_if(impl->steps.begin(), impl->steps.end(), [](const auto& s) { return s.byte_level; });
  if (byte_levels != 1 || !impl->steps.back().byte_level) {
    return make_error("tokenizer.json: the pre_tokenizer must end with exactly one ByteLevel");
  }
  const std::string decoder = root.contains("decoder") ? type_of(root.at("decoder")) : "null";
  if (decoder != "ByteLevel") {
    return make_error("tokenizer.json: decoder type '", decoder, "' is not supported (only ByteLevel)");
  }
  int templates = 0;
  SM_TRY(parse_post_processor(root.contains("post_processor") ? root.at("post_processor") : json(), impl->bos_prefix,
                              templates));

  struct Added {
    int32_t id;
    std::string content;
    bool special;
  };
  std::vector<Added> added;
  int64_t max_id = -1;
  for (const auto& entry : impl->model.vocab()) max_id = std::max<int64_t>(max_id, entry.second);
  for (const json& t : root.value("added_tokens", json::array())) {
    const auto content = t.at("content").get<std::string>();
    for (const char* flag : {"single_word", "lstrip", "rstrip"}) {
      if (t.value(flag, false)) {
        return make_error("tokenizer.json: added token '", content, "' has ", flag, " true, which is not supported");
      }
    }
    const auto id = t.at("id").get<int64_t>();
    if (id < 0 || id >= kMaxVocabulary) {
      return make_error(ErrorCode::invalid_argument, "tokenizer.json: added token '", content, "' has id ", id,
                        ", outside [0, ", kMaxVocabulary, ")");
    }
    max_id = std::max(max_id, id);
    (t.value("normalized", true) ? impl->normalized_added : impl->raw_added).add(content, static_cast<int32_t>(id));
    impl->added_by_content.emplace(content, static_cast<int32_t>(id));
    added.push_back(Added{static_cast<int32_t>(id), content, t.value("special", false)});
  }

  impl->vocab_size = static_cast<int32_t>(max_id + 1);
  impl->bytes.resize(impl->vocab_size);
  impl->flags.assign(impl->vocab_size, 0);
  auto set_token = [&](int32_t id, const std::string& token) {
    impl->bytes[id] = detail::unicode_to_bytes(token).value_or(token);
    impl->flags[id] = Tokenizer::Impl::kHasToken;
  };
  for (const auto& [token, id] : impl->model.vocab()) set_token(id, token);
  for (const Added& a : added) {  // an added token's id wins over the model's, as in HF
    set_token(a.id, a.content);
    if (a.special) impl->flags[a.id] |= Tokenizer::Impl::kSpecial;
  }
  for (const int32_t id : impl->bos_prefix) {
    if (id < 0 || id >= impl->vocab_size || !(impl->flags[id] & Tokenizer::Impl::kHasToken)) {
      return make_error("tokenizer.json: post_processor special token id ", id, " is not a token (vocab size ",
                        impl->vocab_size, ")");
    }
  }
  return impl;
}

}  // namespace

Expected<Tokenizer> Tokenizer::load(const std::filesystem::path& tokenizer_json) {
  std::ifstream file(tokenizer_json, std::ios::binary);
  if (!file) {
    return make_error("cannot open tokenizer file '", tokenizer_json.string(), "': ", std::strerror(errno));
  }
  std::stringstream buffer;
  buffer << file.rdbuf();
  return parse(buffer.str(), tokenizer_json.string());
}

Expected<Tokenizer> Tokenizer::parse(std::string_view json_text, std::string_view origin) {
  try {
    const json root = json::parse(json_text);
    auto impl = parse_tokenizer(root);
    if (!impl) {
      return make_error(impl.error().message, " (in '", origin, "')");
    }
    return Tokenizer(std::move(impl).value());
  } catch (const json::exception& e) {
    return make_error("tokenizer file '", origin, "' is not a valid tokenizer.json: ", e.what());
  }
}

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<int32_t>& out) const {
  std::vector<std::string_view> pieces{text}, next;
  std::deque<std::string> storage;  // pieces that ByteLevel's add_prefix_space made
  for (const PreTokenizerStep& step : steps) {
    if (step.add_prefix_space) {
      for (auto& piece : pieces) {
        if (piece.front() == ' ') continue;
        piece = storage.emplace_back(" " + std::string(piece));
      }
    }
    if (!step.splitter) continue;
    next.clear();
    for (const auto piece : pieces) step.splitter->split(piece, next);
    pieces.swap(next);
  }
  for (const auto piece : pieces) model.encode_word(piece, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos) ids = impl_->bos_prefix;
  ids.reserve(ids.size() + text.size() / 3 + 4);
  const Impl& impl = *impl_;
  // HF splits off the non-normalized added tokens first, then the normalized ones (the
  // normalizer is null, so both look at the raw text).
  impl.raw_added.split(text, ids, [&](std::string_view gap) {
    impl.normalized_added.split(gap, ids, [&](std::string_view plain) { impl.encode_plain(plain, ids); });
  });
  return ids;
}

Expected<std::string> Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  std::string bytes;
  for (const int32_t id : ids) {
    if (id < 0 || id >= impl_->vocab_size || !(impl_->flags[id] & Impl::kHasToken)) {
      return token_bytes(id).error();  // the error that names the id
    }
    if (skip_special && (impl_->flags[id] & Impl::kSpecial)) continue;
    bytes += impl_->bytes[id];
  }
  return detail::utf8_lossy(bytes);
}

Expected<std::string> Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || id >= impl_->vocab_size) {
    return make_error("token id ", id, " is out of range: the vocab size is ", impl_->vocab_size);
  }
  if (!(impl_->flags[id] & Impl::kHasToken)) {
    return make_error("token id ", id, " has no token (vocab size ", impl_->vocab_size, ")");
  }
  return impl_->bytes[id];
}

int32_t Tokenizer::vocab_size() const { return impl_->vocab_size; }

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  if (const auto it = impl_->added_by_content.find(token); it != impl_->added_by_content.end()) {
    return it->second;
  }
  return impl_->model.find(token);
}

std::optional<int32_t> Tokenizer::bos_id() const {
  if (impl_->bos_prefix.empty()) return std::nullopt;
  return impl_->bos_prefix.front();
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && id < impl_->vocab_size && (impl_->flags[id] & Impl::kSpecial);
}

}  // namespace starmesh
