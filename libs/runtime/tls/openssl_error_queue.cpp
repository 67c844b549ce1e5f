// CAF 0.17's TLS sessions read OpenSSL's per-thread error queue (SSL_get_error) without
// clearing it first. All sessions of a process share the middleman's thread, so one peer whose
// handshake fails (no certificate from the mesh's CA) leaves an error there, and the next
// SSL_write of an unrelated, healthy session reads it as its own failure and drops that
// connection: a rogue peer could disconnect real workers. These definitions interpose the
// calls CAF makes (the executable's symbols win over libssl's) and clear the queue before
// each, as OpenSSL's documentation requires. docs/TRAPS.md has the details.
#include <dlfcn.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

namespace {
template <class Fn>
Fn next_symbol(const char* name) {
  return reinterpret_cast<Fn>(dlsym(RTLD_NEXT, name));
}
}  // namespace

extern "C" {

int SSL_write(SSL* ssl, const void* buf, int num) {
  static const auto real = next_symbol<int (*)(SSL*, const void*, int)>("SSL_write");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_read(SSL* ssl, void* buf, int num) {
  static const auto real = next_symbol<int (*)(SSL*, void*, int)>("SSL_read");
  ERR_clear_error();
  return real(ssl, buf, num);
}

int SSL_accept(SSL* ssl) {
  static const auto real = next_symbol<int (*)(SSL*)>("SSL_accept");
  ERR_clear_error();
  return real(ssl);
}

int SSL_connect(SSL* ssl) {
  static const auto real = next_symbol<int (*)(SSL*)>("SSL_connect");
  ERR_clear_error();
  return real(ssl);
}

}  // extern "C"
