#include "services/common/grpc_server.h"

#include <algorithm>
#include <climits>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <utility>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/types/optional.h"
#include "google/protobuf/any.pb.h"
#include "google/rpc/error_details.pb.h"
#include "google/rpc/status.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/generic/async_generic_service.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/impl/server_builder_option.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/channel_arguments.h"
#include "grpcpp/support/error_details.h"
#include "grpcpp/support/server_interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/histogram.h"
#include "services/common/logging.h"
#include "services/common/metrics.h"
#include "spdlog/spdlog.h"

namespace stip {
namespace {

// A PEM file's contents; kFailedPrecondition naming `what` and the file when unreadable.
absl::StatusOr<std::string> ReadPemFile(const std::string& path, const char* what) {
  std::ifstream file(path, std::ios::binary);
  std::string contents((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  if (!file.good() && !file.eof()) contents.clear();
  if (contents.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot read ", what, " from ", path, " (a PEM file)"));
  }
  return contents;
}

constexpr char kBadRequestTypeUrl[] = "type.googleapis.com/google.rpc.BadRequest";
// The mark of WithInternalDetail: a payload that never leaves the process (ForCaller drops
// the payloads of the statuses it hides).
constexpr char kInternalDetailTypeUrl[] = "stip/not-for-callers";

// 64 random bits in hex: unique enough to find one log line among a day's, and nothing an
// attacker can learn from (not a counter, not a time).
std::string NewErrorId() {
  thread_local std::mt19937_64 random(std::random_device{}());
  static constexpr char kHex[] = "0123456789abcdef";
  uint64_t bits = random();
  std::string id(16, '0');
  for (char& digit : id) {
    digit = kHex[bits & 0xf];
    bits >>= 4;
  }
  return id;
}

// The generic words a caller gets instead of a hidden message: what it can do about it.
const char* GenericMessage(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnavailable:
      return "the service cannot complete the request now; retry later";
    case absl::StatusCode::kAborted:
      return "the request met a concurrent change; retry";
    default:
      return "internal error";
  }
}

bool IsHiddenCode(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kAborted:
      return true;
    default:
      return false;
  }
}

// Status messages and details travel in HTTP/2 trailers, and clients refuse trailers larger
// than their metadata limit (8 KiB by default in gRPC C++, Java and Go), failing the call
// with an error that hides ours. The budgets below keep them well inside it (details are
// base64-encoded on the wire: 4 KiB become about 5.5 KiB).
constexpr size_t kMaxMessageBytes = 1024;
constexpr size_t kMaxDetailsBytes = 4096;

// `text` cut to at most `max_bytes`, on a UTF-8 character boundary, marked when cut.
std::string TruncateUtf8(std::string_view text, size_t max_bytes) {
  if (text.size() <= max_bytes) return std::string(text);
  constexpr char kMark[] = "...";
  size_t cut = max_bytes - (sizeof(kMark) - 1);
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xc0) == 0x80) --cut;
  return absl::StrCat(absl::string_view(text.data(), cut), kMark);
}

// A serialized google.rpc.BadRequest keeping its first violations within `max_bytes` and
// saying how many were left out, so that the sender fixes those and learns of the rest on
// the next attempt.
std::string ShrinkBadRequest(const std::string& serialized, size_t max_bytes) {
  google::rpc::BadRequest all;
  if (!all.ParseFromString(serialized)) return "";
  constexpr size_t kNoteBytes = 120;
  google::rpc::BadRequest kept;
  size_t used = 0;
  for (const auto& violation : all.field_violations()) {
    const size_t cost = violation.ByteSizeLong() + 3;
    if (used + cost + kNoteBytes > max_bytes) break;
    *kept.add_field_violations() = violation;
    used += cost;
  }
  const int omitted = all.field_violations_size() - kept.field_violations_size();
  if (omitted > 0) {
    google::rpc::BadRequest::FieldViolation* note = kept.add_field_violations();
    note->set_description(absl::StrCat(omitted, " more violations not shown: correct the ones ",
                                       "above and submit again to see them"));
  }
  return kept.SerializeAsString();
}

// Channel arguments are ints in milliseconds; an infinite duration is INT_MAX ("never").
int ToMillis(absl::Duration duration) {
  if (duration >= absl::Milliseconds(INT_MAX)) return INT_MAX;
  return static_cast<int>(std::max<int64_t>(0, absl::ToInt64Milliseconds(duration)));
}

struct GrpcServerMetrics {
  prometheus::Family<prometheus::Counter>& handled;
  prometheus::Family<prometheus::Histogram>& handling_seconds;
  prometheus::Family<prometheus::Counter>& undecodable;
};

GrpcServerMetrics& GetGrpcServerMetrics() {
  static auto* metrics = new GrpcServerMetrics{
      prometheus::BuildCounter()
          .Name("stip_grpc_server_handled_total")
          .Help("gRPC calls finished by the server, by full method name and status code")
          .Register(MetricsRegistry()),
      prometheus::BuildHistogram()
          .Name("stip_grpc_server_handling_seconds")
          .Help("Time from the start of a gRPC call to its status, by full method name")
          .Register(MetricsRegistry()),
      prometheus::BuildCounter()
          .Name("stip_grpc_server_undecodable_requests_total")
          .Help("Requests refused because they could not be decoded (not protobuf, or a "
                "string field that is not UTF-8), by full method name")
          .Register(MetricsRegistry()),
  };
  return *metrics;
}

const prometheus::Histogram::BucketBoundaries& HandlingBuckets() {
  static const auto* buckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *buckets;
}

std::string CodeName(grpc::StatusCode code) {
  // absl::StatusCode has the same numbering as grpc::StatusCode.
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(code));
}

// One per call, made when the call starts and destroyed when it ends. The status is seen at
// PRE_SEND_STATUS; a call that ends without sending one (the client cancelled, or its
// deadline passed first) is counted as CANCELLED.
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  explicit MetricsInterceptor(std::string method)
      : method_(std::move(method)), start_(absl::Now()) {}

  ~MetricsInterceptor() override {
    if (!recorded_) Record(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Record(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Record(grpc::StatusCode code) {
    recorded_ = true;
    GrpcServerMetrics& metrics = GetGrpcServerMetrics();
    metrics.handled.Add({{"method", method_}, {"code", CodeName(code)}}).Increment();
    metrics.handling_seconds.Add({{"method", method_}}, HandlingBuckets())
        .Observe(absl::ToDoubleSeconds(absl::Now() - start_));
  }

  const std::string method_;
  const absl::Time start_;
  bool recorded_ = false;
};

// gRPC 1.51 answers a request it cannot decode with INTERNAL and an empty message, before
// any handler runs: protobuf 3.21 refuses a proto3 string field that is not UTF-8, and any
// bytes that are not the method's request message. The caller cannot tell the fault is
// theirs, and nothing of ours sees it but this: the message arrives here as null after the
// failed parse, and the status on its way out becomes INVALID_ARGUMENT saying what was
// wrong, with the field (as protobuf names it) in a BadRequest. A stream's Read returns false
// on such a message as at the end of input; only a UTF-8 refusal (which protobuf reports,
// TakeProtobufParseError) tells the two apart there, so other garbage in a stream ends it.
class UndecodableRequestInterceptor final : public grpc::experimental::Interceptor {
 public:
  UndecodableRequestInterceptor(std::string method, bool unary)
      : method_(std::move(method)), unary_(unary) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    using grpc::experimental::InterceptionHookPoints;
    if (methods->QueryInterceptionHookPoint(InterceptionHookPoints::POST_RECV_MESSAGE)) {
      std::string parse_error = TakeProtobufParseError();
      if (methods->GetRecvMessage() == nullptr && (unary_ || !parse_error.empty()) &&
          !undecodable_) {
        undecodable_ = true;
        parse_error_ = std::move(parse_error);
        GetGrpcServerMetrics().undecodable.Add({{"method", method_}}).Increment();
      }
    }
    if (undecodable_ &&
        methods->QueryInterceptionHookPoint(InterceptionHookPoints::PRE_SEND_STATUS)) {
      methods->ModifySendStatus(StatusToGrpc(UndecodableStatus()));
    }
    methods->Proceed();
  }

 private:
  absl::Status UndecodableStatus() const {
    // "String field 'stip.v1.AnnualFiling.name' contains invalid UTF-8 data when parsing..."
    const size_t open = parse_error_.find('\'');
    const size_t close = open == std::string::npos ? open : parse_error_.find('\'', open + 1);
    if (close == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("the request cannot be decoded: it is not a valid ", method_,
                       " request (protobuf); a string field that is not UTF-8 is refused too"));
    }
    const std::string field = parse_error_.substr(open + 1, close - open - 1);
    return InvalidArgumentWithViolations(
        absl::StrCat("the request cannot be decoded: string field ", field,
                     " holds bytes that are not UTF-8"),
        {{field,
          "must be UTF-8 text; send the text itself, not bytes in another encoding "
          "(GBK, Latin-1)"}});
  }

  const std::string method_;
  const bool unary_;
  bool undecodable_ = false;
  std::string parse_error_;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(info->method() != nullptr ? info->method() : "");
  }
};

class UndecodableRequestInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    using Type = grpc::experimental::ServerRpcInfo::Type;
    return new UndecodableRequestInterceptor(
        info->method() != nullptr ? info->method() : "",
        info->type() == Type::UNARY || info->type() == Type::SERVER_STREAMING);
  }
};

// Puts the reflection plugin on one builder, or takes it off. Linking gRPC's reflection
// library registers the plugin for every server of the process (a static initializer calls
// InitProtoReflectionServerBuilderPlugin), and a builder copies the global plugins when it is
// made; this option, applied when the server is built, decides per server instead.
class ReflectionOption final : public grpc::ServerBuilderOption {
 public:
  explicit ReflectionOption(bool enable) : enable_(enable) {}
  void UpdateArguments(grpc::ChannelArguments*) override {}
  void UpdatePlugins(std::vector<std::unique_ptr<grpc::ServerBuilderPlugin>>* plugins) override {
    const auto is_reflection = [](const std::unique_ptr<grpc::ServerBuilderPlugin>& plugin) {
      return plugin->name() == "proto_server_reflection";
    };
    plugins->erase(std::remove_if(plugins->begin(), plugins->end(), is_reflection), plugins->end());
    if (enable_) {
      plugins->push_back(std::make_unique<grpc::reflection::ProtoServerReflectionPlugin>());
    }
  }

 private:
  const bool enable_;
};

}  // namespace

namespace {

// The limits every server of the process has, the health port's included.
void ApplyLimits(const GrpcLimits& limits, grpc::ServerBuilder* builder) {
  // Without SO_REUSEPORT a second instance on the same port fails to start rather than
  // silently sharing the port (and its calls) with the first.
  builder->AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder->SetMaxReceiveMessageSize(limits.max_message_bytes);
  builder->SetMaxSendMessageSize(limits.max_message_bytes);
  builder->AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS, limits.max_concurrent_streams);
  builder->AddChannelArgument(GRPC_ARG_MAX_METADATA_SIZE, limits.max_metadata_bytes);
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(limits.keepalive_time));
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(limits.keepalive_timeout));
  // Clients made by MakeChannel ping idle connections too, to notice dead peers; allow it,
  // but no more often than min_client_ping_interval.
  builder->AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder->AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                              ToMillis(limits.min_client_ping_interval));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_IDLE_MS,
                              ToMillis(limits.max_connection_idle));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_MS, ToMillis(limits.max_connection_age));
  builder->AddChannelArgument(GRPC_ARG_MAX_CONNECTION_AGE_GRACE_MS,
                              ToMillis(limits.max_connection_age_grace));
  // gRPC 1.51 inflates a compressed message whole and only then compares it with the size
  // limit: 0.5 MiB of gzip became 512 MiB of memory. Only the identity encoding is enabled,
  // so a compressed call is refused when its headers arrive, before any message is read;
  // decompression is off as well, in case a message ever got past that check.
  builder->SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_DEFLATE, false);
  builder->SetCompressionAlgorithmSupportStatus(GRPC_COMPRESS_GZIP, false);
  builder->AddChannelArgument(GRPC_ARG_ENABLE_PER_MESSAGE_DECOMPRESSION, 0);
}

// The server's credentials: TLS when a certificate and key are configured.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> ServerCredentialsFor(
    const GrpcServerOptions& options) {
  if (options.tls_cert_file.empty() && options.tls_key_file.empty()) {
    if (!options.tls_client_ca_file.empty()) {
      return absl::InvalidArgumentError(
          "--tls-client-ca-file needs --tls-cert-file and --tls-key-file (TLS on the gRPC port)");
    }
    return grpc::InsecureServerCredentials();
  }
  if (options.tls_cert_file.empty() || options.tls_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--tls-cert-file and --tls-key-file go together: TLS needs both");
  }
  auto cert = ReadPemFile(options.tls_cert_file, "the TLS certificate");
  if (!cert.ok()) return cert.status();
  auto key = ReadPemFile(options.tls_key_file, "the TLS private key");
  if (!key.ok()) return key.status();
  grpc::SslServerCredentialsOptions ssl(GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
  ssl.pem_key_cert_pairs.push_back({*std::move(key), *std::move(cert)});
  if (!options.tls_client_ca_file.empty()) {
    auto ca = ReadPemFile(options.tls_client_ca_file, "the client CA certificate");
    if (!ca.ok()) return ca.status();
    ssl.pem_root_certs = *std::move(ca);
    ssl.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

}  // namespace

absl::StatusOr<std::unique_ptr<GrpcServer>> StartGrpcServer(
    const GrpcServerOptions& options, const std::vector<grpc::Service*>& services,
    HealthReporter* health) {
  const GrpcLimits& limits = options.limits;
  if (services.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("no gRPC services to serve on ", options.listen_address));
  }
  // Process-wide switch, read when a builder is made.
  grpc::EnableDefaultHealthCheckService(true);

  grpc::ServerBuilder builder;
  auto server = std::unique_ptr<GrpcServer>(new GrpcServer());
  auto credentials = ServerCredentialsFor(options);
  if (!credentials.ok()) return credentials.status();
  builder.AddListeningPort(options.listen_address, *credentials, &server->port_);
  for (grpc::Service* service : services) builder.RegisterService(service);

  ApplyLimits(limits, &builder);
  if (options.max_threads > 0) {
    // Without it every concurrent synchronous call gets a thread of its own: 500 waiting
    // WaitForDecision calls held 525 threads, an HTTP/2 rapid reset grew 3,015.
    grpc::ResourceQuota quota("stip-grpc-server");
    quota.SetMaxThreads(options.max_threads);
    builder.SetResourceQuota(quota);
  }
  builder.SetOption(std::make_unique<ReflectionOption>(options.enable_reflection));

  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  // First: statuses go out through interceptors in this order, so the metrics count the
  // INVALID_ARGUMENT an undecodable request is answered with.
  interceptors.push_back(std::make_unique<UndecodableRequestInterceptorFactory>());
  interceptors.push_back(std::make_unique<MetricsInterceptorFactory>());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));

  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->port_ == 0) {
    if (server->server_ != nullptr) server->server_->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot serve gRPC on ", options.listen_address,
                     ": the address is in use or not valid for this host (gRPC's log above "
                     "says which)"));
  }

  grpc::HealthCheckServiceInterface* health_service = server->server_->GetHealthCheckService();
  for (const std::string& name : options.health_service_names) {
    health_service->SetServingStatus(name, true);
  }
  health_service->SetServingStatus(true);
  // Every name follows readiness, not only "": a client asking for its service by name
  // (stipctl health) must hear NOT_SERVING while the process drains or waits for Kafka.
  const std::vector<std::string> names = options.health_service_names;
  auto follow = [names](grpc::HealthCheckServiceInterface* service) {
    return [service, names](bool serving) {
      // By name: SetServingStatus(bool) sets every name the service knows, liveness included.
      service->SetServingStatus("", serving);
      for (const std::string& name : names) service->SetServingStatus(name, serving);
    };
  };
  if (health != nullptr) {
    server->health_subscription_ = health->Subscribe(follow(health_service));
  }
  spdlog::info("gRPC server listening on {} (port {}){}{}", options.listen_address, server->port_,
               options.tls_cert_file.empty() ? "" : ", TLS",
               options.enable_reflection ? ", reflection on" : "");

  if (!options.health_listen_address.empty()) {
    // A server of its own: plaintext whatever the main port uses, and nothing but health.
    grpc::ServerBuilder health_builder;
    health_builder.AddListeningPort(options.health_listen_address,
                                    grpc::InsecureServerCredentials(), &server->health_port_);
    ApplyLimits(limits, &health_builder);
    // Nothing but health: not the reflection plugin that linking reflection registers globally.
    health_builder.SetOption(std::make_unique<ReflectionOption>(false));
    // The default health service is added when the server starts, too late for the builder,
    // which refuses a server without any method of its own. A generic service answers every
    // other method UNIMPLEMENTED (its default) and makes the server valid.
    server->health_unimplemented_ = std::make_unique<grpc::CallbackGenericService>();
    health_builder.RegisterCallbackGenericService(server->health_unimplemented_.get());
    server->health_server_ = health_builder.BuildAndStart();
    if (server->health_server_ == nullptr || server->health_port_ == 0) {
      if (server->health_server_ != nullptr) server->health_server_->Shutdown();
      server->server_->Shutdown();
      return absl::UnavailableError(absl::StrCat("cannot serve gRPC health on ",
                                                 options.health_listen_address,
                                                 ": the address is in use or not valid"));
    }
    grpc::HealthCheckServiceInterface* probes = server->health_server_->GetHealthCheckService();
    probes->SetServingStatus(kLivenessHealthService, true);
    probes->SetServingStatus(true);
    for (const std::string& name : names) probes->SetServingStatus(name, true);
    server->health_service_names_ = names;
    if (health != nullptr) server->health_port_subscription_ = health->Subscribe(follow(probes));
    spdlog::info("gRPC health (readiness \"\", liveness \"{}\") on {} (port {})",
                 kLivenessHealthService, options.health_listen_address, server->health_port_);
  }
  return server;
}

void GrpcServer::Shutdown(absl::Time deadline) {
  // A concurrent second caller waits for the first to finish.
  std::call_once(shutdown_once_, [&] {
    // Stop following the reporter: NOT_SERVING from here on, whatever it says.
    health_subscription_ = HealthReporter::Subscription();
    health_port_subscription_ = HealthReporter::Subscription();
    if (health_server_ != nullptr) {
      // Not ready from here on (every name but liveness); still alive until the drain is over.
      // By name, so that liveness never reads NOT_SERVING in between.
      grpc::HealthCheckServiceInterface* probes = health_server_->GetHealthCheckService();
      probes->SetServingStatus("", false);
      for (const std::string& name : health_service_names_) probes->SetServingStatus(name, false);
    }
    if (server_ == nullptr) return;
    if (grpc::HealthCheckServiceInterface* health = server_->GetHealthCheckService()) {
      health->SetServingStatus(false);
      health->Shutdown();
    }
    const absl::Time start = absl::Now();
    server_->Shutdown(absl::ToChronoTime(deadline));
    server_->Wait();
    if (health_server_ != nullptr) {
      health_server_->GetHealthCheckService()->Shutdown();
      health_server_->Shutdown(absl::ToChronoTime(deadline));
      health_server_->Wait();
    }
    spdlog::info("gRPC server on port {} shut down in {}", port_,
                 absl::FormatDuration(absl::Now() - start));
  });
}

GrpcServer::~GrpcServer() { Shutdown(absl::Now()); }

namespace {

grpc::ChannelArguments ChannelArgumentsFor(const GrpcLimits& limits) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(limits.max_message_bytes);
  args.SetMaxSendMessageSize(limits.max_message_bytes);
  args.SetInt(GRPC_ARG_MAX_METADATA_SIZE, limits.max_metadata_bytes);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, ToMillis(limits.keepalive_time));
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, ToMillis(limits.keepalive_timeout));
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  // Keep pinging a connection that carries no calls (the default stops after two pings),
  // so that a dead peer is noticed before the next call rather than by it.
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, 0);
  // A restarted pod is back in seconds; do not wait gRPC's default two minutes for it.
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 10000);
  return args;
}

}  // namespace

std::shared_ptr<grpc::Channel> MakeChannel(const std::string& target, const GrpcLimits& limits) {
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(),
                                   ChannelArgumentsFor(limits));
}

absl::StatusOr<std::shared_ptr<grpc::Channel>> MakeTlsChannel(const std::string& target,
                                                              const GrpcLimits& limits,
                                                              const std::string& tls_ca_file) {
  grpc::SslCredentialsOptions ssl;
  auto ca = ReadPemFile(tls_ca_file, "the CA certificate");
  if (!ca.ok()) return ca.status();
  ssl.pem_root_certs = *std::move(ca);
  return grpc::CreateCustomChannel(target, grpc::SslCredentials(ssl), ChannelArgumentsFor(limits));
}

absl::Time EffectiveDeadline(const grpc::ServerContextBase& context,
                             absl::Duration default_deadline) {
  const auto deadline = context.deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) {
    return absl::Now() + default_deadline;
  }
  return absl::FromChrono(deadline);
}

std::unique_ptr<grpc::ClientContext> DownstreamContext(const grpc::ServerContextBase& context,
                                                       absl::Duration default_deadline) {
  // Propagates cancellation (and the deadline, which gRPC core caps at the parent's).
  std::unique_ptr<grpc::ClientContext> downstream = grpc::ClientContext::FromServerContext(context);
  downstream->set_deadline(absl::ToChronoTime(EffectiveDeadline(context, default_deadline)));
  return downstream;
}

std::unique_ptr<grpc::ClientContext> ContextWithTimeout(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  return context;
}

absl::Status WithInternalDetail(absl::Status status) {
  if (!status.ok()) status.SetPayload(kInternalDetailTypeUrl, absl::Cord());
  return status;
}

bool HasInternalDetail(const absl::Status& status) {
  return !status.ok() &&
         (IsHiddenCode(status.code()) || status.GetPayload(kInternalDetailTypeUrl).has_value());
}

absl::Status ForCaller(const absl::Status& status) {
  if (!HasInternalDetail(status)) return status;
  const std::string id = NewErrorId();
  // The whole message, however long: the log line is the only place it is kept.
  LogWithFields(spdlog::level::err, "request failed; the caller got an error id",
                {{"error_id", id},
                 {"code", absl::StatusCodeToString(status.code())},
                 {"detail", std::string(status.message())}});
  return absl::Status(status.code(),
                      absl::StrCat(GenericMessage(status.code()), "; error id ", id));
}

grpc::Status StatusToGrpc(const absl::Status& original) {
  if (original.ok()) return grpc::Status::OK;
  const absl::Status status = ForCaller(original);
  const int raw_code = static_cast<int>(status.code());
  const grpc::StatusCode code =
      raw_code > 0 && raw_code <= static_cast<int>(grpc::StatusCode::UNAUTHENTICATED)
          ? static_cast<grpc::StatusCode>(raw_code)
          : grpc::StatusCode::UNKNOWN;
  const std::string message = TruncateUtf8(
      std::string_view(status.message().data(), status.message().size()), kMaxMessageBytes);
  google::rpc::Status details;
  details.set_code(static_cast<int>(code));
  details.set_message(message);
  status.ForEachPayload([&details](absl::string_view type_url, const absl::Cord& payload) {
    google::protobuf::Any any;
    any.set_type_url(std::string(type_url));
    any.set_value(std::string(payload));
    const size_t used = details.ByteSizeLong();
    const size_t room = used < kMaxDetailsBytes ? kMaxDetailsBytes - used : 0;
    // A field of the Status costs its size plus a tag and a length (at most 4 bytes here).
    if (any.ByteSizeLong() + 4 > room) {
      if (any.type_url() != kBadRequestTypeUrl || room < any.type_url().size() + 256) return;
      any.set_value(ShrinkBadRequest(any.value(), room - any.type_url().size() - 16));
    }
    *details.add_details() = std::move(any);
  });
  if (details.details_size() == 0) return grpc::Status(code, message);
  grpc::Status result;
  grpc::SetErrorDetails(details, &result);
  return result;
}

absl::Status GrpcToStatus(const grpc::Status& status) {
  if (status.ok()) return absl::OkStatus();
  absl::Status result(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  google::rpc::Status details;
  if (!status.error_details().empty() && grpc::ExtractErrorDetails(status, &details).ok()) {
    for (const google::protobuf::Any& any : details.details()) {
      result.SetPayload(any.type_url(), absl::Cord(any.value()));
    }
  }
  return result;
}

absl::Status InvalidArgumentWithViolations(std::string_view message,
                                           const std::vector<FieldViolation>& violations) {
  google::rpc::BadRequest bad_request;
  for (const FieldViolation& violation : violations) {
    google::rpc::BadRequest::FieldViolation* field = bad_request.add_field_violations();
    field->set_field(violation.field);
    field->set_description(violation.description);
  }
  absl::Status status =
      absl::InvalidArgumentError(absl::string_view(message.data(), message.size()));
  status.SetPayload(kBadRequestTypeUrl, absl::Cord(bad_request.SerializeAsString()));
  return status;
}

std::vector<FieldViolation> FieldViolations(const absl::Status& status) {
  std::vector<FieldViolation> violations;
  const absl::optional<absl::Cord> payload = status.GetPayload(kBadRequestTypeUrl);
  google::rpc::BadRequest bad_request;
  if (!payload.has_value() || !bad_request.ParseFromString(std::string(*payload))) {
    return violations;
  }
  for (const auto& field : bad_request.field_violations()) {
    violations.push_back({field.field(), field.description()});
  }
  return violations;
}

}  // namespace stip
