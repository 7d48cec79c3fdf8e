// The gRPC edge every service shares: a server bootstrap with limits, health, reflection and
// metrics; a channel factory with the same limits for service-to-service calls; deadlines;
// and the one mapping from absl::Status to grpc::Status.
//
// gRPC 1.51 (Debian 12) gets no security fixes since December 2022 (HTTP/2 rapid reset is
// among the known issues), so every server and channel made here has message-size,
// concurrent-stream, metadata and connection limits, a keepalive policy, and every call a
// deadline. Transport security: TLS on the gRPC port when a certificate and key are given
// (mutual TLS with a client CA), plaintext otherwise (in Kubernetes then expected from the
// mesh or the network policy); the health port is always plaintext, for the kubelet's
// probes, and the admin port listens on loopback by default.
#pragma once

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/support/status.h"
#include "services/common/health.h"

namespace grpc {
class CallbackGenericService;
class Channel;
class ClientContext;
class Server;
class ServerContextBase;
class Service;
}  // namespace grpc

namespace stip {

// Limits shared by servers and the channels that call them. The defaults are the flags'.
struct GrpcLimits {
  // Largest message received or sent, in bytes. A larger request fails with
  // RESOURCE_EXHAUSTED before it reaches the service. 1 MiB: a filing with the most projects
  // the validator takes is far below it, and a pod's memory holds many calls at once.
  int max_message_bytes = 1024 * 1024;
  // Server: concurrent calls on one HTTP/2 connection (SETTINGS_MAX_CONCURRENT_STREAMS). It
  // bounds the calls one connection holds open, not how fast a client opens and resets them
  // (HTTP/2 rapid reset): gRPC 1.51 has no limit on that, which is why the services belong
  // behind a proxy with its own stream limits (README, "Fronting the services").
  int max_concurrent_streams = 100;
  // Largest header block (metadata) accepted, in bytes; gRPC's default. Error details are
  // kept within it by StatusToGrpc.
  int max_metadata_bytes = 8 * 1024;
  // Pings on an idle connection every keepalive_time; the connection is closed when a ping
  // is not answered within keepalive_timeout. Clients made by MakeChannel ping this often.
  absl::Duration keepalive_time = absl::Seconds(30);
  absl::Duration keepalive_timeout = absl::Seconds(10);
  // Server: clients may ping at most this often without data; more often is answered with
  // GOAWAY (too_many_pings). At or below every client's keepalive_time.
  absl::Duration min_client_ping_interval = absl::Seconds(10);
  // Server: a connection without calls for this long is closed (InfiniteDuration: never).
  absl::Duration max_connection_idle = absl::Minutes(5);
  // Server: a connection older than this is asked to go away (GOAWAY), so that clients
  // rebalance over new instances; calls still open get max_connection_age_grace to finish.
  // Long Watch streams end then and resume from their cursor.
  absl::Duration max_connection_age = absl::Minutes(30);
  absl::Duration max_connection_age_grace = absl::Minutes(5);
  // The deadline of work done for a call whose caller set none (see EffectiveDeadline).
  absl::Duration default_rpc_deadline = absl::Seconds(30);
};

struct GrpcServerOptions {
  // "host:port"; port 0 picks a free one (GrpcServer::port() tells which).
  std::string listen_address = "0.0.0.0:0";
  GrpcLimits limits;
  // Serves grpc.reflection.v1alpha.ServerReflection (what grpcurl uses), on this server only.
  bool enable_reflection = false;
  // Threads the synchronous server may use for calls (a grpc::ResourceQuota on the server),
  // so that slow or hostile callers cannot grow the process's threads without bound: a call
  // arriving when every one is busy fails at once with RESOURCE_EXHAUSTED ("Server
  // Threadpool Exhausted"), which clients retry with backoff. Callback-API calls (the Watch
  // streams, health) do not take these threads; they have limits of their own. 0: no cap
  // (gRPC's default, one thread per concurrent call).
  int max_threads = 128;
  // Service names reported by the health service besides "" (the whole server, which is what
  // Kubernetes' gRPC probes ask by default), e.g. "stip.v1.IntakeService".
  std::vector<std::string> health_service_names;
  // When set, a second server on this address, always plaintext, serves only
  // grpc.health.v1.Health for Kubernetes' native gRPC probes (which cannot speak TLS):
  // service "" is readiness (follows the HealthReporter), kLivenessHealthService is
  // liveness (SERVING until Shutdown: a process waiting for Kafka is alive, not ready).
  std::string health_listen_address;
  // TLS on listen_address when both are set (PEM files, read at start-up). With
  // tls_client_ca_file, every client must present a certificate signed by that CA.
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string tls_client_ca_file;
};

// The health service name of liveness on the health port.
inline constexpr char kLivenessHealthService[] = "stip.liveness";

// A running gRPC server. Thread-safe. Destroying it shuts it down at once (in-flight calls
// are cancelled); Shutdown first to drain them.
class GrpcServer {
 public:
  ~GrpcServer();
  GrpcServer(const GrpcServer&) = delete;
  GrpcServer& operator=(const GrpcServer&) = delete;

  // The port bound, useful after listening on port 0.
  int port() const { return port_; }
  // The health port bound (0 without health_listen_address).
  int health_port() const { return health_port_; }
  grpc::Server* server() { return server_.get(); }

  // Reports NOT_SERVING, stops accepting calls, lets in-flight calls finish until `deadline`
  // and then cancels them, and returns when every handler has returned. Blocks. Handlers of
  // long-lived streams must end when ServerContext::IsCancelled() or when the stream write
  // fails, or Shutdown waits for them. Idempotent.
  void Shutdown(absl::Time deadline);

 private:
  friend absl::StatusOr<std::unique_ptr<GrpcServer>> StartGrpcServer(
      const GrpcServerOptions&, const std::vector<grpc::Service*>&, HealthReporter*);
  GrpcServer() = default;

  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  // Answers UNIMPLEMENTED for every method of the health port but health; outlives it.
  std::unique_ptr<grpc::CallbackGenericService> health_unimplemented_;
  std::unique_ptr<grpc::Server> health_server_;
  int health_port_ = 0;
  // The names the health port reports besides "" and liveness.
  std::vector<std::string> health_service_names_;
  std::once_flag shutdown_once_;
  // Last, so that they are destroyed first: no health change reaches a server being
  // destroyed.
  HealthReporter::Subscription health_subscription_;
  HealthReporter::Subscription health_port_subscription_;
};

// Builds and starts a server for `services` (each outlives the server) with the options'
// limits, the standard health service (grpc.health.v1.Health), reflection when enabled,
// and metrics for every call in MetricsRegistry():
//   stip_grpc_server_handled_total{method,code}   calls finished, by full method name
//                                                  ("/stip.v1.IntakeService/SubmitFiling")
//                                                  and status code name ("OK")
//   stip_grpc_server_handling_seconds{method}     time from the call's start to its status
// When `health` is given the health service follows it (SERVING while it is); otherwise
// the server is SERVING until Shutdown. kUnavailable, naming the address, when it cannot
// listen.
// Compressed requests are refused: gRPC 1.51 inflates a compressed message whole before
// checking its size, so a small gzip request could take hundreds of MiB. The server accepts
// only the identity encoding (grpc-accept-encoding tells clients so); a request sent with
// grpc-encoding gzip or deflate fails with UNIMPLEMENTED ("Compression algorithm 'gzip' is
// disabled.") before its message is read. Responses are never compressed.
absl::StatusOr<std::unique_ptr<GrpcServer>> StartGrpcServer(
    const GrpcServerOptions& options, const std::vector<grpc::Service*>& services,
    HealthReporter* health = nullptr);

// A channel to `target` ("host:port", "dns:///name:port") for service-to-service calls,
// with the same message-size and metadata limits and keepalive as the servers. Plaintext.
// Never fails: connection errors show on calls.
std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const GrpcLimits& limits);
// The same over TLS, verifying the server's certificate against the CA in `tls_ca_file`
// (PEM). kFailedPrecondition naming the file when it cannot be read.
absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeTlsChannel(const std::string& target,
                                                              const GrpcLimits& limits,
                                                              const std::string& tls_ca_file);

// Deadlines. gRPC servers cannot impose a deadline on a call whose client set none; the
// default applies to the work a handler does for it instead. Handlers bound their waits
// (a publish, a database query) by EffectiveDeadline and make downstream calls with
// DownstreamContext, so that no call holds resources forever and a caller's deadline
// reaches every service the call passes through.
//
// The caller's deadline, or now + `default_deadline` when the caller set none.
absl::Time EffectiveDeadline(const grpc::ServerContextBase& context,
                             absl::Duration default_deadline);
// A context for a call made while serving `context`: its deadline is
// EffectiveDeadline(context, default_deadline), and it is cancelled when `context` is.
std::unique_ptr<grpc::ClientContext> DownstreamContext(const grpc::ServerContextBase& context,
                                                       absl::Duration default_deadline);
// A context for a call made on no caller's behalf (stipctl, start-up checks).
std::unique_ptr<grpc::ClientContext> ContextWithTimeout(absl::Duration timeout);

// Errors at the RPC edge. Modules return absl::Status; service classes return
// StatusToGrpc(status) and nothing else, so that codes, messages and details are mapped in
// one place. Payloads attached to the absl::Status under a type URL
// ("type.googleapis.com/google.rpc.BadRequest") become the details of a google.rpc.Status
// (grpc-status-details-bin), which clients read with grpc::ExtractErrorDetails. Messages
// and details travel in trailers, which clients limit (8 KiB by default): a message is cut to
// 1 KiB, and details to 4 KiB (a BadRequest keeps its first violations and a last one saying
// how many more there are; other payloads that do not fit are left out). Codes map one to
// one; messages and details are what ForCaller leaves of the status.
grpc::Status StatusToGrpc(const absl::Status& status);

// Errors for people, details for logs: what a caller may see of `status`. A status whose
// message may hold what callers must not see (file paths, SQL text, broker messages,
// `user@host:port/db`) becomes the same code with a generic message and an error id,
// "internal error; error id 7f3a09c2d4e1b658", without payloads; its full text is logged
// once, at level error, with that id ("error_id" field), so an operator finds it from what
// the caller reports. That is every kUnknown, kInternal, kUnavailable, kDataLoss and
// kAborted status (they come from stores, brokers and downstream calls, never from
// validation) and every status marked WithInternalDetail. Every other status (kInvalidArgument,
// kFailedPrecondition, kNotFound, ... written by our own validation) is returned unchanged,
// BadRequest details included. Thread-safe. StatusToGrpc applies it; an edge that reports a
// status otherwise (a per-item error in a stream's response) applies it itself.
absl::Status ForCaller(const absl::Status& status);
// `status` marked as holding details for operators only, whatever its code (a SQL constraint
// violation is kAlreadyExists, a full disk kResourceExhausted): ForCaller hides its message.
// The SQL layers and the Kafka client mark every error they make. A status rebuilt from the
// message of a marked one loses the mark: keep the status, or mark the new one.
absl::Status WithInternalDetail(absl::Status status);
// Whether ForCaller hides `status`'s message.
bool HasInternalDetail(const absl::Status& status);
// The reverse, for the results of downstream calls: code, message and details as payloads.
absl::Status GrpcToStatus(const grpc::Status& status);

// One invalid field of a request: `field` is the path of the field
// ("filing.employees.rd_count", "filing.projects[2].title"), `description` says what is
// wrong in words an enterprise understands.
struct FieldViolation {
  std::string field;
  std::string description;
  bool operator==(const FieldViolation&) const = default;
};

// kInvalidArgument with `message` and a google.rpc.BadRequest payload listing `violations`:
// a plain absl::Status that validators return, turned into error details by StatusToGrpc.
absl::Status InvalidArgumentWithViolations(std::string_view message,
                                           const std::vector<FieldViolation>& violations);
// The violations an InvalidArgumentWithViolations status carries (empty for others).
std::vector<FieldViolation> FieldViolations(const absl::Status& status);

}  // namespace stip
