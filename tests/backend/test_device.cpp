// --device, one rule for every command.
#include <doctest/doctest.h>

#include "starmesh/backend/device.hpp"

using namespace starmesh;

TEST_CASE("device specs: cpu, cuda, cuda:N and auto parse, and anything else is refused naming the forms") {
  CHECK(parse_device("cpu")->kind == DeviceSpec::Kind::cpu);
  CHECK(parse_device("auto")->kind == DeviceSpec::Kind::automatic);
  CHECK(to_string(*parse_device("cuda")) == "cuda:0");
  CHECK(parse_device("cuda:3")->index == 3);
  for (const char* bad : {"", "gpu", "cuda:", "cuda:-1", "cuda:64", "cuda:1x", "CPU", "cuda:99999999999"}) {
    CAPTURE(bad);
    auto d = parse_device(bad);
    REQUIRE_FALSE(d);
    CHECK(d.code() == ErrorCode::invalid_argument);
    CHECK(d.error().message.find("cpu, cuda, cuda:N") != std::string::npos);
  }
}

TEST_CASE("the backend factory makes the CPU backend, and auto resolves to a device that exists") {
  ThreadPool pool(1);
  auto cpu = make_backend(*parse_device("cpu"), pool);
  REQUIRE(cpu);
  CHECK((*cpu)->name().find("cpu") != std::string::npos);
  const DeviceSpec resolved = resolve_device(*parse_device("auto"));
  CHECK(resolved.kind != DeviceSpec::Kind::automatic);
  CHECK(make_backend(resolved, pool));
}
