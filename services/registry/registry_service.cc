#include "services/registry/registry_service.h"

#include <algorithm>
#include <cstddef>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "services/common/grpc_server.h"
#include "services/intake/uscc.h"
#include "services/registry/watch_cursor.h"

namespace stip::registry {
namespace {

constexpr int32_t kMinFiscalYear = 2000;
constexpr int32_t kMaxFiscalYear = 2100;
// Filing ids name the years intake accepts: from the program's first year on.
constexpr int32_t kMinFilingIdYear = 1988;
constexpr int32_t kMinYearFounded = 1980;
constexpr int32_t kMaxYearFounded = 2100;
constexpr size_t kMaxNameCodePoints = 200;
constexpr size_t kMaxPlaceCodePoints = 100;
constexpr size_t kMaxIdBytes = 256;

// ---- Validation ------------------------------------------------------------------------

// `^[a-z0-9][a-z0-9-]{1,62}$`
bool IsParkSlug(const std::string& id) {
  if (id.size() < 2 || id.size() > 63) return false;
  for (size_t i = 0; i < id.size(); ++i) {
    const char c = id[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || c != '-')) return false;
  }
  return true;
}

constexpr char kParkIdRule[] =
    "must be a park id: 2 to 63 lowercase letters, digits and hyphens, starting with a letter "
    "or a digit (e.g. urumqi-hnz)";

void CheckParkId(const std::string& field, const std::string& id, bool required,
                 std::vector<FieldViolation>* violations) {
  if (id.empty()) {
    if (required) violations->push_back({field, absl::StrCat("is required: ", kParkIdRule)});
    return;
  }
  if (!IsParkSlug(id)) violations->push_back({field, kParkIdRule});
}

// One-line text: valid UTF-8, `1..max` code points when required, no control characters.
void CheckText(const std::string& field, const std::string& text, size_t max, bool required,
               std::vector<FieldViolation>* violations) {
  if (text.empty()) {
    if (required) {
      violations->push_back({field, absl::StrCat("is required (1 to ", max, " characters)")});
    }
    return;
  }
  size_t code_points = 0;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const auto* end = p + text.size();
  while (p < end) {
    const unsigned char lead = *p;
    int length = 0;
    char32_t c = 0;
    if (lead < 0x80) {
      length = 1;
      c = lead;
    } else if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
      c = lead & 0x1F;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      c = lead & 0x0F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      c = lead & 0x07;
    } else {
      violations->push_back({field, "is not valid UTF-8"});
      return;
    }
    if (end - p < length) {
      violations->push_back({field, "is not valid UTF-8 (truncated sequence)"});
      return;
    }
    for (int i = 1; i < length; ++i) {
      if ((p[i] & 0xC0) != 0x80) {
        violations->push_back({field, "is not valid UTF-8"});
        return;
      }
      c = (c << 6) | (p[i] & 0x3F);
    }
    const bool overlong = (length == 3 && c < 0x800) || (length == 4 && c < 0x10000);
    if (overlong || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) {
      violations->push_back({field, "is not valid UTF-8"});
      return;
    }
    if (c < 0x20 || (c >= 0x7F && c <= 0x9F) || c == 0x2028 || c == 0x2029) {
      violations->push_back({field, "must be one line of text without control characters"});
      return;
    }
    p += length;
    ++code_points;
  }
  if (code_points > max) {
    violations->push_back(
        {field, absl::StrCat("must be at most ", max, " characters, not ", code_points)});
  }
}

void CheckUscc(const std::string& field, const std::string& uscc,
               std::vector<FieldViolation>* violations) {
  if (uscc.empty()) {
    violations->push_back(
        {field, "is required: the enterprise's 18-character Unified Social Credit Code"});
    return;
  }
  if (uscc.size() != intake::kUsccLength) {
    violations->push_back(
        {field, absl::StrCat("must be 18 characters (GB 32100-2015), not ", uscc.size())});
    return;
  }
  if (std::any_of(uscc.begin(), uscc.end(), [](char c) { return absl::ascii_islower(c); })) {
    violations->push_back(
        {field, absl::StrCat("must be written in capitals: ", absl::AsciiStrToUpper(uscc))});
    return;
  }
  for (size_t i = 0; i < uscc.size(); ++i) {
    if (intake::UsccCharacterValue(uscc[i]) < 0) {
      violations->push_back(
          {field, absl::StrCat("character ", i + 1,
                               " is not one of 0-9 and A-Z other than I, O, S, V and Z")});
      return;
    }
  }
  if (!intake::IsValidUscc(uscc)) {
    const absl::StatusOr<char> check = intake::UsccCheckCharacter(uscc.substr(0, 17));
    violations->push_back(
        {field, check.ok()
                    ? absl::StrCat("has a wrong check character: the 18th character "
                                   "should be ",
                                   std::string(1, *check), ", not ", std::string(1, uscc[17]))
                    : "has a wrong check character"});
  }
}

void CheckFiscalYear(const std::string& field, int32_t year, bool required,
                     std::vector<FieldViolation>* violations) {
  if (year == 0 && !required) return;
  if (year < kMinFiscalYear || year > kMaxFiscalYear) {
    violations->push_back(
        {field, absl::StrCat(required ? "is required: " : "must be 0 (any) or ",
                             "a fiscal year from ", kMinFiscalYear, " to ", kMaxFiscalYear)});
  }
}

void CheckRegion(const std::string& field, v1::EconomicRegion region, bool required,
                 std::vector<FieldViolation>* violations) {
  if (!v1::EconomicRegion_IsValid(region)) {
    violations->push_back(
        {field, absl::StrCat("is not a known economic region (", static_cast<int>(region), ")")});
  } else if (required && region == v1::ECONOMIC_REGION_UNSPECIFIED) {
    violations->push_back({field, "is required: EASTERN, CENTRAL, WESTERN or NORTHEASTERN"});
  }
}

void CheckPageSize(int32_t page_size, int32_t max, std::vector<FieldViolation>* violations) {
  if (page_size < 0 || page_size > max) {
    violations->push_back({"page_size", absl::StrCat("must be from 0 (the default) to ", max)});
  }
}

void CheckId(const std::string& field, const std::string& id, const char* what,
             std::vector<FieldViolation>* violations) {
  if (id.empty()) {
    violations->push_back({field, absl::StrCat("is required: ", what)});
  } else if (id.size() > kMaxIdBytes ||
             std::any_of(id.begin(), id.end(), [](char c) { return c <= ' ' || c > '~'; })) {
    violations->push_back(
        {field, absl::StrCat("must be at most ", kMaxIdBytes, " printable ASCII characters")});
  }
}

// "<uscc>/<fiscal_year>/<revision>" (filing_id.h).
void CheckFilingId(const std::string& field, const std::string& id,
                   std::vector<FieldViolation>* violations) {
  constexpr char kRule[] =
      "must be a filing id <uscc>/<fiscal year>/<revision>, e.g. 91350100M000100Y43/2024/1";
  if (id.empty()) {
    violations->push_back({field, absl::StrCat("is required: ", kRule)});
    return;
  }
  const std::vector<std::string> parts = absl::StrSplit(id, '/');
  int32_t year = 0;
  int32_t revision = 0;
  if (parts.size() != 3 || !absl::SimpleAtoi(parts[1], &year) ||
      !absl::SimpleAtoi(parts[2], &revision) || year < kMinFilingIdYear || year > kMaxFiscalYear ||
      revision < 1 || !intake::IsValidUscc(parts[0])) {
    violations->push_back({field, kRule});
  }
}

absl::Status Invalid(std::string_view what, const std::vector<FieldViolation>& violations) {
  return InvalidArgumentWithViolations(what, violations);
}

int32_t PageSize(int32_t requested, const RegistryServiceOptions& options) {
  return requested == 0 ? options.default_page_size : requested;
}

// A store refusing a page token says so without naming the field: name it.
absl::Status WithPageTokenField(absl::Status status, const std::string& token) {
  if (absl::IsInvalidArgument(status) && !token.empty() && FieldViolations(status).empty()) {
    return InvalidArgumentWithViolations(
        std::string(status.message()),
        {{"page_token",
          "must be empty or the next_page_token of an earlier response to the "
          "same request (same filters)"}});
  }
  return status;
}

grpc::Status Fail(const absl::Status& status) { return StatusToGrpc(status); }

// The caller's network address without its port ("ipv4:10.1.2.3:50123" -> "ipv4:10.1.2.3",
// "ipv6:[::1]:50123" -> "ipv6:[::1]"): one client's connections share it.
std::string ClientAddress(const grpc::ServerContextBase& context) {
  std::string peer = context.peer();
  const size_t colon = peer.rfind(':');
  const size_t scheme = peer.find(':');
  if (colon != std::string::npos && colon != scheme && colon + 1 < peer.size() &&
      peer.find_first_not_of("0123456789", colon + 1) == std::string::npos) {
    peer.resize(colon);
  }
  return peer;
}

// ---- The two feeds -----------------------------------------------------------------------

struct DecisionFeed {
  using Request = v1::WatchDecisionsRequest;
  using Response = v1::WatchDecisionsResponse;
  using Filter = DecisionFeedFilter;
  static constexpr char kPrefix = 'd';
  static constexpr char kName[] = "decisions";
  static constexpr char kOtherName[] = "WatchListings";

  static void CheckKind(const Request& request, std::vector<FieldViolation>* violations) {
    if (!v1::DecisionOutcome_IsValid(request.outcome())) {
      violations->push_back({"outcome", absl::StrCat("is not a known decision outcome (",
                                                     static_cast<int>(request.outcome()), ")")});
    }
  }
  static Filter MakeFilter(const Request& request) {
    return {request.park_id(), request.region(), request.outcome()};
  }
  static absl::StatusOr<FeedRead<v1::QualificationDecision>> Read(RegistryStore* store,
                                                                  int64_t after,
                                                                  const Filter& filter,
                                                                  int32_t limit, int32_t scan) {
    return store->ReadDecisions(after, filter, limit, scan);
  }
  static absl::StatusOr<int64_t> Head(RegistryStore* store) { return store->DecisionFeedHead(); }
  static void SetItem(Response* response, v1::QualificationDecision item) {
    *response->mutable_decision() = std::move(item);
  }
};

struct ListingFeed {
  using Request = v1::WatchListingsRequest;
  using Response = v1::WatchListingsResponse;
  using Filter = ListingFeedFilter;
  static constexpr char kPrefix = 'l';
  static constexpr char kName[] = "listings";
  static constexpr char kOtherName[] = "WatchDecisions";

  static void CheckKind(const Request& request, std::vector<FieldViolation>* violations) {
    if (!v1::ListingChange_IsValid(request.change())) {
      violations->push_back({"change", absl::StrCat("is not a known listing change (",
                                                    static_cast<int>(request.change()), ")")});
    }
  }
  static Filter MakeFilter(const Request& request) {
    return {request.park_id(), request.region(), request.change()};
  }
  static absl::StatusOr<FeedRead<v1::TorchListing>> Read(RegistryStore* store, int64_t after,
                                                         const Filter& filter, int32_t limit,
                                                         int32_t scan) {
    return store->ReadListings(after, filter, limit, scan);
  }
  static absl::StatusOr<int64_t> Head(RegistryStore* store) { return store->ListingFeedHead(); }
  static void SetItem(Response* response, v1::TorchListing item) {
    *response->mutable_listing() = std::move(item);
  }
};

// A call refused before it started: finished at once.
template <typename Response>
class FinishedReactor final : public grpc::ServerWriteReactor<Response> {
 public:
  explicit FinishedReactor(const grpc::Status& status) { this->Finish(status); }
  void OnDone() override { delete this; }
};

template <typename Feed>
absl::StatusOr<std::optional<int64_t>> ValidateWatch(const typename Feed::Request& request) {
  std::vector<FieldViolation> violations;
  std::optional<int64_t> start_after;
  if (!request.cursor().empty()) {
    start_after = ParseCursor(Feed::kPrefix, request.cursor());
    if (!start_after.has_value()) {
      const char other = Feed::kPrefix == 'd' ? 'l' : 'd';
      violations.push_back(
          {"cursor",
           ParseCursor(other, request.cursor()).has_value()
               ? absl::StrCat("is a cursor of ", Feed::kOtherName,
                              ", not of this stream; give a cursor this stream sent, or none")
               : "must be empty (from now) or the cursor of a message this stream sent"});
    }
  }
  CheckParkId("park_id", request.park_id(), /*required=*/false, &violations);
  CheckRegion("region", request.region(), /*required=*/false, &violations);
  Feed::CheckKind(request, &violations);
  if (!violations.empty()) {
    return Invalid(absl::StrCat("the watch of ", Feed::kName, " cannot start"), violations);
  }
  return start_after;
}

}  // namespace

// ---- A Watch stream ----------------------------------------------------------------------

// One subscriber: the reactor gRPC calls back, and the body of the subscriber thread.
// Lifetime: gRPC deletes nothing; OnDone deletes the object, and OnDone comes only after
// Finish, which the subscriber thread calls last: after Finish the thread never touches the
// object again. The message being written is a member, so that a write still outstanding
// when the call is finished (a slow subscriber) refers to live memory until OnDone.
template <typename Feed>
class WatchStream final : public grpc::ServerWriteReactor<typename Feed::Response> {
 public:
  using Response = typename Feed::Response;

  WatchStream(RegistryServiceImpl* service, typename Feed::Filter filter,
              std::optional<int64_t> start_after)
      : service_(service), filter_(std::move(filter)), start_after_(start_after) {}

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    write_pending_ = false;
    write_ok_ = ok;
  }
  void OnCancel() override {
    {
      absl::MutexLock lock(&mu_);
      cancelled_ = true;
    }
    service_->notifier_->WakeAll();
  }
  void OnDone() override { delete this; }

  // Validates `request` and starts the subscriber thread; a refused call is finished at once.
  static grpc::ServerWriteReactor<Response>* Start(RegistryServiceImpl* service,
                                                   const grpc::CallbackServerContext& context,
                                                   const typename Feed::Request& request) {
    absl::StatusOr<std::optional<int64_t>> start_after = ValidateWatch<Feed>(request);
    if (!start_after.ok()) return new FinishedReactor<Response>(Fail(start_after.status()));
    std::string client = ClientAddress(context);
    if (grpc::Status admitted = service->AdmitSubscriber(client); !admitted.ok()) {
      return new FinishedReactor<Response>(std::move(admitted));
    }
    auto* stream = new WatchStream(service, Feed::MakeFilter(request), *start_after);
    std::thread([stream, service, client = std::move(client)] {
      stream->Run();  // `stream` may be deleted from here on
      service->SubscriberThreadEnded(client);
    }).detach();
    return stream;
  }

  // The subscriber thread's body. Ends with Finish: `this` may be gone when it returns.
  void Run() { this->Finish(Loop()); }

 private:
  const RegistryServiceOptions& options() const { return service_->options_; }

  std::optional<grpc::Status> StopReason() {
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) return grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled");
    }
    if (service_->stopped()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("the server is shutting down; reconnect with the cursor "
                                       "of the last message received"));
    }
    return std::nullopt;
  }

  grpc::Status Loop() {
    RegistryStore* const store = service_->store_;
    if (!filter_.park_id.empty()) {
      absl::StatusOr<std::optional<v1::Park>> park = store->GetPark(filter_.park_id);
      if (!park.ok()) return Fail(park.status());
      if (!park->has_value()) {
        return Fail(absl::NotFoundError(
            absl::StrCat("park ", filter_.park_id, " is not registered (field park_id)")));
      }
    }
    absl::StatusOr<int64_t> head = Feed::Head(store);
    if (!head.ok()) return Fail(head.status());
    int64_t after = 0;
    if (!start_after_.has_value()) {
      after = *head;
      // The client learns where "now" was, so that it can resume from there.
      if (!Send(Heartbeat(after))) return end_status_;
    } else if (*start_after_ > *head) {
      return grpc::Status(
          grpc::StatusCode::OUT_OF_RANGE,
          absl::StrCat("the cursor ", Cursor(Feed::kPrefix, *start_after_), " is ahead of the ",
                       Feed::kName, " feed (its head is ", Cursor(Feed::kPrefix, *head),
                       "): the register may have been restored; start again with an empty "
                       "cursor"));
    } else {
      after = *start_after_;
    }
    absl::Time last_write = absl::Now();
    while (true) {
      if (std::optional<grpc::Status> stop = StopReason()) return *stop;
      // Taken before the read: a commit after the read moves it, and the wait returns.
      const uint64_t version = service_->notifier_->Version();
      auto read = Feed::Read(store, after, filter_, std::max(options().watch_batch_size, 1),
                             std::max(options().watch_scan_limit, 1));
      if (absl::IsOutOfRange(read.status())) {
        return grpc::Status(
            grpc::StatusCode::OUT_OF_RANGE,
            absl::StrCat("the cursor ", Cursor(Feed::kPrefix, after), " is older than the ",
                         Feed::kName,
                         " feed keeps; start again with an empty cursor (from now) and read "
                         "what was missed from the register"));
      }
      if (!read.ok()) return Fail(read.status());
      bool progressed = false;
      for (auto& entry : read->entries) {
        Response response;
        Feed::SetItem(&response, std::move(entry.item));
        response.set_cursor(Cursor(Feed::kPrefix, entry.seq));
        if (!Send(std::move(response))) return end_status_;
        after = std::max(after, entry.seq);
        last_write = absl::Now();
        progressed = true;
      }
      if (read->scanned_to > after) {
        after = read->scanned_to;
        progressed = true;
      }
      if (progressed) continue;  // there may be more: read again before waiting

      // Caught up: wait for a commit, or send a heartbeat when idle for the interval.
      const absl::Time heartbeat_at = last_write + options().heartbeat_interval;
      while (true) {
        if (std::optional<grpc::Status> stop = StopReason()) return *stop;
        if (absl::Now() >= heartbeat_at) {
          if (!Send(Heartbeat(after))) return end_status_;
          last_write = absl::Now();
          break;
        }
        if (service_->notifier_->Wait(version, heartbeat_at) != version) break;
      }
    }
  }

  static Response Heartbeat(int64_t after) {
    Response response;
    response.set_heartbeat(true);
    response.set_cursor(Cursor(Feed::kPrefix, after));
    return response;
  }

  // Writes `response` and waits for the write to complete. False when the call must end,
  // with end_status_ saying why: cancelled, the service stopped, or the subscriber too slow.
  bool Send(Response response) {
    {
      absl::MutexLock lock(&mu_);
      current_ = std::move(response);
      write_pending_ = true;
    }
    this->StartWrite(&current_);
    const absl::Time deadline = absl::Now() + options().slow_subscriber_timeout;
    absl::MutexLock lock(&mu_);
    auto done = [this]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !write_pending_ || cancelled_; };
    while (!done()) {
      if (service_->stopped()) {
        end_status_ = grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                   "the server is shutting down; reconnect with the cursor of "
                                   "the last message received");
        return false;
      }
      const absl::Time now = absl::Now();
      if (now >= deadline) {
        service_->slow_cut_off_.fetch_add(1);
        end_status_ = grpc::Status(
            grpc::StatusCode::RESOURCE_EXHAUSTED,
            absl::StrCat("the subscriber fell behind: a message waited more than ",
                         absl::FormatDuration(options().slow_subscriber_timeout),
                         " to be read; reconnect with the cursor of the last message received"));
        return false;
      }
      // Slices, so that Stop() (which does not take this mutex) is noticed promptly.
      mu_.AwaitWithDeadline(absl::Condition(&done),
                            std::min(deadline, now + absl::Milliseconds(100)));
    }
    if (cancelled_ || !write_ok_) {
      end_status_ = grpc::Status(grpc::StatusCode::CANCELLED, "the stream was closed");
      return false;
    }
    return true;
  }

  RegistryServiceImpl* const service_;
  const typename Feed::Filter filter_;
  // nullopt: from the head of the feed.
  const std::optional<int64_t> start_after_;

  absl::Mutex mu_;
  Response current_;  // written by the subscriber thread only while no write is pending
  bool write_pending_ ABSL_GUARDED_BY(mu_) = false;
  bool write_ok_ ABSL_GUARDED_BY(mu_) = true;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status end_status_;  // the subscriber thread's only
};

// ---- The service -------------------------------------------------------------------------

RegistryServiceImpl::RegistryServiceImpl(RegistryStore* store, ChangeNotifier* notifier,
                                         RegistryServiceOptions options)
    : store_(store), notifier_(notifier), options_(std::move(options)) {}

RegistryServiceImpl::~RegistryServiceImpl() {
  Stop();
  absl::MutexLock lock(&threads_mu_);
  threads_mu_.Await(absl::Condition(
      +[](int* threads) { return *threads == 0; }, &threads_));
}

void RegistryServiceImpl::Stop() {
  stopped_.store(true);
  notifier_->WakeAll();
}

grpc::Status RegistryServiceImpl::AdmitSubscriber(const std::string& client) {
  absl::MutexLock lock(&threads_mu_);
  if (stopped()) return grpc::Status(grpc::StatusCode::UNAVAILABLE, "the server is shutting down");
  if (threads_ >= options_.max_subscribers) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("too many watch streams are open (at most ", options_.max_subscribers,
                     " on this server); retry later with your last cursor"));
  }
  int& of_client = threads_by_client_[client];
  if (of_client >= options_.max_subscribers_per_client) {
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat(
            "this client (", client, ") already has ", of_client,
            " watch streams open, the most one client may have; close one, or resume it from "
            "its last cursor, before opening another"));
  }
  ++of_client;
  ++threads_;
  active_subscribers_.fetch_add(1);
  return grpc::Status::OK;
}

void RegistryServiceImpl::SubscriberThreadEnded(const std::string& client) {
  absl::MutexLock lock(&threads_mu_);
  if (auto it = threads_by_client_.find(client);
      it != threads_by_client_.end() && --it->second <= 0) {
    threads_by_client_.erase(it);
  }
  --threads_;
  active_subscribers_.fetch_sub(1);
}

grpc::ServerWriteReactor<v1::WatchDecisionsResponse>* RegistryServiceImpl::WatchDecisions(
    grpc::CallbackServerContext* context, const v1::WatchDecisionsRequest* request) {
  return WatchStream<DecisionFeed>::Start(this, *context, *request);
}

grpc::ServerWriteReactor<v1::WatchListingsResponse>* RegistryServiceImpl::WatchListings(
    grpc::CallbackServerContext* context, const v1::WatchListingsRequest* request) {
  return WatchStream<ListingFeed>::Start(this, *context, *request);
}

grpc::Status RegistryServiceImpl::RegisterPark(grpc::ServerContext* /*context*/,
                                               const v1::RegisterParkRequest* request,
                                               v1::RegisterParkResponse* response) {
  std::vector<FieldViolation> violations;
  const v1::Park& park = request->park();
  if (!request->has_park()) {
    violations.push_back({"park", "is required: the park to register"});
  } else {
    CheckParkId("park.park_id", park.park_id(), /*required=*/true, &violations);
    CheckText("park.name", park.name(), kMaxNameCodePoints, /*required=*/true, &violations);
    CheckText("park.city", park.city(), kMaxPlaceCodePoints, /*required=*/true, &violations);
    CheckText("park.province", park.province(), kMaxPlaceCodePoints, /*required=*/true,
              &violations);
    CheckRegion("park.region", park.region(), /*required=*/true, &violations);
    if (park.year_founded() < kMinYearFounded || park.year_founded() > kMaxYearFounded) {
      violations.push_back(
          {"park.year_founded",
           absl::StrCat("must be a year from ", kMinYearFounded, " to ", kMaxYearFounded)});
    }
  }
  if (!violations.empty()) return Fail(Invalid("the park cannot be registered", violations));
  absl::StatusOr<v1::Park> registered = store_->RegisterPark(park);
  if (!registered.ok()) return Fail(registered.status());
  *response->mutable_park() = *std::move(registered);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::ListParks(grpc::ServerContext* /*context*/,
                                            const v1::ListParksRequest* request,
                                            v1::ListParksResponse* response) {
  std::vector<FieldViolation> violations;
  CheckRegion("region", request->region(), /*required=*/false, &violations);
  CheckPageSize(request->page_size(), options_.max_page_size, &violations);
  if (!violations.empty()) return Fail(Invalid("the parks cannot be listed", violations));
  absl::StatusOr<Page<v1::Park>> page = store_->ListParks(
      request->region(), PageSize(request->page_size(), options_), request->page_token());
  if (!page.ok()) return Fail(WithPageTokenField(page.status(), request->page_token()));
  for (v1::Park& park : page->items) *response->add_parks() = std::move(park);
  response->set_next_page_token(std::move(page->next_page_token));
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::EnrollEnterprise(grpc::ServerContext* /*context*/,
                                                   const v1::EnrollEnterpriseRequest* request,
                                                   v1::EnrollEnterpriseResponse* response) {
  std::vector<FieldViolation> violations;
  CheckUscc("uscc", request->uscc(), &violations);
  CheckText("name", request->name(), kMaxNameCodePoints, /*required=*/true, &violations);
  CheckParkId("park_id", request->park_id(), /*required=*/true, &violations);
  if (!violations.empty()) return Fail(Invalid("the enterprise cannot be enrolled", violations));
  absl::StatusOr<std::optional<v1::Park>> park = store_->GetPark(request->park_id());
  if (!park.ok()) return Fail(park.status());
  if (!park->has_value()) {
    return Fail(absl::NotFoundError(
        absl::StrCat("park ", request->park_id(), " is not registered (field park_id)")));
  }
  absl::StatusOr<v1::Enterprise> enterprise = store_->EnrollEnterprise(
      request->uscc(), request->name(), request->park_id(), request->foreign_invested());
  if (!enterprise.ok()) return Fail(enterprise.status());
  *response->mutable_enterprise() = *std::move(enterprise);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::GetEnterprise(grpc::ServerContext* /*context*/,
                                                const v1::GetEnterpriseRequest* request,
                                                v1::GetEnterpriseResponse* response) {
  std::vector<FieldViolation> violations;
  CheckUscc("uscc", request->uscc(), &violations);
  if (!violations.empty()) return Fail(Invalid("the enterprise cannot be looked up", violations));
  absl::StatusOr<std::optional<v1::Enterprise>> enterprise = store_->GetEnterprise(request->uscc());
  if (!enterprise.ok()) return Fail(enterprise.status());
  if (!enterprise->has_value()) {
    return Fail(absl::NotFoundError(
        absl::StrCat("no enterprise with USCC ", request->uscc(), " is enrolled")));
  }
  *response->mutable_enterprise() = **std::move(enterprise);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::ListEnterprises(grpc::ServerContext* /*context*/,
                                                  const v1::ListEnterprisesRequest* request,
                                                  v1::ListEnterprisesResponse* response) {
  std::vector<FieldViolation> violations;
  CheckParkId("park_id", request->park_id(), /*required=*/false, &violations);
  CheckRegion("region", request->region(), /*required=*/false, &violations);
  if (!v1::EnterpriseStatus_IsValid(request->status())) {
    violations.push_back({"status", absl::StrCat("is not a known enterprise status (",
                                                 static_cast<int>(request->status()), ")")});
  }
  CheckFiscalYear("fiscal_year", request->fiscal_year(), /*required=*/false, &violations);
  CheckPageSize(request->page_size(), options_.max_page_size, &violations);
  if (!violations.empty()) return Fail(Invalid("the enterprises cannot be listed", violations));
  EnterpriseFilter filter;
  filter.park_id = request->park_id();
  filter.region = request->region();
  filter.status = request->status();
  filter.fiscal_year = request->fiscal_year();
  absl::StatusOr<Page<v1::Enterprise>> page = store_->ListEnterprises(
      filter, PageSize(request->page_size(), options_), request->page_token());
  if (!page.ok()) return Fail(WithPageTokenField(page.status(), request->page_token()));
  for (v1::Enterprise& enterprise : page->items) {
    *response->add_enterprises() = std::move(enterprise);
  }
  response->set_next_page_token(std::move(page->next_page_token));
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::GetEnterpriseHistory(
    grpc::ServerContext* /*context*/, const v1::GetEnterpriseHistoryRequest* request,
    v1::GetEnterpriseHistoryResponse* response) {
  std::vector<FieldViolation> violations;
  CheckUscc("uscc", request->uscc(), &violations);
  CheckPageSize(request->page_size(), options_.max_page_size, &violations);
  if (!violations.empty()) return Fail(Invalid("the history cannot be read", violations));
  absl::StatusOr<std::optional<v1::Enterprise>> enterprise = store_->GetEnterprise(request->uscc());
  if (!enterprise.ok()) return Fail(enterprise.status());
  if (!enterprise->has_value()) {
    return Fail(absl::NotFoundError(
        absl::StrCat("no enterprise with USCC ", request->uscc(), " is enrolled")));
  }
  absl::StatusOr<Page<v1::HistoryEntry>> page = store_->GetEnterpriseHistory(
      request->uscc(), PageSize(request->page_size(), options_), request->page_token());
  if (!page.ok()) return Fail(WithPageTokenField(page.status(), request->page_token()));
  for (v1::HistoryEntry& entry : page->items) *response->add_entries() = std::move(entry);
  response->set_next_page_token(std::move(page->next_page_token));
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::GetFiling(grpc::ServerContext* /*context*/,
                                            const v1::GetFilingRequest* request,
                                            v1::GetFilingResponse* response) {
  std::vector<FieldViolation> violations;
  CheckFilingId("filing_id", request->filing_id(), &violations);
  if (!violations.empty()) return Fail(Invalid("the filing cannot be looked up", violations));
  absl::StatusOr<std::optional<v1::AcceptedFiling>> filing =
      store_->GetFiling(request->filing_id());
  if (!filing.ok()) return Fail(filing.status());
  if (!filing->has_value()) {
    return Fail(absl::NotFoundError(
        absl::StrCat("no filing ", request->filing_id(), " is recorded in the register")));
  }
  *response->mutable_filing() = **std::move(filing);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::GetDecision(grpc::ServerContext* /*context*/,
                                              const v1::GetDecisionRequest* request,
                                              v1::GetDecisionResponse* response) {
  std::vector<FieldViolation> violations;
  CheckId("decision_id", request->decision_id(), "the id of a qualification decision", &violations);
  if (!violations.empty()) return Fail(Invalid("the decision cannot be looked up", violations));
  absl::StatusOr<std::optional<v1::QualificationDecision>> decision =
      store_->GetDecision(request->decision_id());
  if (!decision.ok()) return Fail(decision.status());
  if (!decision->has_value()) {
    return Fail(absl::NotFoundError(
        absl::StrCat("no decision ", request->decision_id(), " is recorded in the register")));
  }
  *response->mutable_decision() = **std::move(decision);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::CloseFilingWindow(grpc::ServerContext* /*context*/,
                                                    const v1::CloseFilingWindowRequest* request,
                                                    v1::CloseFilingWindowResponse* response) {
  std::vector<FieldViolation> violations;
  CheckFiscalYear("fiscal_year", request->fiscal_year(), /*required=*/true, &violations);
  if (!violations.empty()) {
    return Fail(Invalid("the filing window cannot be closed", violations));
  }
  absl::StatusOr<std::vector<v1::TorchListing>> delistings =
      store_->CloseFilingWindow(request->fiscal_year());
  if (!delistings.ok()) return Fail(delistings.status());
  if (!delistings->empty()) notifier_->Notify();  // the listings feed moved
  for (v1::TorchListing& listing : *delistings) {
    *response->add_delistings() = std::move(listing);
  }
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::GetParkStatistics(grpc::ServerContext* /*context*/,
                                                    const v1::GetParkStatisticsRequest* request,
                                                    v1::GetParkStatisticsResponse* response) {
  std::vector<FieldViolation> violations;
  CheckParkId("park_id", request->park_id(), /*required=*/true, &violations);
  CheckFiscalYear("fiscal_year", request->fiscal_year(), /*required=*/true, &violations);
  if (!violations.empty()) {
    return Fail(Invalid("the park statistics cannot be computed", violations));
  }
  absl::StatusOr<v1::ParkStatistics> statistics =
      store_->GetParkStatistics(request->park_id(), request->fiscal_year());
  if (absl::IsNotFound(statistics.status())) {
    return Fail(absl::NotFoundError(
        absl::StrCat("park ", request->park_id(), " is not registered (field park_id)")));
  }
  if (!statistics.ok()) return Fail(statistics.status());
  *response->mutable_statistics() = *std::move(statistics);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::GetRegionalStatistics(
    grpc::ServerContext* /*context*/, const v1::GetRegionalStatisticsRequest* request,
    v1::GetRegionalStatisticsResponse* response) {
  std::vector<FieldViolation> violations;
  CheckFiscalYear("fiscal_year", request->fiscal_year(), /*required=*/true, &violations);
  if (!violations.empty()) {
    return Fail(Invalid("the regional statistics cannot be computed", violations));
  }
  absl::StatusOr<std::vector<v1::RegionStatistics>> regions =
      store_->GetRegionalStatistics(request->fiscal_year());
  if (!regions.ok()) return Fail(regions.status());
  response->set_fiscal_year(request->fiscal_year());
  for (v1::RegionStatistics& region : *regions) *response->add_regions() = std::move(region);
  return grpc::Status::OK;
}

grpc::Status RegistryServiceImpl::WaitForDecision(grpc::ServerContext* context,
                                                  const v1::WaitForDecisionRequest* request,
                                                  v1::WaitForDecisionResponse* response) {
  std::vector<FieldViolation> violations;
  CheckFilingId("filing_id", request->filing_id(), &violations);
  if (!violations.empty()) return Fail(Invalid("the decision cannot be waited for", violations));
  // Each waiting call holds one of the server's threads: a few may wait, not all.
  if (waiting_calls_.fetch_add(1) >= options_.max_waiting_calls) {
    waiting_calls_.fetch_sub(1);
    return grpc::Status(
        grpc::StatusCode::RESOURCE_EXHAUSTED,
        absl::StrCat("too many calls are waiting for decisions (at most ",
                     options_.max_waiting_calls,
                     " at once); retry later, or follow WatchDecisions to wait for many"));
  }
  struct Release {
    std::atomic<int>& count;
    ~Release() { count.fetch_sub(1); }
  } release{waiting_calls_};
  // The caller's deadline, cut to max_decision_wait: a call never holds its thread longer.
  const absl::Time asked = EffectiveDeadline(*context, absl::InfiniteDuration());
  const absl::Time cap = absl::Now() + options_.max_decision_wait;
  const absl::Time deadline = std::min(asked, cap);
  const bool cut = asked > cap;
  const absl::Duration poll = std::max(options_.wait_poll_interval, absl::Milliseconds(1));
  // A sync handler is not woken by cancellation: slices keep it prompt.
  constexpr absl::Duration kCancelCheck = absl::Milliseconds(200);
  absl::Time next_read = absl::InfinitePast();
  uint64_t version = 0;
  while (true) {
    const absl::Time now = absl::Now();
    if (now >= next_read || notifier_->Version() != version) {
      version = notifier_->Version();  // before the read: a later commit moves it
      absl::StatusOr<std::optional<v1::QualificationDecision>> decision =
          store_->FindDecisionForFiling(request->filing_id());
      if (!decision.ok()) return Fail(decision.status());
      if (decision->has_value()) {
        *response->mutable_decision() = **std::move(decision);
        return grpc::Status::OK;
      }
      next_read = absl::Now() + poll;
    }
    if (context->IsCancelled()) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the call was cancelled");
    }
    if (stopped()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the server is shutting down; call again to keep waiting");
    }
    if (absl::Now() >= deadline) {
      return grpc::Status(
          grpc::StatusCode::DEADLINE_EXCEEDED,
          absl::StrCat(
              "no decision for filing ", request->filing_id(), " was applied ",
              cut ? absl::StrCat("within ", absl::FormatDuration(options_.max_decision_wait),
                                 ", the longest one call waits")
                  : std::string("before the deadline"),
              "; call again to keep waiting, or follow WatchDecisions"));
    }
    notifier_->Wait(version, std::min({deadline, next_read, absl::Now() + kCancelCheck}));
  }
}

}  // namespace stip::registry
