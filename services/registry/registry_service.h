// RegistryService (proto/stip/v1/registry_service.proto) over a RegistryStore: the gRPC edge
// only. Requests are validated here (INVALID_ARGUMENT with google.rpc.BadRequest field
// violations naming the field and the rule), unknown ids are NOT_FOUND naming the id, and
// every store status is translated with StatusToGrpc.
//
// Unary calls, WaitForDecision: synchronous handlers on gRPC's threads (at most the server's
// max_threads at once); each blocks on the store (bounded by the caller's deadline, or
// default_deadline). WaitForDecision blocks on the ChangeNotifier too, at most
// max_decision_wait whatever the caller's deadline, and at most max_waiting_calls of them
// wait at once, so that waiting callers never take every thread from the other calls.
//
// The Watch streams (WatchDecisions, WatchListings) use gRPC's callback API
// (ServerWriteReactor), each with one thread of its own (the "subscriber thread"):
//   - The subscriber thread reads the feed from the store after its cursor, in batches, and
//     writes one message per entry; when caught up it waits on the ChangeNotifier until a
//     commit or the heartbeat interval. Every subscriber reads the store itself, so no
//     subscriber waits for another: a slow one cannot slow the others.
//   - One write is outstanding at a time. gRPC completes a write when HTTP/2 flow control
//     lets it out; a subscriber that stops reading fills its flow-control window and its
//     write stays outstanding. When a write has been outstanding for
//     slow_subscriber_timeout, the subscriber thread finishes the call with
//     RESOURCE_EXHAUSTED ("fell behind; reconnect with your last cursor"). This is why the
//     callback API: with the synchronous API a blocked Write can only be broken by
//     TryCancel, and the client then sees CANCELLED, not why it was cut off. Finishing with
//     a write outstanding queues the status after the unread messages: the client reads
//     what was sent, then the status, and resumes from the cursor of the last message it
//     read, missing nothing.
//   - gRPC's callback threads only record events (write done, cancelled, done) and never
//     block; the store and the notifier are waited on by the subscriber thread only.
//   - The call ends promptly on cancellation (OnCancel wakes the subscriber thread) and on
//     Stop(). Server::Shutdown cancels calls still open at its deadline, which ends them too.
//
// Delivery: at least once across reconnections is not needed: a cursor names one feed entry,
// and a stream resumed from the cursor of the last message received continues with the
// entry after it, so a subscriber misses nothing and sees nothing twice. Heartbeats carry the
// scan position, so a filtered subscriber also resumes near the head.
//
// Cursors: "d.<seq>" on WatchDecisions and "l.<seq>" on WatchListings, where <seq> is the
// feed sequence number of the last entry delivered (or scanned). Opaque to clients: the form
// may change within v1 only in ways that keep old cursors valid. An empty cursor starts at
// the head of the feed ("from now"), and the stream's first message is then a heartbeat
// carrying that position. A cursor older than the feed keeps (RegistryStore::PruneFeeds), or
// ahead of it, is OUT_OF_RANGE; a malformed one, or one of the other feed, INVALID_ARGUMENT.
//
// Lifetime: the store and the notifier outlive the service; the service outlives the
// server it is registered with. Shutdown sequence: Stop() (every stream ends with
// UNAVAILABLE, every WaitForDecision returns), then GrpcServer::Shutdown, then destroy the
// service, whose destructor waits for the subscriber threads to end.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server_context.h"
#include "services/registry/change_notifier.h"
#include "services/registry/registry_store.h"
#include "stip/v1/registry_service.grpc.pb.h"

namespace stip::registry {

struct RegistryServiceOptions {
  // The deadline of the work done for a unary call whose caller set none.
  absl::Duration default_deadline = absl::Seconds(30);
  // Page sizes: 0 in a request means default_page_size; more than max_page_size is refused.
  int32_t default_page_size = 100;
  int32_t max_page_size = 1000;
  // Watch streams: a heartbeat after this long without a message.
  absl::Duration heartbeat_interval = absl::Seconds(15);
  // Watch streams: entries read from the store at once, and the most rows one read scans
  // (bounds the time of a read with a filter that matches little).
  int32_t watch_batch_size = 256;
  int32_t watch_scan_limit = 10000;
  // Watch streams: a subscriber whose write has been outstanding this long is cut off with
  // RESOURCE_EXHAUSTED.
  absl::Duration slow_subscriber_timeout = absl::Seconds(10);
  // Watch streams open at once (both kinds together); more are RESOURCE_EXHAUSTED.
  int max_subscribers = 256;
  // Watch streams one client may have open at once, so that one client cannot take every
  // slot; more are RESOURCE_EXHAUSTED naming the limit. A client is its network address
  // (without the port) until callers have identities: behind a proxy every client has the
  // proxy's address, so there raise it to max_subscribers and let the proxy limit clients.
  int max_subscribers_per_client = 16;
  // WaitForDecision: the store is read again this often even without a notification, in
  // case one is missed (e.g. a decision applied by another instance).
  absl::Duration wait_poll_interval = absl::Seconds(1);
  // WaitForDecision: the longest one call waits, for a caller that set no deadline or a
  // later one (24 h deadlines held a thread each for a day). It then answers
  // DEADLINE_EXCEEDED saying to call again, which clients do until their own deadline.
  absl::Duration max_decision_wait = absl::Seconds(60);
  // WaitForDecision calls waiting at once; more are RESOURCE_EXHAUSTED (retry later, or
  // follow WatchDecisions). Below the server's max_threads, which the other calls need too.
  int max_waiting_calls = 64;
};

class RegistryServiceImpl final
    : public v1::RegistryService::WithCallbackMethod_WatchDecisions<
          v1::RegistryService::WithCallbackMethod_WatchListings<v1::RegistryService::Service>> {
 public:
  // `store` and `notifier` outlive the service.
  RegistryServiceImpl(RegistryStore* store, ChangeNotifier* notifier,
                      RegistryServiceOptions options = {});
  // Stops, then waits for every subscriber thread to end. Call after the server's
  // Shutdown (the server must not start calls on a destroyed service).
  ~RegistryServiceImpl() override;
  RegistryServiceImpl(const RegistryServiceImpl&) = delete;
  RegistryServiceImpl& operator=(const RegistryServiceImpl&) = delete;

  // Ends every Watch stream (UNAVAILABLE: "the server is shutting down; reconnect with your
  // last cursor") and every WaitForDecision (UNAVAILABLE), and refuses new ones. Does not
  // block. Idempotent. Does not shut the notifier down (others may share it).
  void Stop();

  // Watch streams open now (for the active-subscribers gauge).
  int ActiveSubscribers() const { return active_subscribers_.load(); }
  // Subscribers cut off for being slow, since start (for a counter).
  int64_t SlowSubscribersCutOff() const { return slow_cut_off_.load(); }

  grpc::Status RegisterPark(grpc::ServerContext* context, const v1::RegisterParkRequest* request,
                            v1::RegisterParkResponse* response) override;
  grpc::Status ListParks(grpc::ServerContext* context, const v1::ListParksRequest* request,
                         v1::ListParksResponse* response) override;
  grpc::Status EnrollEnterprise(grpc::ServerContext* context,
                                const v1::EnrollEnterpriseRequest* request,
                                v1::EnrollEnterpriseResponse* response) override;
  grpc::Status GetEnterprise(grpc::ServerContext* context, const v1::GetEnterpriseRequest* request,
                             v1::GetEnterpriseResponse* response) override;
  // Ordered by USCC; the page token continues after the last USCC served, so enterprises
  // enrolled while a client pages appear (if after the cursor) and none is served twice.
  grpc::Status ListEnterprises(grpc::ServerContext* context,
                               const v1::ListEnterprisesRequest* request,
                               v1::ListEnterprisesResponse* response) override;
  grpc::Status GetEnterpriseHistory(grpc::ServerContext* context,
                                    const v1::GetEnterpriseHistoryRequest* request,
                                    v1::GetEnterpriseHistoryResponse* response) override;
  grpc::Status GetFiling(grpc::ServerContext* context, const v1::GetFilingRequest* request,
                         v1::GetFilingResponse* response) override;
  grpc::Status GetDecision(grpc::ServerContext* context, const v1::GetDecisionRequest* request,
                           v1::GetDecisionResponse* response) override;
  // Notifies the ChangeNotifier when the close changed the roster.
  grpc::Status CloseFilingWindow(grpc::ServerContext* context,
                                 const v1::CloseFilingWindowRequest* request,
                                 v1::CloseFilingWindowResponse* response) override;
  grpc::Status GetParkStatistics(grpc::ServerContext* context,
                                 const v1::GetParkStatisticsRequest* request,
                                 v1::GetParkStatisticsResponse* response) override;
  grpc::Status GetRegionalStatistics(grpc::ServerContext* context,
                                     const v1::GetRegionalStatisticsRequest* request,
                                     v1::GetRegionalStatisticsResponse* response) override;
  // DEADLINE_EXCEEDED at the caller's deadline or after max_decision_wait, whichever comes
  // first, naming the filing and saying to call again; CANCELLED when the caller cancels;
  // RESOURCE_EXHAUSTED beyond max_waiting_calls.
  grpc::Status WaitForDecision(grpc::ServerContext* context,
                               const v1::WaitForDecisionRequest* request,
                               v1::WaitForDecisionResponse* response) override;

  grpc::ServerWriteReactor<v1::WatchDecisionsResponse>* WatchDecisions(
      grpc::CallbackServerContext* context, const v1::WatchDecisionsRequest* request) override;
  grpc::ServerWriteReactor<v1::WatchListingsResponse>* WatchListings(
      grpc::CallbackServerContext* context, const v1::WatchListingsRequest* request) override;

 private:
  template <typename Feed>
  friend class WatchStream;

  // Counts a new subscriber thread of `client` (its address) unless stopped or at
  // max_subscribers or max_subscribers_per_client; otherwise the refusal, RESOURCE_EXHAUSTED
  // or UNAVAILABLE.
  grpc::Status AdmitSubscriber(const std::string& client);
  void SubscriberThreadEnded(const std::string& client);
  bool stopped() const { return stopped_.load(); }

  RegistryStore* const store_;
  ChangeNotifier* const notifier_;
  const RegistryServiceOptions options_;

  std::atomic<bool> stopped_{false};
  std::atomic<int> active_subscribers_{0};
  std::atomic<int64_t> slow_cut_off_{0};
  // Subscriber threads still running (the destructor waits for 0).
  absl::Mutex threads_mu_;
  int threads_ ABSL_GUARDED_BY(threads_mu_) = 0;
  // Subscriber threads by client address (entries removed at 0).
  absl::flat_hash_map<std::string, int> threads_by_client_ ABSL_GUARDED_BY(threads_mu_);
  // WaitForDecision calls waiting now.
  std::atomic<int> waiting_calls_{0};
};

}  // namespace stip::registry
