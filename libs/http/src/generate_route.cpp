// POST /v1/completions and /v1/chat/completions: parse, start the generation, answer it whole
// or as server-sent events, and cancel it when the client goes away or a stop sequence matches.
#include "door.hpp"
#include "generation_pipe.hpp"
#include "starmesh/http/openai_errors.hpp"
#include "starmesh/http/openai_response.hpp"
#include "starmesh/http/stop_matcher.hpp"

namespace starmesh::http {
namespace {

// One answer, shared by the handler and (streaming) the content provider that outlives it.
class Answer {
 public:
  Answer(OpenAiServer::Impl& door, GenerationCall call, AnswerMeta meta, std::vector<std::string> stop,
         bool include_usage)
      : door_(door),
        call_(std::move(call)),
        meta_(std::move(meta)),
        stop_(std::move(stop)),
        include_usage_(include_usage) {
    ++door_.active;
  }
  ~Answer() {
    if (!ended_) call_.stop();  // an answer abandoned midway (the server stopped) stops its generation
    --door_.active;
  }

  // The next news of the generation, or none with gone() set: the client went away or the
  // server is stopping (the generation is cancelled either way).
  GenerationPipe::News next() {
    if (pending_) return *std::exchange(pending_, std::nullopt);
    if (door_.server.stopping()) return give_up(false);
    if (ConnectionServer::peer_gone()) return give_up(true);
    auto news = call_.pipe->take(door_.options.poll);
    tokens_ += news.tokens;
    ended_ = news.result.has_value();
    return news;
  }
  bool gone() const { return gone_; }
  bool client_left() const { return client_left_; }
  void keep(GenerationPipe::News news) { pending_ = std::move(news); }

  // Generated text that may be sent now (stop sequences held back or cut off).
  std::string text(const std::string& generated) {
    std::string out = stop_.feed(generated);
    if (stop_.stopped()) call_.stop();  // nothing after the stop is sent: stop generating it
    return out;
  }
  // The summary to answer with. A generation we stopped for a stop sequence may end as
  // cancelled, with or without a summary: its answer is still a complete one.
  Expected<GenerateSummary> summary(Expected<GenerateSummary> result) const {
    if (result || !stop_.stopped()) return result;
    GenerateSummary s;
    s.generated_tokens = tokens_;
    s.stop_reason = StopReason::cancelled;
    return s;
  }
  std::string tail() { return stop_.flush(); }
  std::string_view finish(const GenerateSummary& s) const { return finish_reason(s, stop_.stopped()); }

  // The streaming provider: one slice of the generation per call.
  bool stream(httplib::DataSink& sink) {
    auto write = [&](const std::string& data) {
      if (sink.write(data.data(), data.size())) return true;
      call_.stop();
      return false;
    };
    if (!opened_) {
      opened_ = true;
      if (meta_.endpoint == Endpoint::chat && !write(sse_role_chunk(meta_))) return false;
    }
    auto news = next();
    if (gone_) return false;
    if (std::string out = text(news.text); !out.empty() && !write(sse_text_chunk(meta_, out))) return false;
    if (!news.result) return true;
    auto s = summary(std::move(*news.result));
    if (!s) {
      write(sse_error(s.error()));  // the OpenAI SDKs raise it; no [DONE] after an error
      sink.done();
      return true;
    }
    if (std::string out = tail(); !out.empty() && !write(sse_text_chunk(meta_, out))) return false;
    if (!write(sse_final_chunk(meta_, finish(*s), *s))) return false;
    if (include_usage_ && !write(sse_usage_chunk(meta_, *s))) return false;
    if (!write(std::string(kSseDone))) return false;
    sink.done();
    return true;
  }
  void cancel() { call_.stop(); }
  const AnswerMeta& meta() const { return meta_; }

 private:
  GenerationPipe::News give_up(bool client_left) {
    if (client_left) ++door_.disconnects;
    call_.stop();
    gone_ = true;
    client_left_ = client_left;
    return {};
  }

  OpenAiServer::Impl& door_;
  GenerationCall call_;
  AnswerMeta meta_;
  StopMatcher stop_;
  bool include_usage_ = false;
  std::optional<GenerationPipe::News> pending_;
  int64_t tokens_ = 0;
  bool gone_ = false, client_left_ = false, opened_ = false, ended_ = false;
};

const char* kJson = "application/json";

void answer_gone(const Answer& a, httplib::Response& res) {
  // Nobody reads this when the client left; a stopping server tells the client why.
  answer_error(res, a.client_left() ? make_error(ErrorCode::cancelled, "the client went away")
                                    : make_error(ErrorCode::unavailable, "the server is stopping"));
}

}  // namespace

void OpenAiServer::Impl::generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res) {
  auto tenant = authenticate(req, res);
  if (!tenant) return;
  std::string param;
  auto parsed = parse_openai_request(endpoint, req.body, param);
  if (!parsed) return answer_error(res, parsed.error(), param);
  if (parsed->model != options.model)
    return answer_error(res,
                        make_error(ErrorCode::not_found, "model '", parsed->model.substr(0, 256),
                                   "' is not served here: this router serves '", options.model, "' (GET /v1/models)"),
                        "model");
  auto request = to_generate_request(*parsed, options.chat, param);
  if (!request) return answer_error(res, request.error(), param);
  request->tenant = std::move(*tenant);  // the token's, whatever the body says
  AnswerMeta meta = new_answer_meta(endpoint, options.model, request->mode);
  auto answer = std::make_shared<Answer>(*this, start_generation(service, std::move(*request)), std::move(meta),
                                         std::move(parsed->stop), parsed->include_usage);
  Answer& a = *answer;

  if (!parsed->stream) {
    std::string text;
    for (;;) {
      auto news = a.next();
      if (a.gone()) return answer_gone(a, res);
      text += a.text(news.text);
      if (!news.result) continue;
      auto s = a.summary(std::move(*news.result));
      if (!s) return answer_error(res, s.error());
      text += a.tail();
      return res.set_content(completion_body(a.meta(), text, a.finish(*s), *s), kJson);
    }
  }

  // Streaming. The status goes out with the first event, so wait for the first news: a request
  // refused before its first token (429, 404, 503, ...) gets its status, not a 200 and an error.
  for (;;) {
    auto news = a.next();
    if (a.gone()) return answer_gone(a, res);
    if (news.result && !*news.result && news.text.empty()) return answer_error(res, news.result->error());
    if (news.result || !news.text.empty() || news.tokens > 0) {
      a.keep(std::move(news));
      break;
    }
  }
  res.set_header("Cache-Control", "no-cache");
  res.set_chunked_content_provider(
      "text/event-stream", [answer](size_t, httplib::DataSink& sink) { return answer->stream(sink); },
      [answer](bool complete) {
        if (!complete) answer->cancel();
      });
}

}  // namespace starmesh::http
