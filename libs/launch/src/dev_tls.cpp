#include "starmesh/launch/dev_tls.hpp"

#include <cstdlib>
#include <filesystem>

namespace starmesh {
namespace {

Status run(const std::string& command) {
  const int rc = std::system((command + " > /dev/null 2>&1").c_str());
  if (rc != 0)
    return make_error(ErrorCode::internal, "'", command, "' failed (exit status ", rc, "): is openssl installed?");
  return {};
}

}  // namespace

Expected<DevTls> make_dev_tls(const std::string& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ErrorCode::internal, "cannot create ", dir, ": ", ec.message());
  const std::string d = "'" + dir + "'/";
  const std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  SM_TRY(run("openssl req -x509 " + key + " -keyout " + d + "ca-key.pem -out " + d +
             "ca.pem -days 30 -subj '/CN=starmesh development CA'"));
  SM_TRY(run("openssl req " + key + " -keyout " + d + "mesh-key.pem -out " + d + "mesh.csr -subj '/CN=starmesh mesh'"));
  SM_TRY(run("openssl x509 -req -in " + d + "mesh.csr -CA " + d + "ca.pem -CAkey " + d +
             "ca-key.pem -CAcreateserial -out " + d + "mesh.pem -days 30"));
  SM_TRY(run("openssl req -x509 " + key + " -keyout " + d + "rogue-key.pem -out " + d +
             "rogue.pem -days 30 -subj '/CN=not of this mesh'"));
  DevTls out;
  out.mesh = MeshTls{dir + "/ca.pem", dir + "/mesh.pem", dir + "/mesh-key.pem"};
  out.rogue = MeshTls{dir + "/ca.pem", dir + "/rogue.pem", dir + "/rogue-key.pem"};
  return out;
}

}  // namespace starmesh
