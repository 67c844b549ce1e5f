#include "starmesh/http/bearer_auth.hpp"

#include <algorithm>
#include <cctype>

#include "starmesh/service/api_tokens.hpp"

namespace starmesh::http {

std::optional<std::string_view> bearer_token(std::string_view authorization) {
  constexpr std::string_view kScheme = "bearer ";
  if (authorization.size() < kScheme.size()) return std::nullopt;
  for (size_t i = 0; i < kScheme.size(); ++i)  // the scheme is case-insensitive (RFC 9110)
    if (char(std::tolower(static_cast<unsigned char>(authorization[i]))) != kScheme[i]) return std::nullopt;
  std::string_view token = authorization.substr(kScheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && token.back() == ' ') token.remove_suffix(1);
  if (token.empty()) return std::nullopt;
  return token;
}

BearerAuth::BearerAuth(std::vector<std::string> tokens, Options options) : tokens_(std::move(tokens)), o_(options) {}

Expected<std::string> BearerAuth::check(const std::string& peer, std::string_view authorization,
                                        Clock::time_point now) {
  if (tokens_.empty()) return std::string();
  const auto allowance = o_.spacing * o_.burst;
  std::lock_guard lock(mutex_);
  auto it = debt_.find(peer);
  if (it != debt_.end() && it->second > now + allowance)
    return make_error(ErrorCode::overloaded,
                      "too many failed authentications from this address: wait a moment and try again");
  const auto token = bearer_token(authorization);
  if (token && api_token_accepted(tokens_, *token)) return std::string(*token);
  if (it == debt_.end()) {
    if (debt_.size() >= o_.max_peers)  // forget the peers whose failures are paid off
      std::erase_if(debt_, [&](const auto& kv) { return kv.second <= now; });
    it = debt_.try_emplace(debt_.size() >= o_.max_peers ? std::string("*") : peer, now).first;
  }
  it->second = std::max(it->second, now) + o_.spacing;
  return make_error(ErrorCode::unauthenticated, token ? "this Bearer token is not among the router's API tokens"
                                                      : "no Bearer token: send \"Authorization: Bearer <API token>\"");
}

}  // namespace starmesh::http
