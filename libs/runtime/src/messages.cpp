#include "starmesh/runtime/messages.hpp"

#include <cstring>

namespace starmesh {

std::vector<uint8_t> pack_ids(std::span<const int32_t> ids) {
  std::vector<uint8_t> bytes(ids.size() * sizeof(int32_t));
  if (!ids.empty()) std::memcpy(bytes.data(), ids.data(), bytes.size());
  return bytes;
}

std::vector<int32_t> unpack_ids(const std::vector<uint8_t>& bytes) {
  std::vector<int32_t> ids(bytes.size() / sizeof(int32_t));
  if (!ids.empty()) std::memcpy(ids.data(), bytes.data(), ids.size() * sizeof(int32_t));
  return ids;
}

void register_mesh_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<Error>("Error");
  cfg.add_message_type<WorkerInfo>("WorkerInfo");
  cfg.add_message_type<WorkerView>("WorkerView");
  cfg.add_message_type<SamplingParams>("SamplingParams");
  cfg.add_message_type<GenerateRequest>("GenerateRequest");
  cfg.add_message_type<ContextId>("ContextId");
  cfg.add_message_type<GenerateSummary>("GenerateSummary");
  cfg.add_message_type<GenerateOrder>("GenerateOrder");
  cfg.add_message_type<ClientChunk>("ClientChunk");
  cfg.add_message_type<Progress>("Progress");
  cfg.add_message_type<PlacementAsk>("PlacementAsk");
  cfg.add_message_type<PlanSpec>("PlanSpec");
  cfg.add_message_type<Ticket>("Ticket");
  cfg.add_message_type<PlacedHost>("PlacedHost");
  cfg.add_message_type<Placement>("Placement");
  cfg.add_message_type<GroupMember>("GroupMember");
  cfg.add_message_type<EncodeOrder>("EncodeOrder");
  cfg.add_message_type<EncodeReport>("EncodeReport");
  cfg.add_message_type<Phase2Order>("Phase2Order");
  cfg.add_message_type<TokenBatch>("TokenBatch");
  cfg.add_message_type<Phase2Report>("Phase2Report");
  cfg.add_message_type<CoordinatorActor>("CoordinatorActor");
  cfg.add_message_type<RequestActor>("RequestActor");
  cfg.add_message_type<ClientSinkActor>("ClientSinkActor");
  cfg.add_message_type<WorkerActor>("WorkerActor");
  cfg.add_message_type<RouterActor>("RouterActor");
  cfg.add_message_type<std::vector<int32_t>>("std::vector<int32_t>");
  cfg.add_message_type<std::vector<uint8_t>>("std::vector<uint8_t>");
}

namespace {
const caf::atom_value mesh_category = caf::atom("starmesh");
}

// The code travels as the caf::error's own code (offset by one: CAF reads 0 as "no error").
caf::error mesh_error(Error error) {
  return caf::error(uint8_t(uint8_t(error.code) + 1), mesh_category, caf::make_message(std::move(error.message)));
}

caf::error mesh_error(ErrorCode code, std::string message) { return mesh_error(Error{std::move(message), code}); }

Error to_error(const caf::error& e) {
  if (!e) return Error{"no error"};
  const caf::message& ctx = e.context();
  if (e.category() == mesh_category && ctx.match_elements<std::string>()) {
    ErrorCode code = ErrorCode::internal;
    for (ErrorCode c : kAllErrorCodes)  // a peer's code outside the set stays internal
      if (uint8_t(c) + 1 == e.code()) code = c;
    return Error{ctx.get_as<std::string>(0), code};
  }
  if (e == caf::sec::request_timeout) return Error{"the request timed out", ErrorCode::timeout};
  if (e == caf::sec::request_receiver_down)
    return Error{"the receiver of the request went away", ErrorCode::unavailable};
  if (e == caf::sec::unexpected_message)
    return Error{"unexpected message (is every mesh message type registered on both sides?)"};
  return Error{caf::to_string(e)};
}

std::string describe(const caf::error& e) { return to_error(e).message; }

std::string format_seconds(std::chrono::milliseconds ms) {
  std::string t = std::to_string(double(ms.count()) / 1000.0);
  t.erase(t.find_last_not_of('0') + 1);
  if (!t.empty() && t.back() == '.') t.pop_back();
  return t + " s";
}

}  // namespace starmesh
