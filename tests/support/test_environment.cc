#include "tests/support/test_environment.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cstdlib>
#include <fstream>
#include <random>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include <arpa/inet.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>

namespace stip::testing {
namespace {

std::string RequiredEnvironment(const char* name, const char* what) {
  const char* value = std::getenv(name);
  if (value == nullptr || *value == '\0') {
    ADD_FAILURE() << name << " is not set: this test needs " << what
                  << ". Run the suite with scripts/test.sh, which starts it.";
    return "";
  }
  return value;
}

int64_t ReadStatusKib(const std::string& path, const std::string& field) {
  std::ifstream status(path);
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field, 0) == 0) return std::atoll(line.c_str() + field.size());
  }
  return 0;
}

}  // namespace

std::string KafkaBootstrap() {
  return RequiredEnvironment("STIP_TEST_KAFKA", "a real Kafka broker");
}

std::string PostgresUrl() {
  return RequiredEnvironment("STIP_TEST_POSTGRES", "a real PostgreSQL server");
}

std::string FreshPostgresDatabase(const std::string& prefix) {
  const std::string base = PostgresUrl();
  if (base.empty()) return "";
  // Database names: lowercase, digits and '_' only, at most 63 bytes.
  std::string name = UniqueName(prefix);
  for (char& c : name) c = std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '_';
  name = name.substr(0, 63);
  PGconn* connection = PQconnectdb(base.c_str());
  if (PQstatus(connection) != CONNECTION_OK) {
    ADD_FAILURE() << "cannot connect to " << base << ": " << PQerrorMessage(connection);
    PQfinish(connection);
    return "";
  }
  PGresult* result = PQexec(connection, ("CREATE DATABASE " + name).c_str());
  const bool created = PQresultStatus(result) == PGRES_COMMAND_OK;
  if (!created) ADD_FAILURE() << "CREATE DATABASE " << name << ": " << PQerrorMessage(connection);
  PQclear(result);
  PQfinish(connection);
  if (!created) return "";
  // The URL's path is the database: replace it, keeping any ?parameters.
  const size_t authority = base.find("//");
  const size_t path = base.find('/', authority == std::string::npos ? 0 : authority + 2);
  const size_t query = base.find('?', path == std::string::npos ? 0 : path);
  std::string url = base.substr(0, path) + "/" + name;
  if (query != std::string::npos) url += base.substr(query);
  return url;
}

std::filesystem::path SourcePath(const std::string& relative) {
  return std::filesystem::path(STIP_SOURCE_DIR) / relative;
}

int FreeLoopbackPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t length = sizeof(address);
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0) {
    port = ntohs(address.sin_port);
  }
  close(fd);
  return port;
}

std::string UniqueName(const std::string& prefix) {
  static std::atomic<int> counter{0};
  static const uint32_t run = std::random_device{}();
  return absl::StrCat(prefix, "-", getpid(), "-", counter++, "-", run % 100000);
}

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "stip-test-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    ADD_FAILURE() << "mkdtemp failed";
  }
  path_ = pattern;
}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

ChildProcess::ChildProcess(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (const auto& arg : argv) args.push_back(const_cast<char*>(arg.c_str()));
  args.push_back(nullptr);
  pid_ = fork();
  if (pid_ == 0) {
    execv(args[0], args.data());
    _exit(127);
  }
  if (pid_ < 0) ADD_FAILURE() << "fork failed";
}

ChildProcess::~ChildProcess() {
  if (pid_ > 0 && !reaped_) {
    kill(pid_, SIGKILL);
    Wait();
  }
}

void ChildProcess::Signal(int signal) {
  if (pid_ > 0 && !reaped_) kill(pid_, signal);
}

int ChildProcess::Wait() {
  if (!reaped_ && pid_ > 0) {
    waitpid(pid_, &status_, 0);
    reaped_ = true;
  }
  return status_;
}

bool ChildProcess::running() {
  if (reaped_ || pid_ <= 0) return false;
  if (waitpid(pid_, &status_, WNOHANG) == pid_) reaped_ = true;
  return !reaped_;
}

std::filesystem::path TestProgramPath(const std::string& name) {
  return std::filesystem::read_symlink("/proc/self/exe").parent_path() / name;
}

int64_t PeakRssKib() { return ReadStatusKib("/proc/self/status", "VmHWM:"); }
int64_t CurrentRssKib() { return ReadStatusKib("/proc/self/status", "VmRSS:"); }
int64_t RssKibOf(pid_t pid) {
  return ReadStatusKib(absl::StrCat("/proc/", pid, "/status"), "VmRSS:");
}

}  // namespace stip::testing
