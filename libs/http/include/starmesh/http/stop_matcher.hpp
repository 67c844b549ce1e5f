#pragma once
// OpenAI's `stop`: generation ends at the first occurrence of any stop sequence in the
// generated text, and neither the sequence nor anything after it is sent. Text arrives in
// chunks, so a sequence may straddle chunks: the matcher holds back the shortest tail that
// could still begin one, and releases it once it cannot (or at the end).
#include <string>
#include <string_view>
#include <vector>

namespace starmesh::http {

class StopMatcher {
 public:
  explicit StopMatcher(std::vector<std::string> stops) : stops_(std::move(stops)) {}

  // Takes the next generated text; returns what may be sent now. Once a sequence matched,
  // stopped() is true and everything after it is dropped.
  std::string feed(std::string_view text);
  // The end of generation: the held-back tail, which no sequence completed.
  std::string flush();
  bool stopped() const { return stopped_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool stopped_ = false;
};

}  // namespace starmesh::http
