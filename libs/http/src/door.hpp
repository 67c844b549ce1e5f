#pragma once
// What the door's route handlers share: the service, options, auth, the server and counters.
#include <atomic>
#include <thread>

#include "connection_server.hpp"
#include "starmesh/http/bearer_auth.hpp"
#include "starmesh/http/openai_server.hpp"

namespace starmesh::http {

// Answers `error` as OpenAI does (status, JSON body, Retry-After for 429).
void answer_error(httplib::Response& res, const Error& error, std::string_view param = {});

struct OpenAiServer::Impl {
  Impl(generate_service_i& s, OpenAiServerOptions o);
  generate_service_i& service;
  OpenAiServerOptions options;
  BearerAuth auth;
  ConnectionServer server;
  std::thread thread;
  int port = 0;
  std::atomic<int64_t> active{0}, disconnects{0};

  // The tenant of an authenticated request, or the error already answered.
  Expected<std::string> authenticate(const httplib::Request& req, httplib::Response& res);
  // POST /v1/completions and /v1/chat/completions (generate_route.cpp).
  void generate(Endpoint endpoint, const httplib::Request& req, httplib::Response& res);
};

}  // namespace starmesh::http
