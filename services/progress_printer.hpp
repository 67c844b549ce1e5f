#pragma once
// Progress on standard error for `generate --progress` and `client generate --progress`: one
// line per event, for people ("request 7: phase 1: 3/8 blocks on 2 hosts"), or with --json one
// JSON object per line ({"progress": "encoding", "request_id": 7, "done": 3, "total": 8,
// "hosts": 2}) so a script can follow a long request without parsing text.
#include <cstdint>
#include <string_view>

#include "starmesh/service/request.hpp"

namespace starmesh::cli {

class ProgressPrinter {
 public:
  explicit ProgressPrinter(bool json) : json_(json) {}
  // A stage of a request served by a mesh (the API's progress events).
  void request(const Progress& p) const;
  // Local work: `what` is "loading" (layers) or "encoding" (phase-1 blocks).
  void local(std::string_view what, int64_t done, int64_t total) const;

 private:
  bool json_;
};

}  // namespace starmesh::cli
