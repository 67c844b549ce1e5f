#include "progress_printer.hpp"

#include <fmt/core.h>

#include <cstdio>
#include <nlohmann/json.hpp>

namespace starmesh::cli {

namespace {
void emit(const nlohmann::json& j) {
  std::fputs((j.dump() + "\n").c_str(), stderr);
  std::fflush(stderr);
}
}  // namespace

void ProgressPrinter::request(const Progress& p) const {
  if (json_) {
    nlohmann::json j;
    j["progress"] = to_string(p.stage);
    j["request_id"] = p.request_id;
    j["done"] = p.blocks_done;
    j["total"] = p.blocks_total;
    j["hosts"] = p.hosts;
    return emit(j);
  }
  switch (p.stage) {
    case ProgressStage::queued:
      fmt::print(stderr, "request {}: queued\n", p.request_id);
      break;
    case ProgressStage::encoding:
      fmt::print(stderr, "request {}: phase 1: {}/{} blocks on {} hosts\n", p.request_id, p.blocks_done, p.blocks_total,
                 p.hosts);
      break;
    case ProgressStage::prefill:
      fmt::print(stderr, "request {}: phase 2: query prefill on the query host\n", p.request_id);
      break;
  }
}

void ProgressPrinter::local(std::string_view what, int64_t done, int64_t total) const {
  if (json_) {
    nlohmann::json j;
    j["progress"] = what;
    j["done"] = done;
    j["total"] = total;
    return emit(j);
  }
  fmt::print(stderr, "{}: {}/{}\n", what, done, total);
}

}  // namespace starmesh::cli
