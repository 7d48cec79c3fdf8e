// stipctl as its users run it: the built binary as a child process, against an in-process
// gRPC server with the real RegistryService (over a SQLite RegistryStore) and the real
// IntakeService (over the SQLite event log) on one port, as stip-local serves them. Checks
// the exit codes (0, 1, 2, 64+code), usage errors in words on stderr with nothing on stdout,
// -o json parsing as protobuf's JSON mapping, --help with an example on every command, the
// bulk upload's report and a watch resumed from a printed cursor.
#include <fcntl.h>
#include <poll.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "services/common/event_log.h"
#include "services/common/grpc_server.h"
#include "services/intake/filing_intake.h"
#include "services/intake/intake_service.h"
#include "services/intake/registry_client.h"
#include "services/intake/uscc.h"
#include "services/registry/change_notifier.h"
#include "services/registry/registry_service.h"
#include "services/registry/registry_store.h"
#include "stip/v1/intake_service.pb.h"
#include "stip/v1/registry_service.pb.h"
#include "tests/support/test_environment.h"
#include <sys/wait.h>

namespace stip {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

std::filesystem::path StipctlPath() {
  return testing::TestProgramPath("stipctl").parent_path().parent_path() / "tools" / "stipctl" /
         "stipctl";
}

struct Result {
  int exit_code = -1;
  std::string out;
  std::string err;
};

// Runs stipctl with `args`, `input` on its standard input, and `env` as its whole
// environment; collects both outputs.
Result RunStipctl(const std::vector<std::string>& args, const std::string& input = "",
                  const std::vector<std::string>& env = {}) {
  int in_pipe[2], out_pipe[2], err_pipe[2];
  EXPECT_EQ(pipe(in_pipe), 0);
  EXPECT_EQ(pipe(out_pipe), 0);
  EXPECT_EQ(pipe(err_pipe), 0);
  std::vector<std::string> argv_strings = {StipctlPath().string()};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& arg : argv_strings) argv.push_back(arg.data());
  argv.push_back(nullptr);
  std::vector<std::string> env_strings = env;
  std::vector<char*> envp;
  for (std::string& var : env_strings) envp.push_back(var.data());
  envp.push_back(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    dup2(in_pipe[0], 0);
    dup2(out_pipe[1], 1);
    dup2(err_pipe[1], 2);
    for (int fd : {in_pipe[0], in_pipe[1], out_pipe[0], out_pipe[1], err_pipe[0], err_pipe[1]}) {
      close(fd);
    }
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_pipe[1]);
  if (!input.empty()) {
    EXPECT_EQ(write(in_pipe[1], input.data(), input.size()), static_cast<ssize_t>(input.size()));
  }
  close(in_pipe[1]);
  Result result;
  pollfd fds[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.out, &result.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, 20000) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buffer[4096];
      const ssize_t n = read(fds[i].fd, buffer, sizeof buffer);
      if (n <= 0) {
        close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        sinks[i]->append(buffer, static_cast<size_t>(n));
      }
    }
  }
  int status = 0;
  waitpid(pid, &status, 0);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string Uscc(int n) {
  const std::string first17 = absl::StrFormat("91650100MA%07d", n);
  return first17 + *intake::UsccCheckCharacter(first17);
}

std::string FilingJson(const std::string& uscc, int rd_employees = 15) {
  return absl::StrCat(R"({"uscc":")", uscc,
                      R"(","parkId":"urumqi-hnz","fiscalYear":2024,"revision":1,)",
                      R"("grossRevenueFen":"100000000","rdExpenditureFen":"5000000",)",
                      R"("totalEmployees":100,"tertiaryEducatedEmployees":40,"rdEmployees":)",
                      rd_employees, R"(,"enterpriseName":"Xinjiang Solar"})");
}

template <typename Message>
Message ParseJson(const std::string& json) {
  Message message;
  const auto status = google::protobuf::util::JsonStringToMessage(json, &message);
  EXPECT_TRUE(status.ok()) << status << "\n" << json;
  return message;
}

class StipctlTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = registry::RegistryStore::Open(
        absl::StrCat("sqlite://", (dir_.path() / "registry.db").string()));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    v1::Park park;
    park.set_park_id("urumqi-hnz");
    park.set_name("Urumqi High-tech Zone");
    park.set_city("Urumqi");
    park.set_province("Xinjiang");
    park.set_region(v1::ECONOMIC_REGION_WESTERN);
    park.set_year_founded(1992);
    ASSERT_TRUE(store_->RegisterPark(park).ok());
    registry_service_ = std::make_unique<registry::RegistryServiceImpl>(store_.get(), &notifier_);

    auto log = OpenEventLog(absl::StrCat("sqlite://", (dir_.path() / "events.db").string()));
    ASSERT_TRUE(log.ok()) << log.status();
    log_ = *std::move(log);
    ASSERT_TRUE(log_->EnsureTopics(StandardTopics(1)).ok());
    auto publisher = log_->NewPublisher();
    ASSERT_TRUE(publisher.ok()) << publisher.status();
    publisher_ = *std::move(publisher);
    // Intake asks the registry served by the same server, as in stip-local.
    registry_client_ = std::make_unique<intake::RegistryClient>(
        [this] { return MakeChannel(Address(), GrpcLimits{}); });
    intake_ = std::make_unique<intake::FilingIntake>(registry_client_.get(), publisher_.get(),
                                                     intake::FilingIntakeOptions{});
    intake_service_ =
        std::make_unique<intake::IntakeServiceImpl>(intake_.get(), intake::IntakeServiceOptions{});

    GrpcServerOptions options;
    options.listen_address = "127.0.0.1:0";
    options.health_service_names = {"stip.v1.IntakeService", "stip.v1.RegistryService"};
    auto server = StartGrpcServer(options, {registry_service_.get(), intake_service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
  }

  void TearDown() override {
    if (registry_service_ != nullptr) registry_service_->Stop();
    if (server_ != nullptr) server_->Shutdown(absl::Now() + absl::Seconds(2));
    server_.reset();
    intake_service_.reset();
    intake_.reset();
    registry_service_.reset();
  }

  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  // stipctl --server ADDRESS args...
  Result Ctl(std::vector<std::string> args, const std::string& input = "") {
    args.insert(args.begin(), {"--server", Address()});
    return RunStipctl(args, input);
  }

  void Enroll(const std::string& uscc) {
    Result result =
        Ctl({"enterprise", "enroll", uscc, "--name", "Xinjiang Solar", "--park", "urumqi-hnz"});
    ASSERT_EQ(result.exit_code, 0) << result.err;
  }

  // Decisions applied as the registry's applier would, for enterprises 1..count.
  void ApplyDecisions(int count) {
    std::vector<registry::PositionedEvent> events;
    for (int i = 1; i <= count; ++i) {
      v1::QualificationDecision decision;
      const std::string uscc = Uscc(i);
      decision.set_filing_id(absl::StrCat(uscc, "/2024/1"));
      decision.set_decision_id(absl::StrCat(uscc, "/2024/1/stip-default/1"));
      decision.set_uscc(uscc);
      decision.set_park_id("urumqi-hnz");
      decision.set_region(v1::ECONOMIC_REGION_WESTERN);
      decision.set_fiscal_year(2024);
      decision.set_filing_revision(1);
      decision.set_policy_id("stip-default");
      decision.set_policy_version(1);
      decision.set_outcome(i % 2 == 0 ? v1::DECISION_OUTCOME_NOT_QUALIFIED
                                      : v1::DECISION_OUTCOME_QUALIFIED);
      v1::CriterionResult* criterion = decision.add_criteria();
      criterion->set_metric(v1::METRIC_RD_INTENSITY);
      criterion->mutable_measured()->set_numerator(290);
      criterion->mutable_measured()->set_denominator(10000);
      criterion->set_measured_basis_points(290);
      criterion->set_comparison(v1::COMPARISON_GREATER_OR_EQUAL);
      criterion->set_threshold_basis_points(300);
      criterion->set_outcome(v1::CRITERION_OUTCOME_FAIL);
      criterion->mutable_shortfall()->set_rd_expenditure_fen(10);
      registry::PositionedEvent event;
      event.position = TopicPartition{"stip.decisions.v1", 0};
      event.offset = next_offset_++;
      event.event = std::move(decision);
      events.push_back(std::move(event));
    }
    ASSERT_TRUE(store_->Apply("stip-registry", events).ok());
    notifier_.Notify();
  }

  testing::TempDir dir_;
  std::unique_ptr<registry::RegistryStore> store_;
  registry::ChangeNotifier notifier_;
  std::unique_ptr<registry::RegistryServiceImpl> registry_service_;
  std::unique_ptr<EventLog> log_;
  std::unique_ptr<EventPublisher> publisher_;
  std::unique_ptr<intake::RegistryClient> registry_client_;
  std::unique_ptr<intake::FilingIntake> intake_;
  std::unique_ptr<intake::IntakeServiceImpl> intake_service_;
  std::unique_ptr<GrpcServer> server_;
  int64_t next_offset_ = 0;
};

TEST(StipctlHelpTest, EveryCommandHasHelpWithAnExample) {
  const std::vector<std::vector<std::string>> commands = {{},
                                                          {"filing"},
                                                          {"filing", "validate"},
                                                          {"filing", "submit"},
                                                          {"filing", "submit-bulk"},
                                                          {"filing", "get"},
                                                          {"enterprise"},
                                                          {"enterprise", "enroll"},
                                                          {"enterprise", "get"},
                                                          {"enterprise", "list"},
                                                          {"enterprise", "history"},
                                                          {"decision"},
                                                          {"decision", "get"},
                                                          {"decision", "watch"},
                                                          {"listing"},
                                                          {"listing", "watch"},
                                                          {"park"},
                                                          {"park", "list"},
                                                          {"park", "stats"},
                                                          {"region"},
                                                          {"region", "stats"},
                                                          {"window"},
                                                          {"window", "close"},
                                                          {"policy"},
                                                          {"policy", "list"},
                                                          {"policy", "show"},
                                                          {"health"}};
  for (std::vector<std::string> command : commands) {
    command.push_back("--help");
    Result result = RunStipctl(command);
    EXPECT_EQ(result.exit_code, 0) << absl::StrJoin(command, " ") << "\n" << result.err;
    EXPECT_THAT(result.out, HasSubstr("Example")) << absl::StrJoin(command, " ");
  }
}

TEST(StipctlUsageTest, UsageErrorsExitTwoWithWordsOnStderrOnly) {
  for (const std::vector<std::string>& args :
       std::vector<std::vector<std::string>>{{},
                                             {"nonsense"},
                                             {"enterprise", "get"},
                                             {"-o", "xml", "park", "list"},
                                             {"--timeout", "soon", "park", "list"},
                                             {"park", "stats", "urumqi-hnz"},
                                             {"enterprise", "list", "--region", "mars"},
                                             {"decision", "watch", "--outcome", "maybe"}}) {
    Result result = RunStipctl(args);
    EXPECT_EQ(result.exit_code, 2) << absl::StrJoin(args, " ") << "\n" << result.err;
    EXPECT_THAT(result.out, IsEmpty()) << absl::StrJoin(args, " ");
    EXPECT_THAT(result.err, HasSubstr("stipctl: ")) << absl::StrJoin(args, " ");
  }
  EXPECT_THAT(RunStipctl({"enterprise", "list", "--region", "mars"}).err, HasSubstr("western"));
}

TEST(StipctlUnavailableTest, UnreachableServerIs78AndSaysHowToStartOne) {
  Result result = RunStipctl({"--server", "127.0.0.1:1", "enterprise", "get", Uscc(1)});
  EXPECT_EQ(result.exit_code, 64 + 14);
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_THAT(result.err, HasSubstr("cannot be reached at 127.0.0.1:1"));
  EXPECT_THAT(result.err, HasSubstr("stip-local"));
  // STIP_SERVER is the default address when --server is not given.
  result = RunStipctl({"park", "list"}, "", {"STIP_SERVER=127.0.0.1:1"});
  EXPECT_EQ(result.exit_code, 78);
  EXPECT_THAT(result.err, HasSubstr("127.0.0.1:1"));
}

TEST_F(StipctlTest, EnrollGetListAsJsonTableAndYaml) {
  Enroll(Uscc(1));
  Result result = Ctl({"-o", "json", "enterprise", "get", Uscc(1)});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(ParseJson<v1::GetEnterpriseResponse>(result.out).enterprise().park_id(), "urumqi-hnz");

  result = Ctl({"enterprise", "list", "--park", "urumqi-hnz"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("USCC"));
  EXPECT_THAT(result.out, HasSubstr(Uscc(1)));

  result = Ctl({"-o", "json", "park", "list", "--region", "western"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(ParseJson<v1::ListParksResponse>(result.out).parks_size(), 1);

  result = Ctl({"park", "list", "-o", "yaml"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("parkId: urumqi-hnz"));

  result = Ctl({"park", "stats", "urumqi-hnz", "--year", "2024"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("Enterprises"));
  EXPECT_THAT(result.out, HasSubstr("0.00 yuan"));

  result = Ctl({"region", "stats", "--year", "2024"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("WESTERN"));
  EXPECT_THAT(result.out, HasSubstr("%"));
}

TEST_F(StipctlTest, ServerErrorsBecomeExitCodesAndFieldViolations) {
  Result result =
      Ctl({"enterprise", "enroll", "not-a-uscc", "--name", "X", "--park", "urumqi-hnz"});
  EXPECT_EQ(result.exit_code, 64 + 3);
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_THAT(result.err, HasSubstr("uscc: "));

  result = Ctl({"enterprise", "get", Uscc(99)});
  EXPECT_EQ(result.exit_code, 64 + 5) << result.err;
  EXPECT_THAT(result.err, HasSubstr(Uscc(99)));
}

TEST_F(StipctlTest, ValidateAndSubmitFilings) {
  Enroll(Uscc(1));
  const std::filesystem::path valid = dir_.path() / "valid.json";
  std::ofstream(valid) << FilingJson(Uscc(1));
  const std::filesystem::path invalid = dir_.path() / "invalid.json";
  std::ofstream(invalid) << FilingJson(Uscc(1), 500);  // more R&D staff than employees

  Result result = Ctl({"filing", "validate", valid.string()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("valid"));
  result = Ctl({"filing", "validate", invalid.string()});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.out, HasSubstr("rd_employees"));

  result = Ctl({"-o", "json", "filing", "submit", "-"}, FilingJson(Uscc(1)));
  ASSERT_EQ(result.exit_code, 0) << result.err;
  const v1::SubmitFilingResponse first = ParseJson<v1::SubmitFilingResponse>(result.out);
  EXPECT_FALSE(first.receipt().filing_id().empty());
  // The same filing again: the same receipt (the request id comes from the content).
  result = Ctl({"-o", "json", "filing", "submit", valid.string()});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_EQ(ParseJson<v1::SubmitFilingResponse>(result.out).receipt().filing_id(),
            first.receipt().filing_id());

  // Refused: an invalid filing, and an enterprise that is not enrolled.
  result = Ctl({"filing", "submit", invalid.string()});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.out, IsEmpty());
  EXPECT_THAT(result.err, HasSubstr("rd_employees"));
  result = Ctl({"filing", "submit", "-"}, FilingJson(Uscc(7)));
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("not enrolled"));

  result = Ctl({"filing", "submit", "-"}, "{not json");
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.err, HasSubstr("not a stip.v1.AnnualFiling"));
}

TEST_F(StipctlTest, SubmitBulkReportsRefusedFilings) {
  for (int i = 1; i <= 3; ++i) Enroll(Uscc(i));
  const std::filesystem::path ndjson = dir_.path() / "filings.ndjson";
  {
    std::ofstream out(ndjson);
    out << FilingJson(Uscc(1)) << "\n"
        << FilingJson(Uscc(2)) << "\n"
        << "\n"
        << "{garbage\n"
        << FilingJson(Uscc(3), 500) << "\n"
        << FilingJson(Uscc(9)) << "\n";
  }
  const std::filesystem::path report = dir_.path() / "refused.ndjson";
  Result result = Ctl({"filing", "submit-bulk", ndjson.string(), "--report", report.string()});
  EXPECT_EQ(result.exit_code, 1) << result.err;
  EXPECT_THAT(result.err, HasSubstr("5 filings: 2 accepted, 3 refused"));
  std::ifstream in(report);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr(R"("line":4)"));
  EXPECT_THAT(lines[1], HasSubstr(R"("line":5)"));
  EXPECT_THAT(lines[1], HasSubstr("rd_employees"));
  EXPECT_THAT(lines[2], HasSubstr(R"("line":6)"));
  EXPECT_THAT(lines[2], HasSubstr(Uscc(9)));

  // Everything valid again: all answered from the first receipts, exit 0.
  std::ofstream(ndjson) << FilingJson(Uscc(1)) << "\n" << FilingJson(Uscc(2)) << "\n";
  result = Ctl({"filing", "submit-bulk", ndjson.string()});
  EXPECT_EQ(result.exit_code, 0) << result.err;
}

TEST_F(StipctlTest, HealthReportsEachServiceAndFailsWhenOneIsMissing) {
  Result result = Ctl({"health"});
  EXPECT_EQ(result.exit_code, 1) << result.err;  // no AssessmentService on this server
  EXPECT_THAT(result.out, HasSubstr("stip.v1.IntakeService"));
  EXPECT_THAT(result.out, HasSubstr("SERVING"));
  EXPECT_THAT(result.out, HasSubstr("UNKNOWN"));
  // Only the services this server has.
  result = RunStipctl({"--server", "127.0.0.1:1", "--intake", Address(), "--registry", Address(),
                       "--assessment", Address(), "-o", "json", "health"});
  EXPECT_EQ(result.exit_code, 1);
  EXPECT_THAT(result.out, HasSubstr(R"("status": "SERVING")"));
}

TEST_F(StipctlTest, DecisionWatchResumesFromAPrintedCursor) {
  ApplyDecisions(3);
  Result result = Ctl({"-o", "json", "decision", "watch", "--from", "d.0", "--count", "2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  std::vector<std::string> lines = absl::StrSplit(result.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u) << result.out;
  const auto first = ParseJson<v1::WatchDecisionsResponse>(lines[0]);
  EXPECT_EQ(first.decision().uscc(), Uscc(1));
  ASSERT_FALSE(first.cursor().empty());

  // Resumed after the first: the second and third, nothing twice.
  result = Ctl({"-o", "json", "decision", "watch", "--from", first.cursor(), "--count", "2"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  lines = absl::StrSplit(result.out, '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(ParseJson<v1::WatchDecisionsResponse>(lines[0]).decision().uscc(), Uscc(2));
  EXPECT_EQ(ParseJson<v1::WatchDecisionsResponse>(lines[1]).decision().uscc(), Uscc(3));

  // A filter, in table mode; the cursor goes to stderr.
  result =
      Ctl({"decision", "watch", "--from", "d.0", "--outcome", "not-qualified", "--count", "1"});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr(Uscc(2)));
  EXPECT_THAT(result.out, Not(HasSubstr(Uscc(1))));
  EXPECT_THAT(result.err, HasSubstr("cursor: d."));

  // A malformed cursor is the server's INVALID_ARGUMENT.
  result = Ctl({"decision", "watch", "--from", "bogus"});
  EXPECT_EQ(result.exit_code, 64 + 3) << result.err;

  result = Ctl({"decision", "get", absl::StrCat(Uscc(1), "/2024/1/stip-default/1")});
  ASSERT_EQ(result.exit_code, 0) << result.err;
  EXPECT_THAT(result.out, HasSubstr("QUALIFIED"));
  EXPECT_THAT(result.out, HasSubstr("2.90%"));
  EXPECT_THAT(result.out, HasSubstr(">= 3.00%"));
  EXPECT_THAT(result.out, HasSubstr("0.10 yuan more R&D expenditure"));
}

}  // namespace
}  // namespace stip
