#include "wire.hpp"

#include <kj/debug.h>

#include <utility>

namespace starmesh::api {
namespace {

// Our priorities and their wire enumerants, both ways.
constexpr std::pair<Priority, wire::Priority> kPriorities[] = {{Priority::low, wire::Priority::LOW},
                                                               {Priority::normal, wire::Priority::NORMAL},
                                                               {Priority::high, wire::Priority::HIGH}};

void input_to_wire(const std::string& text, const std::vector<int32_t>& ids, wire::Input::Builder out) {
  if (!ids.empty()) {  // ids win when given, as in GenerateRequest
    auto list = out.initIds(unsigned(ids.size()));
    for (size_t i = 0; i < ids.size(); ++i) list.set(unsigned(i), ids[i]);
  } else {
    out.setText(kj::StringPtr(text.data(), text.size()));
  }
}

void input_from_wire(wire::Input::Reader in, std::string& text, std::vector<int32_t>& ids) {
  if (in.isIds()) {
    ids.clear();
    for (int32_t id : in.getIds()) ids.push_back(id);
  } else {
    auto t = in.getText();
    text.assign(t.begin(), t.end());
  }
}

std::string str(capnp::Text::Reader t) { return std::string(t.begin(), t.end()); }
kj::StringPtr ptr(const std::string& s) { return kj::StringPtr(s.data(), s.size()); }

}  // namespace

Status to_wire(const GenerateRequest& r, wire::GenerateRequest::Builder out) {
  switch (r.mode) {
    case AttentionMode::star:
      out.setMode(wire::Mode::STAR);
      break;
    case AttentionMode::global:
      out.setMode(wire::Mode::GLOBAL);
      break;
    default:
      return make_error(ErrorCode::invalid_argument, "unknown attention mode ", int(r.mode));
  }
  input_to_wire(r.context_text, r.context_ids, out.initContext());
  input_to_wire(r.query_text, r.query_ids, out.initQuery());
  out.setAddBos(r.add_bos);
  out.setBlockSize(r.block_size);
  out.setAnchorSize(r.anchor_size);
  out.setMaxHosts(r.max_hosts);
  out.setMaxNewTokens(r.max_new_tokens);
  out.setKeepContext(r.keep_context);
  out.setProgress(bool(r.on_progress));
  for (const auto& [ours, theirs] : kPriorities)
    if (ours == r.priority) out.setPriority(theirs);
  if (!r.context_id.empty()) out.setContextKey(r.context_id.hex());
  auto s = out.initSampling();
  s.setTemperature(r.sampling.temperature);
  s.setTopK(r.sampling.top_k);
  s.setTopP(r.sampling.top_p);
  s.setSeed(r.sampling.seed);
  return Status::ok();
}

Expected<GenerateRequest> from_wire(wire::GenerateRequest::Reader in) {
  GenerateRequest r;
  switch (in.getMode()) {
    case wire::Mode::STAR:
      r.mode = AttentionMode::star;
      break;
    case wire::Mode::GLOBAL:
      r.mode = AttentionMode::global;
      break;
    default:
      return make_error(ErrorCode::invalid_argument, "unknown mode (enum value ", int(in.getMode()),
                        "): this server knows 'star' and 'global'");
  }
  input_from_wire(in.getContext(), r.context_text, r.context_ids);
  input_from_wire(in.getQuery(), r.query_text, r.query_ids);
  r.add_bos = in.getAddBos();
  r.block_size = in.getBlockSize();
  r.anchor_size = in.getAnchorSize();
  r.max_hosts = in.getMaxHosts();
  r.max_new_tokens = in.getMaxNewTokens();
  r.keep_context = in.getKeepContext();
  bool known_priority = false;
  for (const auto& [ours, theirs] : kPriorities)
    if (theirs == in.getPriority()) r.priority = ours, known_priority = true;
  if (!known_priority)
    return make_error(ErrorCode::invalid_argument, "unknown priority (enum value ", int(in.getPriority()),
                      "): this server knows 'low', 'normal' and 'high'");
  if (in.getContextId() != 0)
    return make_error(ErrorCode::invalid_argument,
                      "contextId (64-bit) is no longer accepted: name a kept context by its contextKey");
  if (in.hasContextKey() && in.getContextKey().size() > 0) {
    SM_ASSIGN(id, ContextId::parse(std::string_view(in.getContextKey().cStr(), in.getContextKey().size())));
    r.context_id = id;
  }
  auto s = in.getSampling();
  r.sampling.temperature = s.getTemperature();
  r.sampling.top_k = s.getTopK();
  r.sampling.top_p = s.getTopP();
  r.sampling.seed = s.getSeed();
  return r;
}

void to_wire(const GenerateSummary& s, wire::GenerateSummary::Builder out) {
  out.setContextTokens(s.context_tokens);
  out.setQueryTokens(s.query_tokens);
  out.setGeneratedTokens(s.generated_tokens);
  out.setHosts(s.hosts);
  out.setPhase1Seconds(s.phase1_seconds);
  out.setPhase1MaxHostSeconds(s.phase1_max_host_seconds);
  out.setPhase2PrefillSeconds(s.phase2_prefill_seconds);
  out.setDecodeSeconds(s.decode_seconds);
  const std::string_view reason = to_string(s.stop_reason);
  out.setStopReason(kj::StringPtr(reason.data(), reason.size()));
  switch (s.stop_reason) {
    case StopReason::eos:
      out.setStop(wire::StopReason::EOS);
      break;
    case StopReason::max_tokens:
      out.setStop(wire::StopReason::MAX_TOKENS);
      break;
    case StopReason::cancelled:
      out.setStop(wire::StopReason::CANCELLED);
      break;
  }
  if (!s.context_id.empty()) out.setContextKey(s.context_id.hex());
  out.setRequestId(s.request_id);
}

void to_wire(const Progress& p, wire::Progress::Builder out) {
  switch (p.stage) {
    case ProgressStage::queued:
      out.setStage(wire::ProgressStage::QUEUED);
      break;
    case ProgressStage::encoding:
      out.setStage(wire::ProgressStage::ENCODING);
      break;
    case ProgressStage::prefill:
      out.setStage(wire::ProgressStage::PREFILL);
      break;
  }
  out.setRequestId(p.request_id);
  out.setBlocksDone(p.blocks_done);
  out.setBlocksTotal(p.blocks_total);
  out.setHosts(p.hosts);
}

std::optional<Progress> from_wire(wire::Progress::Reader in) {
  Progress p;
  switch (in.getStage()) {
    case wire::ProgressStage::QUEUED:
      p.stage = ProgressStage::queued;
      break;
    case wire::ProgressStage::ENCODING:
      p.stage = ProgressStage::encoding;
      break;
    case wire::ProgressStage::PREFILL:
      p.stage = ProgressStage::prefill;
      break;
    default:
      return std::nullopt;  // a stage from a newer server
  }
  p.request_id = in.getRequestId();
  p.blocks_done = in.getBlocksDone();
  p.blocks_total = in.getBlocksTotal();
  p.hosts = in.getHosts();
  return p;
}

GenerateSummary from_wire(wire::GenerateSummary::Reader in) {
  GenerateSummary s;
  s.context_tokens = in.getContextTokens();
  s.query_tokens = in.getQueryTokens();
  s.generated_tokens = in.getGeneratedTokens();
  s.hosts = in.getHosts();
  s.phase1_seconds = in.getPhase1Seconds();
  s.phase1_max_host_seconds = in.getPhase1MaxHostSeconds();
  s.phase2_prefill_seconds = in.getPhase2PrefillSeconds();
  s.decode_seconds = in.getDecodeSeconds();
  switch (in.getStop()) {
    case wire::StopReason::EOS:
      s.stop_reason = StopReason::eos;
      break;
    case wire::StopReason::CANCELLED:
      s.stop_reason = StopReason::cancelled;
      break;
    default:
      s.stop_reason = StopReason::max_tokens;
      break;  // and values from a newer server
  }
  if (in.hasContextKey())
    if (auto id = ContextId::parse(std::string_view(in.getContextKey().cStr(), in.getContextKey().size())))
      s.context_id = *id;
  s.request_id = in.getRequestId();
  return s;
}

void to_wire(const ServerInfo& info, wire::ServerInfo::Builder out) {
  out.setModel(ptr(info.model));
  out.setWorkers(info.workers);
  out.setVersion(ptr(info.version));
  out.setMaxContextTokens(info.max_context_tokens);
}

ServerInfo from_wire(wire::ServerInfo::Reader in) {
  return ServerInfo{str(in.getModel()), in.getWorkers(), str(in.getVersion()), in.getMaxContextTokens()};
}

kj::Exception to_exception(const Error& error) {
  const auto type = error.code == ErrorCode::overloaded ? kj::Exception::Type::OVERLOADED : kj::Exception::Type::FAILED;
  const std::string text = "[" + std::string(to_string(error.code)) + "] " + error.message;
  return kj::Exception(type, __FILE__, __LINE__, kj::heapString(ptr(text)));
}

Error error_of(const kj::Exception& e) {
  std::string text(e.getDescription().cStr());
  constexpr std::string_view remote = "remote exception: ";
  if (text.rfind(remote, 0) == 0) text.erase(0, remote.size());
  if (text.size() > 2 && text[0] == '[') {
    const size_t close = text.find("] ");
    if (close != std::string::npos)
      if (auto code = error_code_from_string(std::string_view(text).substr(1, close - 1)))
        return Error{text.substr(close + 2), *code};
  }
  if (e.getType() == kj::Exception::Type::DISCONNECTED)
    return Error{"the connection to the server was lost (" + text + ")", ErrorCode::unavailable};
  if (e.getType() == kj::Exception::Type::OVERLOADED) return Error{text, ErrorCode::overloaded};
  return Error{text, ErrorCode::internal};
}

}  // namespace starmesh::api
