#pragma once
// Errors as OpenAI clients expect them: an HTTP status chosen by the error's code, and the body
// {"error": {"message", "type", "param", "code"}} where "code" is starmesh's ErrorCode spelling
// (programs branch on it, as on every other wire) and "type" OpenAI's family of the status.
#include <string>
#include <string_view>

#include "starmesh/core/expected.hpp"

namespace starmesh::http {

// invalid_argument 400, refused 400 (this mesh can never serve it: retrying cannot help),
// unauthenticated 401, not_found 404, overloaded 429, cancelled 499, internal 500,
// unavailable 503, timeout 504.
int http_status(ErrorCode code);
// invalid_request_error (400, 404), authentication_error (401), rate_limit_error (429),
// server_error (5xx), cancelled (499).
std::string_view error_type(ErrorCode code);
// The body; `param` names the request field at fault ("": null).
std::string error_body(const Error& error, std::string_view param = {});

}  // namespace starmesh::http
