// Stop sequences over a stream of chunks: the text before the first match is sent, nothing of
// the sequence or after it, and a sequence split across chunks is still found.
#include <doctest/doctest.h>

#include "starmesh/http/stop_matcher.hpp"

using starmesh::http::StopMatcher;

TEST_CASE("no stop sequences: everything passes at once") {
  StopMatcher m({});
  CHECK(m.feed("abc") == "abc");
  CHECK(m.flush().empty());
  CHECK_FALSE(m.stopped());
}

TEST_CASE("a stop sequence inside one chunk cuts the text before it") {
  StopMatcher m({"END"});
  CHECK(m.feed("hello END world") == "hello ");
  CHECK(m.stopped());
  CHECK(m.feed("more").empty());
  CHECK(m.flush().empty());
}

TEST_CASE("a stop sequence across chunk boundaries is held back, then cut") {
  StopMatcher m({"STOP"});
  CHECK(m.feed("abcS") == "abc");
  CHECK(m.feed("T") == "");
  CHECK(m.feed("O") == "");
  CHECK(m.feed("Pxyz") == "");
  CHECK(m.stopped());
}

TEST_CASE("a held-back tail that turns out not to be a stop is released") {
  StopMatcher m({"STOP"});
  CHECK(m.feed("abST") == "ab");
  CHECK(m.feed("Ax") == "STAx");
  CHECK(m.feed("S") == "");
  CHECK(m.flush() == "S");
  CHECK_FALSE(m.stopped());
}

TEST_CASE("several sequences: the earliest match wins") {
  StopMatcher m({"world", "lo w"});
  CHECK(m.feed("hello world") == "hel");
  CHECK(m.stopped());
}

TEST_CASE("a stop at the very start sends nothing, multi-byte text is cut between characters") {
  StopMatcher a({"\n"});
  CHECK(a.feed("\nrest") == "");
  CHECK(a.stopped());
  StopMatcher b({"é!"});
  CHECK(b.feed("caf\xc3\xa9") == "caf");  // "é" could begin the stop
  CHECK(b.feed("?") == "\xc3\xa9?");
}
