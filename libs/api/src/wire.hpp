#pragma once
// Translation between the generated Cap'n Proto types (schemas/starmesh.capnp) and the
// starmesh C++ structs. Private to libs/api: nothing outside it sees generated types.
#include <kj/exception.h>

#include <optional>
#include <string>

#include "starmesh.capnp.h"
#include "starmesh/api/server_info.hpp"
#include "starmesh/core/expected.hpp"
#include "starmesh/service/generate_service.hpp"

namespace starmesh::api {

// Refuses what the wire cannot say (an out-of-range mode).
Status to_wire(const GenerateRequest& request, wire::GenerateRequest::Builder out);
// Refuses what this server does not know (an enum value from a newer client).
Expected<GenerateRequest> from_wire(wire::GenerateRequest::Reader in);

void to_wire(const GenerateSummary& summary, wire::GenerateSummary::Builder out);
GenerateSummary from_wire(wire::GenerateSummary::Reader in);

void to_wire(const Progress& progress, wire::Progress::Builder out);
// Empty for a stage this client does not know (from a newer server): skip it.
std::optional<Progress> from_wire(wire::Progress::Reader in);

void to_wire(const ServerInfo& info, wire::ServerInfo::Builder out);
ServerInfo from_wire(wire::ServerInfo::Reader in);

// A refusal or failure as the exception that carries it to the client: its description is
// "[code] message" (the mapping the schema documents), its type OVERLOADED for `overloaded`.
kj::Exception to_exception(const Error& error);
// The error an exception from the RPC system carries: its code and message, without the
// "remote exception: " prefix; a lost connection is `unavailable`, said in words.
Error error_of(const kj::Exception& e);

}  // namespace starmesh::api
