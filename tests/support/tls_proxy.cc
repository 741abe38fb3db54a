// herald_test_tls_proxy: terminates TLS in front of a plain TCP server on
// 127.0.0.1, so the HTTPS sender meets the same test receiver as HTTP.
//
//   herald_test_tls_proxy --port N --to M --cert PEM --key PEM
//                         [--ready FILE]
//
// Each accepted connection gets a thread: TLS handshake, a connection to
// 127.0.0.1:M, then bytes both ways until either side closes; a close by
// the backend (a cut response included) is passed on as a TLS close_notify
// and a close. --ready FILE is created once the port listens. Exits on
// SIGTERM/SIGINT.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

namespace {

int ConnectTo(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

bool WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

void Serve(SSL_CTX* ctx, int client, int to) {
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, client);
  int backend = -1;
  if (SSL_accept(ssl) == 1 && (backend = ConnectTo(to)) >= 0) {
    char buf[16384];
    for (;;) {
      pollfd fds[2] = {{client, POLLIN, 0}, {backend, POLLIN, 0}};
      if (SSL_pending(ssl) == 0 && ::poll(fds, 2, -1) < 0) break;
      if (SSL_pending(ssl) > 0 || fds[0].revents != 0) {
        int n = SSL_read(ssl, buf, sizeof buf);
        if (n <= 0) break;
        if (!WriteAll(backend, buf, static_cast<size_t>(n))) break;
      }
      if (fds[1].revents != 0) {
        ssize_t n = ::read(backend, buf, sizeof buf);
        if (n <= 0) break;
        if (SSL_write(ssl, buf, static_cast<int>(n)) <= 0) break;
      }
    }
    SSL_shutdown(ssl);
  }
  SSL_free(ssl);
  ::close(client);
  if (backend >= 0) ::close(backend);
}

}  // namespace

int main(int argc, char** argv) {
  int port = 0, to = 0;
  std::string cert, key, ready;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i], v = argv[i + 1];
    if (a == "--port") {
      port = std::atoi(v.c_str());
    } else if (a == "--to") {
      to = std::atoi(v.c_str());
    } else if (a == "--cert") {
      cert = v;
    } else if (a == "--key") {
      key = v;
    } else if (a == "--ready") {
      ready = v;
    } else {
      std::fprintf(stderr, "tls_proxy: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  signal(SIGPIPE, SIG_IGN);
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx || SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
    ERR_print_errors_fp(stderr);
    return 1;
  }
  int lfd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(lfd, 1024) != 0) {
    std::perror("tls_proxy: bind/listen");
    return 1;
  }
  if (!ready.empty()) {
    int f = ::open(ready.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (f >= 0) ::close(f);
  }
  for (;;) {
    int c = ::accept(lfd, nullptr, nullptr);
    if (c < 0) continue;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    // A test helper: connection threads end with their connection, and
    // the process ends by signal.
    std::thread(Serve, ctx, c, to).detach();
  }
}
