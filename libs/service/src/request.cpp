#include "starmesh/service/request.hpp"

namespace starmesh {

std::string_view to_string(AttentionMode mode) { return mode == AttentionMode::global ? "global" : "star"; }

std::string_view to_string(StopReason reason) {
  switch (reason) {
    case StopReason::eos:
      return "eos";
    case StopReason::max_tokens:
      return "max_tokens";
    case StopReason::cancelled:
      return "cancelled";
  }
  return "max_tokens";
}

std::string_view to_string(ProgressStage stage) {
  switch (stage) {
    case ProgressStage::queued:
      return "queued";
    case ProgressStage::encoding:
      return "encoding";
    case ProgressStage::prefill:
      return "prefill";
  }
  return "queued";
}

std::optional<AttentionMode> attention_mode_from_string(std::string_view text) {
  if (text == "star") return AttentionMode::star;
  if (text == "global") return AttentionMode::global;
  return std::nullopt;
}

std::string_view to_string(Priority priority) {
  switch (priority) {
    case Priority::low:
      return "low";
    case Priority::normal:
      return "normal";
    case Priority::high:
      return "high";
  }
  return "normal";
}

std::optional<Priority> priority_from_string(std::string_view text) {
  for (Priority p : {Priority::low, Priority::normal, Priority::high})
    if (to_string(p) == text) return p;
  return std::nullopt;
}

std::optional<StopReason> stop_reason_from_string(std::string_view text) {
  for (StopReason r : {StopReason::eos, StopReason::max_tokens, StopReason::cancelled})
    if (to_string(r) == text) return r;
  return std::nullopt;
}

}  // namespace starmesh
