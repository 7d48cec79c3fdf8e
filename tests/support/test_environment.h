// What tests share: the real servers the test command started, unique names, temporary
// folders, child processes and memory readings.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <sys/types.h>

namespace stip::testing {

// The Kafka bootstrap address the test command exported as STIP_TEST_KAFKA. When it is
// missing the calling test fails (it is never skipped): the suite is meant to run against
// a real broker, started by scripts/test.sh.
std::string KafkaBootstrap();
// The PostgreSQL URL exported as STIP_TEST_POSTGRES, likewise.
std::string PostgresUrl();
// A new, empty database on that server, named after `prefix` (UniqueName), for one test;
// returns its URL. Databases are left behind: the test command's server is thrown away.
// Fails the calling test (and returns "") when it cannot be created.
std::string FreshPostgresDatabase(const std::string& prefix);

// A TCP port on 127.0.0.1 that was free when asked, for a child server to listen on (a
// race with other processes is possible but, on loopback in a test run, unlikely).
int FreeLoopbackPort();

// "prefix-<pid>-<counter>-<random>": a topic or group name no other test run uses.
std::string UniqueName(const std::string& prefix);

// A fresh folder, removed when the object is destroyed.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

// A child process started with fork+exec; killed with SIGKILL if still running when the
// object is destroyed.
class ChildProcess {
 public:
  // `argv[0]` is the path of the program.
  explicit ChildProcess(const std::vector<std::string>& argv);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;

  pid_t pid() const { return pid_; }
  void Signal(int signal);
  // Waits for the exit; returns the status as waitpid gives it.
  int Wait();
  bool running();

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

// Where the test programs (tests/programs) were built: the folder of the running test.
std::filesystem::path TestProgramPath(const std::string& name);

// A path in the source tree, e.g. SourcePath("policies"). From the build's configuration,
// not __FILE__, which a compiler cache may have made relative to the build folder.
std::filesystem::path SourcePath(const std::string& relative);

// VmHWM (peak resident set) and VmRSS of this process, in KiB.
int64_t PeakRssKib();
int64_t CurrentRssKib();
// VmRSS of another process, in KiB; 0 when it is gone.
int64_t RssKibOf(pid_t pid);

}  // namespace stip::testing
