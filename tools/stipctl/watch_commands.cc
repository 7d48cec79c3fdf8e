// Regulators' streams: decision watch and listing watch, resumable from a cursor.
//
// Every message of a Watch stream carries the cursor to resume after it. In JSON mode each
// line is the whole response (entry and cursor), so whoever stores the last line can resume;
// in table and YAML mode the cursor goes to stderr every 30 s and at exit. The stream is
// re-opened from the last cursor when it ends with UNAVAILABLE (a server restart, a
// connection aged out) or RESOURCE_EXHAUSTED (cut off for reading too slowly), with a
// backoff; nothing is missed or seen twice across a reconnection. SIGINT/SIGTERM end the
// watch with exit 0 after printing the cursor.
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "tools/stipctl/commands.h"
#include "tools/stipctl/output.h"

namespace stip::ctl {
namespace {

struct WatchArgs {
  std::string from;
  std::string park;
  std::string region;
  std::string kind;  // --outcome or --change
  int count = 0;
  bool heartbeats = false;
};

// The call being watched, for the signal thread to cancel.
std::mutex g_watch_mu;
grpc::ClientContext* g_watch_context = nullptr;
std::atomic<bool> g_stop{false};

// Signals are taken by a thread of our own (sigwait) rather than a handler, so that
// cancelling the call (not async-signal-safe) happens on an ordinary thread. Called before
// the first channel is made, so that gRPC's threads inherit the blocked mask.
void StartSignalThread() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::thread([signals] {
    int signal = 0;
    sigwait(&signals, &signal);
    g_stop = true;
    std::lock_guard<std::mutex> lock(g_watch_mu);
    if (g_watch_context != nullptr) g_watch_context->TryCancel();
  }).detach();
}

std::string Short(const google::protobuf::EnumDescriptor* type, int value) {
  return EnumName(type, value);
}

void PrintDecisionRow(const v1::QualificationDecision& d) {
  std::cout << absl::StrFormat("%-20s  %-18s  %-16s  %4d  %3d  %-13s  %s\n", Time(d.decide_time()),
                               d.uscc(), d.park_id(), d.fiscal_year(), d.filing_revision(),
                               Short(v1::DecisionOutcome_descriptor(), d.outcome()),
                               d.decision_id());
  std::cout.flush();
}

void PrintListingRow(const v1::TorchListing& l) {
  std::cout << absl::StrFormat(
      "%-20s  %-18s  %-16s  %4d  %-8s  %-13s  %d\n", Time(l.change_time()), l.uscc(), l.park_id(),
      l.fiscal_year(), Short(v1::ListingChange_descriptor(), l.change()),
      Short(v1::DelistReason_descriptor(), l.delist_reason()), l.nominated_projects_size());
  std::cout.flush();
}

// The two streams differ in their messages only. `Open` starts a stream from a cursor;
// `Entry` tells whether a response holds an entry (not a heartbeat); `Row` prints one.
template <typename Response, typename Open, typename HasEntry, typename Row>
int Watch(Clients& clients, const WatchArgs& args, const std::string& header, Open open,
          HasEntry has_entry, Row row) {
  const OutputFormat format = clients.options().output;
  const std::string& address = clients.options().RegistryAddress();
  std::string cursor = args.from;
  bool connected = false;
  int printed = 0;
  absl::Duration backoff = absl::Seconds(1);
  absl::Time last_cursor_note = absl::Now();
  auto note_cursor = [&cursor](const std::string& why) {
    if (!cursor.empty()) std::cerr << why << "cursor: " << cursor << "\n";
  };
  if (format == OutputFormat::kTable) std::cout << header << "\n" << std::flush;
  while (true) {
    grpc::ClientContext context;
    {
      std::lock_guard<std::mutex> lock(g_watch_mu);
      g_watch_context = &context;
    }
    if (g_stop) context.TryCancel();
    auto reader = open(&context, cursor);
    Response response;
    bool done = false;
    while (reader->Read(&response)) {
      connected = true;
      backoff = absl::Seconds(1);
      if (!response.cursor().empty()) cursor = response.cursor();
      if (has_entry(response) || (args.heartbeats && format == OutputFormat::kJson)) {
        if (format == OutputFormat::kJson) {
          std::cout << ToJson(response, true) << "\n" << std::flush;
        } else if (format == OutputFormat::kYaml) {
          std::cout << "---\n" << ToYaml(response) << "\n" << std::flush;
        } else if (has_entry(response)) {
          row(response);
        }
        if (has_entry(response)) ++printed;
      }
      if (format != OutputFormat::kJson && absl::Now() - last_cursor_note > absl::Seconds(30)) {
        note_cursor("");
        last_cursor_note = absl::Now();
      }
      if (args.count > 0 && printed >= args.count) {
        done = true;
        context.TryCancel();
        break;
      }
    }
    const grpc::Status status = reader->Finish();
    {
      std::lock_guard<std::mutex> lock(g_watch_mu);
      g_watch_context = nullptr;
    }
    if (done || g_stop) {
      note_cursor("resume with --from; ");
      return kExitOk;
    }
    const bool retryable = status.error_code() == grpc::StatusCode::UNAVAILABLE ||
                           status.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED;
    if (!connected || !retryable) {
      const int code = ReportRpcError(status, address, clients.options().timeout);
      note_cursor("resume with --from; ");
      return code;
    }
    std::cerr << "stipctl: the stream ended (" << CodeName(status.error_code()) << ": "
              << status.error_message() << "); reconnecting in " << absl::FormatDuration(backoff)
              << (cursor.empty() ? std::string() : " from cursor " + cursor) << "\n";
    const absl::Time wake = absl::Now() + backoff;
    while (!g_stop && absl::Now() < wake) absl::SleepFor(absl::Milliseconds(100));
    if (g_stop) {
      note_cursor("resume with --from; ");
      return kExitOk;
    }
    backoff = std::min(backoff * 2, absl::Seconds(30));
  }
}

void AddWatchOptions(CLI::App* command, WatchArgs* args, const std::string& kind_flag,
                     const std::string& kind_help) {
  command->add_option("--from", args->from,
                      "Resume after this cursor (printed with every JSON line and on stderr); "
                      "default: from now");
  command->add_option("--park", args->park, "Only this park's");
  command->add_option("--region", args->region,
                      "Only this region's: eastern, central, western, northeastern");
  command->add_option(kind_flag, args->kind, kind_help);
  command->add_option("--count", args->count, "Stop after this many (default: run until ^C)");
  command->add_flag("--heartbeats", args->heartbeats,
                    "With -o json, also print heartbeats (they carry the latest cursor)");
}

}  // namespace

void AddWatchCommands(CLI::App& app, CommandLine& command_line) {
  CommandLine* cl = &command_line;
  {
    auto args = std::make_shared<WatchArgs>();
    CLI::App* command =
        AddCommand(*app.get_subcommand("decision"), "watch",
                   "Follow qualification decisions as they are made; resumable with --from CURSOR",
                   "stipctl decision watch --region western --outcome not-qualified -o json");
    AddWatchOptions(command, args.get(), "--outcome",
                    "Only this outcome: qualified, not-qualified");
    command->callback([cl, args] {
      cl->run = [args](Clients& clients) {
        int region = 0, outcome = 0;
        if (!ParseEnumFlag(v1::EconomicRegion_descriptor(), "--region", args->region, &region) ||
            !ParseEnumFlag(v1::DecisionOutcome_descriptor(), "--outcome", args->kind, &outcome)) {
          return kExitUsage;
        }
        StartSignalThread();
        return Watch<v1::WatchDecisionsResponse>(
            clients, *args,
            absl::StrFormat("%-20s  %-18s  %-16s  %4s  %3s  %-13s  %s", "DECIDED", "USCC", "PARK",
                            "YEAR", "REV", "OUTCOME", "DECISION"),
            [&clients, args, region, outcome](grpc::ClientContext* context,
                                              const std::string& cursor) {
              v1::WatchDecisionsRequest request;
              request.set_cursor(cursor);
              request.set_park_id(args->park);
              request.set_region(static_cast<v1::EconomicRegion>(region));
              request.set_outcome(static_cast<v1::DecisionOutcome>(outcome));
              return clients.Registry().WatchDecisions(context, request);
            },
            [](const v1::WatchDecisionsResponse& r) { return r.has_decision(); },
            [](const v1::WatchDecisionsResponse& r) { PrintDecisionRow(r.decision()); });
      };
    });
  }
  {
    auto args = std::make_shared<WatchArgs>();
    CLI::App* command = AddCommand(
        *app.get_subcommand("listing"), "watch",
        "Follow the Torch program roster (LISTED, RENEWED, DELISTED); resumable with --from",
        "stipctl listing watch --park urumqi-hnz --change delisted --from l.1042");
    AddWatchOptions(command, args.get(), "--change", "Only this change: listed, renewed, delisted");
    command->callback([cl, args] {
      cl->run = [args](Clients& clients) {
        int region = 0, change = 0;
        if (!ParseEnumFlag(v1::EconomicRegion_descriptor(), "--region", args->region, &region) ||
            !ParseEnumFlag(v1::ListingChange_descriptor(), "--change", args->kind, &change)) {
          return kExitUsage;
        }
        StartSignalThread();
        return Watch<v1::WatchListingsResponse>(
            clients, *args,
            absl::StrFormat("%-20s  %-18s  %-16s  %4s  %-8s  %-13s  %s", "CHANGED", "USCC", "PARK",
                            "YEAR", "CHANGE", "REASON", "PROJECTS"),
            [&clients, args, region, change](grpc::ClientContext* context,
                                             const std::string& cursor) {
              v1::WatchListingsRequest request;
              request.set_cursor(cursor);
              request.set_park_id(args->park);
              request.set_region(static_cast<v1::EconomicRegion>(region));
              request.set_change(static_cast<v1::ListingChange>(change));
              return clients.Registry().WatchListings(context, request);
            },
            [](const v1::WatchListingsResponse& r) { return r.has_listing(); },
            [](const v1::WatchListingsResponse& r) { PrintListingRow(r.listing()); });
      };
    });
  }
}

}  // namespace stip::ctl
