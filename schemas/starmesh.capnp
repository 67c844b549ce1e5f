@0xf01ef99eae9a1240;
# The public API of starmesh: what a client speaks to the router over Cap'n Proto RPC.
#
# The router's bootstrap capability is `Gateway`: a client logs in with a token the operator
# issued and gets the `Starmesh` capability, which is reachable only that way (a capability is
# the session: whoever holds it may use it; nothing else is checked per call).
#
# Errors: a request that cannot be served is refused with an exception whose description is
# "[CODE] MESSAGE": CODE is one of the ErrorCode names below (a program branches on it, never on
# the message), MESSAGE says what to change (for people). The exception's type is OVERLOADED
# for `overloaded` (retry later), FAILED for every other code; an exception without the
# "[CODE] " prefix (raised by the RPC system itself) has code `internal`, or `unavailable`
# when its type is DISCONNECTED (the connection was lost). The client library returns the
# code and message as an error value. Evolve by adding fields, methods and enumerants with
# new ordinals only; never renumber.

enum ErrorCode {
  # Mirrors starmesh::ErrorCode (libs/core/include/starmesh/core/error_code.hpp); the
  # exception prefix spells the enumerant in snake_case ("[invalid_argument] ...").
  internal @0;         # a bug or an unexpected failure
  invalidArgument @1;  # the request is wrong: fix it, do not retry as is
  notFound @2;         # what it names does not exist (any more), e.g. a dropped kept context
  refused @3;          # valid, but this mesh can never serve it
  overloaded @4;       # valid and servable, but not now: retry later
  timeout @5;          # a deadline passed
  cancelled @6;        # the client stopped it
  unavailable @7;      # a peer went away or cannot be reached: retry may succeed
  unauthenticated @8;  # no or wrong credentials (login)
}

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("starmesh::api::wire");

interface Gateway {
  login @0 (credentials :Text) -> (starmesh :Starmesh);
  # `credentials`: one of the tokens in the router's --api-tokens-file. Anything else is refused
  # with code `unauthenticated` (after a short pause, to slow guessing). A router started without a
  # tokens file is open: any credentials are accepted (for local use only).
}

interface Starmesh {
  generate @0 (request :GenerateRequest, sink :TokenSink) -> (summary :GenerateSummary);
  # Runs one request: generated tokens are streamed to `sink` (several per push when the client
  # is slower than generation), then `sink.done()` is called and the summary returned.
  # The client cancels by throwing from `push` or by dropping the call (disconnecting too):
  # the request then stops at the next token.

  info @1 () -> (info :ServerInfo);
  # What this endpoint serves; cheap, also a reachability check.

  dropContext @2 (contextId :UInt64, contextKey :Text) -> ();
  # Frees a context kept with keepContext (once the requests asking it end), named by the 32 hex
  # digits the summary gave (`contextKey`). Fails with NOT_FOUND ("[not_found] ...") when no such
  # context belongs to this login's token. contextId (64-bit, sequential) is no longer
  # accepted: a nonzero one is refused.
}

interface TokenSink {
  push @0 (ids :List(Int32), text :Text) -> stream;
  # The next generated token ids, in order, and their decoded text (complete UTF-8: a character
  # split across tokens arrives whole with the push that completes it).

  done @1 ();
  # The stream ended cleanly (sent before `generate` returns its summary).

  progress @2 (event :Progress) -> stream;
  # Where the request is, sent only when the request asked for it (`progress`): `queued` first
  # (it carries the request id), `encoding` as phase-1 blocks finish on the hosts, `prefill`
  # when the query host starts; the tokens follow. A slow client gets every stage, and of
  # the `encoding` counts only the latest.
}

enum ProgressStage {
  # Mirrors starmesh::ProgressStage (libs/service/include/starmesh/service/request.hpp).
  queued @0;    # accepted, waiting to be placed on workers with free KV
  encoding @1;  # phase 1: blocksDone of blocksTotal context blocks encoded, over every host
  prefill @2;   # phase 2: the query host runs the query; the first token follows
}

struct Progress {
  stage @0 :ProgressStage;
  requestId @1 :UInt64;         # the router's id for this request (its log lines name it)
  blocksDone @2 :Int64;
  blocksTotal @3 :Int64;        # 0 when no block is encoded (a kept context is asked)
  hosts @4 :Int32;              # hosts holding the context (encoding, prefill)
}

struct Input {
  # A context or a query: text, tokenized by the server, or token ids.
  union {
    text @0 :Text;
    ids @1 :List(Int32);
  }
}

enum StopReason {
  eos @0;        # the model produced an end-of-sequence token
  maxTokens @1;  # maxNewTokens were generated
  cancelled @2;  # the client cancelled (or disconnected)
}

enum Mode {
  star @0;    # Star Attention: blockwise context encoding, exact attention for query and output
  global @1;  # plain global attention over context + query (reference, short contexts)
}

struct Sampling {
  temperature @0 :Float32 = 0;  # 0: greedy
  topK @1 :Int32 = 0;           # 0: no limit
  topP @2 :Float32 = 1.0;       # (0, 1]
  seed @3 :UInt64 = 0;
}

struct GenerateRequest {
  # Mirrors starmesh::GenerateRequest (libs/service/include/starmesh/service/request.hpp).
  context @0 :Input;            # may be empty in global mode
  query @1 :Input;
  addBos @2 :Bool = true;       # prepend BOS when tokenizing text
  mode @3 :Mode = star;
  blockSize @4 :Int64 = 0;      # 0: the server's default
  anchorSize @5 :Int64 = -1;    # -1: = blockSize; 0: no anchor
  maxHosts @6 :Int32 = 0;       # 0: every available worker
  maxNewTokens @7 :Int32 = 64;
  sampling @8 :Sampling;
  keepContext @9 :Bool = false; # keep the context encoded after this request: ask it again with
                                # contextKey (it is dropped when its KV is needed, oldest first)
  contextId @10 :UInt64 = 0;    # no longer accepted (refused when nonzero): use contextKey
  contextKey @11 :Text;         # a kept context to ask, the 32 hex digits its summary gave (give no
                                # context then); only the login's token that kept it may ask it
  progress @12 :Bool = false;   # send progress events to the sink (TokenSink.progress)
  priority @13 :Priority = normal;  # among this login's own requests: higher ones queue and
                                    # encode first (never ahead of other logins' requests)
}

enum Priority {
  normal @0;
  low @1;
  high @2;
}

struct GenerateSummary {
  # Mirrors starmesh::GenerateSummary.
  contextTokens @0 :Int64;
  queryTokens @1 :Int64;
  generatedTokens @2 :Int64;
  hosts @3 :Int32;
  phase1Seconds @4 :Float64;
  phase2PrefillSeconds @5 :Float64;
  decodeSeconds @6 :Float64;
  stopReason @7 :Text;          # deprecated spelling of `stop`: "eos", "max_tokens", "cancelled"
  contextId @8 :UInt64;         # always 0 now: see contextKey

  stop @9 :StopReason;          # why generation stopped
  phase1MaxHostSeconds @10 :Float64;  # the slowest host's own phase 1 (timed to its device's end)
  contextKey @11 :Text;         # the kept context this request made or asked, 32 hex digits ("": none)
  requestId @12 :UInt64;        # the router's id for this request (its log lines name it)
}

struct ServerInfo {
  model @0 :Text;               # the served checkpoint's name
  workers @1 :UInt32;           # context workers available now
  version @2 :Text;             # starmesh version
  maxContextTokens @3 :Int64;   # 0: not known
}
