// RegistryService over a real in-process gRPC server (StartGrpcServer on port 0) and a real
// SQLite RegistryStore in a temporary folder, seeded through the store's own methods:
// field violations, NOT_FOUND, pagination while enterprises are enrolled, the Watch streams
// (resume from a cursor, filters, OUT_OF_RANGE after pruning, heartbeats, a slow subscriber
// cut off while another receives everything) and WaitForDecision.
#include "services/registry/registry_service.h"

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/channel.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "gtest/gtest.h"
#include "services/common/grpc_server.h"
#include "services/intake/uscc.h"
#include "services/registry/change_notifier.h"
#include "services/registry/registry_store.h"
#include "stip/v1/registry_service.grpc.pb.h"
#include "tests/support/test_environment.h"

namespace stip::registry {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

// A valid USCC numbered `n`.
std::string Uscc(int n) {
  const std::string first17 = absl::StrFormat("91650100MA%07d", n);
  absl::StatusOr<char> check = intake::UsccCheckCharacter(first17);
  EXPECT_TRUE(check.ok()) << check.status();
  return first17 + std::string(1, check.value_or('0'));
}

v1::Park MakePark(const std::string& id, v1::EconomicRegion region) {
  v1::Park park;
  park.set_park_id(id);
  park.set_name(absl::StrCat("Park ", id));
  park.set_city("Urumqi");
  park.set_province("Xinjiang");
  park.set_region(region);
  park.set_year_founded(1992);
  return park;
}

std::vector<std::string> FieldsOf(const grpc::Status& status) {
  std::vector<std::string> fields;
  for (const FieldViolation& violation : FieldViolations(GrpcToStatus(status))) {
    fields.push_back(violation.field);
  }
  return fields;
}

class RegistryServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store =
        RegistryStore::Open(absl::StrCat("sqlite://", dir_.path().string(), "/registry.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    ASSERT_TRUE(store_->RegisterPark(MakePark("urumqi-hnz", v1::ECONOMIC_REGION_WESTERN)).ok());
    ASSERT_TRUE(store_->RegisterPark(MakePark("zhongguancun", v1::ECONOMIC_REGION_EASTERN)).ok());
  }

  void TearDown() override {
    if (service_ != nullptr) service_->Stop();
    if (server_ != nullptr) server_->Shutdown(absl::Now() + absl::Seconds(5));
    service_.reset();
    server_.reset();
    store_.reset();
  }

  void Serve(RegistryServiceOptions options = {}) {
    service_ = std::make_unique<RegistryServiceImpl>(store_.get(), &notifier_, options);
    GrpcServerOptions server_options;
    server_options.listen_address = "127.0.0.1:0";
    auto server = StartGrpcServer(server_options, {service_.get()});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::RegistryService::NewStub(
        MakeChannel(absl::StrCat("127.0.0.1:", server_->port()), server_options.limits));
  }

  // A stub on a connection of its own, whose HTTP/2 window does not grow (no BDP probing),
  // so that a client that stops reading fills it quickly.
  std::unique_ptr<v1::RegistryService::Stub> SeparateStub() {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
    args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
    return v1::RegistryService::NewStub(grpc::CreateCustomChannel(
        absl::StrCat("127.0.0.1:", server_->port()), grpc::InsecureChannelCredentials(), args));
  }

  // Applies decisions for enterprises `first..first+count-1` as the applier would, and
  // notifies. Returns their decision ids in order.
  std::vector<std::string> ApplyDecisions(
      int first, int count, const std::string& park_id = "urumqi-hnz",
      v1::DecisionOutcome outcome = v1::DECISION_OUTCOME_QUALIFIED, size_t padding = 0) {
    std::vector<PositionedEvent> events;
    std::vector<std::string> ids;
    for (int i = first; i < first + count; ++i) {
      v1::QualificationDecision decision;
      const std::string uscc = Uscc(i);
      decision.set_filing_id(absl::StrCat(uscc, "/2024/1"));
      decision.set_decision_id(absl::StrCat(uscc, "/2024/1/stip-default/1"));
      decision.set_uscc(uscc);
      decision.set_park_id(park_id);
      decision.set_region(park_id == "urumqi-hnz" ? v1::ECONOMIC_REGION_WESTERN
                                                  : v1::ECONOMIC_REGION_EASTERN);
      decision.set_fiscal_year(2024);
      decision.set_filing_revision(1);
      decision.set_policy_id("stip-default");
      decision.set_policy_version(1);
      decision.set_outcome(outcome);
      decision.set_explanation(std::string(padding, 'x'));
      ids.push_back(decision.decision_id());
      PositionedEvent event;
      event.position = TopicPartition{"stip.decisions.v1", 0};
      event.offset = next_offset_++;
      event.event = std::move(decision);
      events.push_back(std::move(event));
    }
    absl::StatusOr<ApplyCounts> counts = store_->Apply("stip-registry", events);
    EXPECT_TRUE(counts.ok()) << counts.status();
    notifier_.Notify();
    return ids;
  }

  std::unique_ptr<grpc::ClientContext> Context(absl::Duration timeout = absl::Seconds(10)) {
    return ContextWithTimeout(timeout);
  }

  testing::TempDir dir_;
  std::unique_ptr<RegistryStore> store_;
  ChangeNotifier notifier_;
  std::unique_ptr<RegistryServiceImpl> service_;
  std::unique_ptr<GrpcServer> server_;
  std::unique_ptr<v1::RegistryService::Stub> stub_;
  int64_t next_offset_ = 0;
};

// Reads decisions (skipping heartbeats) until `count` arrived; returns their ids and the
// cursor of the last one.
struct Received {
  std::vector<std::string> ids;
  std::string last_cursor;
  int heartbeats = 0;
};
Received ReadDecisions(grpc::ClientReader<v1::WatchDecisionsResponse>* reader, size_t count) {
  Received received;
  v1::WatchDecisionsResponse response;
  while (received.ids.size() < count && reader->Read(&response)) {
    EXPECT_FALSE(response.cursor().empty());
    if (response.heartbeat()) {
      ++received.heartbeats;
      continue;
    }
    received.ids.push_back(response.decision().decision_id());
    received.last_cursor = response.cursor();
  }
  return received;
}

TEST_F(RegistryServiceTest, FieldViolationsNameTheField) {
  Serve();
  v1::EnrollEnterpriseRequest enroll;
  enroll.set_uscc("91650100MA0000001Z");  // wrong check character
  enroll.set_name("");
  enroll.set_park_id("Urumqi HNZ");
  v1::EnrollEnterpriseResponse enrolled;
  grpc::Status status = stub_->EnrollEnterprise(Context().get(), enroll, &enrolled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(status), UnorderedElementsAre("uscc", "name", "park_id"));

  v1::RegisterParkRequest park;
  *park.mutable_park() = MakePark("kunming", v1::ECONOMIC_REGION_UNSPECIFIED);
  park.mutable_park()->set_year_founded(1970);
  v1::RegisterParkResponse registered;
  status = stub_->RegisterPark(Context().get(), park, &registered);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(status), UnorderedElementsAre("park.region", "park.year_founded"));

  v1::ListEnterprisesRequest list;
  list.set_page_size(5000);
  list.set_fiscal_year(1999);
  v1::ListEnterprisesResponse listed;
  status = stub_->ListEnterprises(Context().get(), list, &listed);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(status), UnorderedElementsAre("page_size", "fiscal_year"));

  v1::GetParkStatisticsRequest statistics;
  statistics.set_park_id("urumqi-hnz");
  v1::GetParkStatisticsResponse statistics_response;
  status = stub_->GetParkStatistics(Context().get(), statistics, &statistics_response);
  EXPECT_THAT(FieldsOf(status), ElementsAre("fiscal_year"));

  v1::WaitForDecisionRequest wait;
  wait.set_filing_id("not-a-filing");
  v1::WaitForDecisionResponse waited;
  status = stub_->WaitForDecision(Context().get(), wait, &waited);
  EXPECT_THAT(FieldsOf(status), ElementsAre("filing_id"));
}

TEST_F(RegistryServiceTest, UnknownIdsAreNotFoundAndNamed) {
  Serve();
  v1::GetEnterpriseRequest get;
  get.set_uscc(Uscc(42));
  v1::GetEnterpriseResponse got;
  grpc::Status status = stub_->GetEnterprise(Context().get(), get, &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr(Uscc(42)));

  v1::EnrollEnterpriseRequest enroll;
  enroll.set_uscc(Uscc(1));
  enroll.set_name("Xinjiang Goldwind");
  enroll.set_park_id("no-such-park");
  v1::EnrollEnterpriseResponse enrolled;
  status = stub_->EnrollEnterprise(Context().get(), enroll, &enrolled);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no-such-park"));

  v1::GetParkStatisticsRequest statistics;
  statistics.set_park_id("no-such-park");
  statistics.set_fiscal_year(2024);
  v1::GetParkStatisticsResponse statistics_response;
  status = stub_->GetParkStatistics(Context().get(), statistics, &statistics_response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(status.error_message(), HasSubstr("no-such-park"));
}

TEST_F(RegistryServiceTest, EnrollsAndGetsAnEnterprise) {
  Serve();
  v1::EnrollEnterpriseRequest enroll;
  enroll.set_uscc(Uscc(7));
  enroll.set_name("新疆金风科技");
  enroll.set_park_id("urumqi-hnz");
  enroll.set_foreign_invested(true);
  v1::EnrollEnterpriseResponse enrolled;
  ASSERT_TRUE(stub_->EnrollEnterprise(Context().get(), enroll, &enrolled).ok());
  v1::GetEnterpriseRequest get;
  get.set_uscc(Uscc(7));
  v1::GetEnterpriseResponse got;
  ASSERT_TRUE(stub_->GetEnterprise(Context().get(), get, &got).ok());
  EXPECT_EQ(got.enterprise().name(), "新疆金风科技");
  EXPECT_EQ(got.enterprise().park_id(), "urumqi-hnz");
  EXPECT_TRUE(got.enterprise().foreign_invested());
}

TEST_F(RegistryServiceTest, PaginationServesEveryEnterpriseOnceWhileEnrolling) {
  Serve();
  std::set<std::string> original;
  for (int i = 0; i < 40; ++i) {
    const int n = 1000 + i * 10;  // gaps, so that later enrollments land between pages
    ASSERT_TRUE(store_->EnrollEnterprise(Uscc(n), absl::StrCat("E", n), "urumqi-hnz", false).ok());
    original.insert(Uscc(n));
  }
  std::vector<std::string> served;
  std::string token;
  int page = 0;
  do {
    v1::ListEnterprisesRequest request;
    request.set_park_id("urumqi-hnz");
    request.set_page_size(7);
    request.set_page_token(token);
    v1::ListEnterprisesResponse response;
    const grpc::Status status = stub_->ListEnterprises(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const v1::Enterprise& enterprise : response.enterprises()) {
      served.push_back(enterprise.uscc());
    }
    token = response.next_page_token();
    // Between pages: enroll before and after the cursor.
    ASSERT_TRUE(
        store_->EnrollEnterprise(Uscc(1000 + page * 70 + 5), "new", "urumqi-hnz", false).ok());
    ++page;
  } while (!token.empty() && page < 100);
  ASSERT_TRUE(token.empty());
  const std::set<std::string> unique(served.begin(), served.end());
  EXPECT_EQ(unique.size(), served.size()) << "an enterprise was served twice";
  for (const std::string& uscc : original) EXPECT_TRUE(unique.contains(uscc)) << uscc;

  v1::ListEnterprisesRequest bad;
  bad.set_page_token("garbage");
  v1::ListEnterprisesResponse ignored;
  const grpc::Status status = stub_->ListEnterprises(Context().get(), bad, &ignored);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FieldsOf(status), ElementsAre("page_token"));
}

TEST_F(RegistryServiceTest, WatchResumesFromACursorMissingNothingAndRepeatingNothing) {
  RegistryServiceOptions options;
  options.heartbeat_interval = absl::Milliseconds(300);
  options.watch_batch_size = 3;  // several reads per burst
  Serve(options);

  auto context = Context(absl::Seconds(20));
  auto reader = stub_->WatchDecisions(context.get(), v1::WatchDecisionsRequest());
  v1::WatchDecisionsResponse first;
  ASSERT_TRUE(reader->Read(&first));
  EXPECT_TRUE(first.heartbeat()) << "a watch from now starts with its cursor";

  std::vector<std::string> ids = ApplyDecisions(1, 5);
  Received part1 = ReadDecisions(reader.get(), 3);
  EXPECT_THAT(part1.ids, ElementsAre(ids[0], ids[1], ids[2]));
  context->TryCancel();
  reader->Finish().IgnoreError();

  std::vector<std::string> more = ApplyDecisions(6, 4);
  ids.insert(ids.end(), more.begin(), more.end());

  v1::WatchDecisionsRequest resume;
  resume.set_cursor(part1.last_cursor);
  auto context2 = Context(absl::Seconds(20));
  auto reader2 = stub_->WatchDecisions(context2.get(), resume);
  Received part2 = ReadDecisions(reader2.get(), 6);
  EXPECT_THAT(part2.ids, ElementsAre(ids[3], ids[4], ids[5], ids[6], ids[7], ids[8]));
  // Nothing else: the next message is a heartbeat, at the last cursor.
  v1::WatchDecisionsResponse next;
  ASSERT_TRUE(reader2->Read(&next));
  EXPECT_TRUE(next.heartbeat());
  EXPECT_EQ(next.cursor(), part2.last_cursor);
  context2->TryCancel();
  reader2->Finish().IgnoreError();
}

TEST_F(RegistryServiceTest, WatchFilters) {
  RegistryServiceOptions options;
  options.heartbeat_interval = absl::Milliseconds(200);
  Serve(options);
  v1::WatchDecisionsRequest request;
  request.set_park_id("zhongguancun");
  request.set_outcome(v1::DECISION_OUTCOME_NOT_QUALIFIED);
  auto context = Context(absl::Seconds(20));
  auto reader = stub_->WatchDecisions(context.get(), request);
  v1::WatchDecisionsResponse first;
  ASSERT_TRUE(reader->Read(&first));

  ApplyDecisions(1, 3, "urumqi-hnz", v1::DECISION_OUTCOME_NOT_QUALIFIED);
  ApplyDecisions(10, 3, "zhongguancun", v1::DECISION_OUTCOME_QUALIFIED);
  const std::vector<std::string> wanted =
      ApplyDecisions(20, 2, "zhongguancun", v1::DECISION_OUTCOME_NOT_QUALIFIED);
  Received received = ReadDecisions(reader.get(), 2);
  EXPECT_THAT(received.ids, ElementsAre(wanted[0], wanted[1]));
  context->TryCancel();
  reader->Finish().IgnoreError();

  // Listings: the qualified decisions listed their enterprises.
  v1::WatchListingsRequest listings;
  listings.set_cursor("l.0");
  listings.set_change(v1::LISTING_CHANGE_LISTED);
  listings.set_region(v1::ECONOMIC_REGION_EASTERN);
  auto context2 = Context(absl::Seconds(20));
  auto reader2 = stub_->WatchListings(context2.get(), listings);
  std::vector<std::string> listed;
  v1::WatchListingsResponse response;
  while (listed.size() < 3 && reader2->Read(&response)) {
    if (response.heartbeat()) continue;
    EXPECT_EQ(response.listing().change(), v1::LISTING_CHANGE_LISTED);
    EXPECT_EQ(response.listing().park_id(), "zhongguancun");
    EXPECT_EQ(response.cursor().substr(0, 2), "l.");
    listed.push_back(response.listing().uscc());
  }
  EXPECT_THAT(listed, ElementsAre(Uscc(10), Uscc(11), Uscc(12)));
  context2->TryCancel();
  reader2->Finish().IgnoreError();
}

TEST_F(RegistryServiceTest, BadCursorsAreInvalidArgument) {
  Serve();
  for (const char* cursor : {"garbage", "l.3", "d.-1", "d."}) {
    v1::WatchDecisionsRequest request;
    request.set_cursor(cursor);
    auto context = Context();
    auto reader = stub_->WatchDecisions(context.get(), request);
    v1::WatchDecisionsResponse response;
    EXPECT_FALSE(reader->Read(&response));
    const grpc::Status status = reader->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << cursor;
    EXPECT_THAT(FieldsOf(status), ElementsAre("cursor")) << cursor;
  }
}

TEST_F(RegistryServiceTest, CursorOlderThanRetentionIsOutOfRange) {
  Serve();
  ApplyDecisions(1, 5);
  ASSERT_TRUE(store_->PruneFeeds(absl::Now() + absl::Hours(1)).ok());
  ApplyDecisions(10, 2);
  v1::WatchDecisionsRequest request;
  request.set_cursor("d.1");
  auto context = Context();
  auto reader = stub_->WatchDecisions(context.get(), request);
  v1::WatchDecisionsResponse response;
  EXPECT_FALSE(reader->Read(&response));
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::OUT_OF_RANGE) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("empty cursor"));
}

TEST_F(RegistryServiceTest, HeartbeatsKeepAnIdleStreamAlive) {
  RegistryServiceOptions options;
  options.heartbeat_interval = absl::Milliseconds(150);
  Serve(options);
  ApplyDecisions(1, 2);
  v1::WatchListingsRequest request;
  request.set_park_id("zhongguancun");  // matches nothing
  auto context = Context();
  auto reader = stub_->WatchListings(context.get(), request);
  const absl::Time start = absl::Now();
  std::set<std::string> cursors;
  for (int i = 0; i < 4; ++i) {
    v1::WatchListingsResponse response;
    ASSERT_TRUE(reader->Read(&response));
    EXPECT_TRUE(response.heartbeat());
    EXPECT_FALSE(response.has_listing());
    cursors.insert(response.cursor());
  }
  // Heartbeats every 150 ms: four of them come long before the call's deadline would end it.
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
  EXPECT_EQ(cursors.size(), 1u);  // nothing changed: the position stays
  EXPECT_EQ(service_->ActiveSubscribers(), 1);
  context->TryCancel();
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(RegistryServiceTest, SlowSubscriberIsCutOffWhileAnotherReceivesEverything) {
  RegistryServiceOptions options;
  options.slow_subscriber_timeout = absl::Seconds(1);
  options.heartbeat_interval = absl::Seconds(30);
  Serve(options);

  auto slow_stub = SeparateStub();
  auto slow_context = Context(absl::Seconds(120));
  auto slow = slow_stub->WatchDecisions(slow_context.get(), v1::WatchDecisionsRequest());
  v1::WatchDecisionsResponse first;
  ASSERT_TRUE(slow->Read(&first));

  auto fast_stub = SeparateStub();
  auto fast_context = Context(absl::Seconds(120));
  auto fast = fast_stub->WatchDecisions(fast_context.get(), v1::WatchDecisionsRequest());
  ASSERT_TRUE(fast->Read(&first));

  // 8 MB of decisions: far more than the slow client's flow-control window.
  constexpr int kDecisions = 500;
  std::vector<std::string> ids;
  for (int batch = 0; batch < kDecisions / 50; ++batch) {
    std::vector<std::string> applied =
        ApplyDecisions(1 + batch * 50, 50, "urumqi-hnz", v1::DECISION_OUTCOME_QUALIFIED, 16 * 1024);
    ids.insert(ids.end(), applied.begin(), applied.end());
  }
  Received received = ReadDecisions(fast.get(), kDecisions);
  EXPECT_EQ(received.ids, ids) << "the fast subscriber was held back";

  // The slow one is cut off once its write waited a second; it reads what was sent, then
  // the status.
  const absl::Time until = absl::Now() + absl::Seconds(90);
  while (service_->SlowSubscribersCutOff() == 0 && absl::Now() < until) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(service_->SlowSubscribersCutOff(), 1);
  Received slow_received = ReadDecisions(slow.get(), kDecisions);
  EXPECT_LT(slow_received.ids.size(), ids.size());
  const grpc::Status status = slow->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_THAT(status.error_message(), HasSubstr("fell behind"));
  EXPECT_THAT(status.error_message(), HasSubstr("cursor"));

  // Resuming from the last cursor read continues exactly after it.
  v1::WatchDecisionsRequest resume;
  resume.set_cursor(slow_received.last_cursor);
  auto resume_context = Context(absl::Seconds(60));
  auto resumed = fast_stub->WatchDecisions(resume_context.get(), resume);
  Received rest = ReadDecisions(resumed.get(), ids.size() - slow_received.ids.size());
  std::vector<std::string> all = slow_received.ids;
  all.insert(all.end(), rest.ids.begin(), rest.ids.end());
  EXPECT_EQ(all, ids);
  resume_context->TryCancel();
  resumed->Finish().IgnoreError();
  fast_context->TryCancel();
  fast->Finish().IgnoreError();
}

TEST_F(RegistryServiceTest, TooManySubscribersAreRefused) {
  RegistryServiceOptions options;
  options.max_subscribers = 1;
  Serve(options);
  auto context = Context();
  auto reader = stub_->WatchDecisions(context.get(), v1::WatchDecisionsRequest());
  v1::WatchDecisionsResponse response;
  ASSERT_TRUE(reader->Read(&response));
  auto context2 = Context();
  auto reader2 = stub_->WatchListings(context2.get(), v1::WatchListingsRequest());
  v1::WatchListingsResponse response2;
  EXPECT_FALSE(reader2->Read(&response2));
  EXPECT_EQ(reader2->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  context->TryCancel();
  reader->Finish().IgnoreError();
}

TEST_F(RegistryServiceTest, StopEndsStreamsPromptly) {
  Serve();
  // A deadline far beyond the bound below: the stream must end because of Stop, not of it.
  auto context = Context(absl::Seconds(120));
  auto reader = stub_->WatchDecisions(context.get(), v1::WatchDecisionsRequest());
  v1::WatchDecisionsResponse response;
  ASSERT_TRUE(reader->Read(&response));
  const absl::Time start = absl::Now();
  service_->Stop();
  EXPECT_FALSE(reader->Read(&response));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_LT(absl::Now() - start, absl::Seconds(60));
}

TEST_F(RegistryServiceTest, WaitForDecisionReturnsOnceApplied) {
  Serve();
  const std::string filing_id = absl::StrCat(Uscc(5), "/2024/1");
  std::thread applier([this] {
    absl::SleepFor(absl::Milliseconds(300));
    ApplyDecisions(5, 1);
  });
  v1::WaitForDecisionRequest request;
  request.set_filing_id(filing_id);
  v1::WaitForDecisionResponse response;
  const absl::Time start = absl::Now();
  const grpc::Status status =
      stub_->WaitForDecision(Context(absl::Seconds(50)).get(), request, &response);
  applier.join();
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.decision().filing_id(), filing_id);
  // Woken by the apply, not by the end of the call's deadline.
  EXPECT_LT(absl::Now() - start, absl::Seconds(25));

  request.set_filing_id(absl::StrCat(Uscc(6), "/2024/1"));
  const grpc::Status late =
      stub_->WaitForDecision(Context(absl::Milliseconds(500)).get(), request, &response);
  EXPECT_EQ(late.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
}

}  // namespace
}  // namespace stip::registry
