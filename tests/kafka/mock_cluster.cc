// herald_test_kafka_mock: a librdkafka mock cluster (rdkafka_mock.h) served
// on 127.0.0.1 until SIGTERM, so the `herald` binary relays to it over TCP
// exactly as to a real cluster (Debian kcat can read it too).
//
//   herald_test_kafka_mock [--brokers N] [--fixed-leaders]
//                          --topic NAME:PARTITIONS ...
//
// Prints the bootstrap address ("127.0.0.1:P1,127.0.0.1:P2,...") as its
// first line on stdout. With --fixed-leaders partition p of every topic is
// led by broker (p % N) + 1 (each assignment is a round trip to the mock's
// thread that can take a while: use it for a few partitions); otherwise
// the mock picks. Then it reads commands, one a line, from stdin and answers
// each with one line, "ok" or "error <why>":
//   down B             broker B refuses connections
//   (rd_kafka_mock_broker_set_down) up B               and takes them again
//   errors API E [E..] the next requests of API key API (0 = Produce) fail
//                      with these error codes, one each, on any broker
//   clear API          forgets the queued errors of API
//   topic NAME:P       creates another topic
// EOF on stdin just ends the commands. Exits 0 on SIGTERM or SIGINT.
#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace {

int brokers = 3;
bool fixed_leaders = false;

std::string CreateTopic(rd_kafka_mock_cluster_t* mc, const std::string& spec) {
  size_t colon = spec.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return "expected NAME:PARTITIONS, got '" + spec + "'";
  }
  std::string name = spec.substr(0, colon);
  int parts = std::atoi(spec.c_str() + colon + 1);
  if (parts < 1) return "bad partition count in '" + spec + "'";
  rd_kafka_resp_err_t err = rd_kafka_mock_topic_create(
      mc, name.c_str(), parts, brokers < 3 ? brokers : 3);
  if (err) return rd_kafka_err2str(err);
  for (int p = 0; fixed_leaders && p < parts; ++p) {
    err = rd_kafka_mock_partition_set_leader(mc, name.c_str(), p,
                                             p % brokers + 1);
    if (err) return rd_kafka_err2str(err);
  }
  return "";
}

std::string Run(rd_kafka_mock_cluster_t* mc, const std::string& line) {
  std::istringstream in(line);
  std::string cmd;
  in >> cmd;
  if (cmd == "down" || cmd == "up") {
    int b = 0;
    in >> b;
    rd_kafka_resp_err_t err = cmd == "down"
                                  ? rd_kafka_mock_broker_set_down(mc, b)
                                  : rd_kafka_mock_broker_set_up(mc, b);
    return err ? rd_kafka_err2str(err) : "";
  }
  if (cmd == "errors") {
    int api = -1;
    in >> api;
    std::vector<rd_kafka_resp_err_t> errs;
    int e;
    while (in >> e) errs.push_back(static_cast<rd_kafka_resp_err_t>(e));
    if (api < 0 || errs.empty()) return "usage: errors API ERR [ERR...]";
    rd_kafka_mock_push_request_errors_array(mc, static_cast<int16_t>(api),
                                            errs.size(), errs.data());
    return "";
  }
  if (cmd == "clear") {
    int api = -1;
    in >> api;
    if (api < 0) return "usage: clear API";
    rd_kafka_mock_clear_request_errors(mc, static_cast<int16_t>(api));
    return "";
  }
  if (cmd == "topic") {
    std::string spec;
    in >> spec;
    return CreateTopic(mc, spec);
  }
  return "unknown command '" + cmd + "'";
}

// The mock's broker sockets keep Nagle's algorithm on, where Kafka brokers
// set TCP_NODELAY: a response written right behind another then waits for
// the client's delayed ACK (about 40 ms on Linux), which no real broker
// costs. This thread sets TCP_NODELAY on every socket of the process, new
// ones within a few milliseconds.
void NoDelayForever() {
  for (;;) {
    if (DIR* d = opendir("/proc/self/fd")) {
      while (dirent* e = readdir(d)) {
        int fd = std::atoi(e->d_name);
        struct stat st;
        if (fd > 2 && fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode)) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        }
      }
      closedir(d);
    }
    usleep(2000);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> topics;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--brokers" && i + 1 < argc) {
      brokers = std::atoi(argv[++i]);
    } else if (a == "--fixed-leaders") {
      fixed_leaders = true;
    } else if (a == "--topic" && i + 1 < argc) {
      topics.push_back(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: %s [--brokers N] [--fixed-leaders] --topic "
                   "NAME:PARTITIONS ...\n",
                   argv[0]);
      return 2;
    }
  }
  if (brokers < 1) brokers = 1;

  // SIGTERM and SIGINT are taken by sigwait below, in every thread.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop, nullptr);

  char errstr[512];
  rd_kafka_conf_t* conf = rd_kafka_conf_new();
  // The handle only hosts the cluster: quiet about having no brokers.
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t* rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    std::fprintf(stderr, "rd_kafka_new: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t* mc = rd_kafka_mock_cluster_new(rk, brokers);
  if (!mc) {
    std::fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
    return 1;
  }
  for (const auto& t : topics) {
    std::string why = CreateTopic(mc, t);
    if (!why.empty()) {
      std::fprintf(stderr, "topic %s: %s\n", t.c_str(), why.c_str());
      return 1;
    }
  }
  std::thread(NoDelayForever).detach();
  std::printf("%s\n", rd_kafka_mock_cluster_bootstraps(mc));
  std::fflush(stdout);

  std::thread commands([mc] {
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line.empty()) continue;
      std::string why = Run(mc, line);
      if (why.empty()) {
        std::printf("ok\n");
      } else {
        std::printf("error %s\n", why.c_str());
      }
      std::fflush(stdout);
    }
  });
  commands.detach();  // may sit in a read; the process ends below

  int sig = 0;
  sigwait(&stop, &sig);
  // No teardown: the command thread may be inside the mock's API; exiting
  // closes every socket.
  std::fflush(stdout);
  std::_Exit(0);
}
