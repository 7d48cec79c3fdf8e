// Park offices (enterprise enroll|get|list|history), regulators' queries (decision get,
// park list|stats, region stats, window close), policies (policy list|show) and health.
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <future>
#include <iostream>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/support/byte_buffer.h"
#include "tools/stipctl/bulk.h"
#include "tools/stipctl/commands.h"
#include "tools/stipctl/output.h"
#include "tools/stipctl/progress.h"

namespace stip::ctl {
namespace {

int RegistryError(Clients& clients, const grpc::Status& status) {
  return ReportRpcError(status, clients.options().RegistryAddress(), clients.options().timeout);
}

std::string Region(int region) { return EnumName(v1::EconomicRegion_descriptor(), region); }

void PrintEnterprise(const v1::Enterprise& enterprise, std::ostream& out) {
  std::vector<std::string> filed;
  for (const v1::FiledRevision& revision : enterprise.latest_revisions()) {
    filed.push_back(absl::StrCat(revision.fiscal_year(), " rev ", revision.revision(), " (",
                                 revision.filing_id(), ")"));
  }
  PrintFields(
      {{"USCC", enterprise.uscc()},
       {"Name", OrDash(enterprise.name())},
       {"Park", absl::StrCat(enterprise.park_id(), " (", Region(enterprise.region()), ")")},
       {"Foreign-invested", enterprise.foreign_invested() ? "yes" : "no"},
       {"Enrolled", Time(enterprise.enroll_time())},
       {"Status", EnumName(v1::EnterpriseStatus_descriptor(), enterprise.status())},
       {"Torch roster", EnumName(v1::RosterStatus_descriptor(), enterprise.roster_status())},
       {"Filed", filed.empty() ? "-" : absl::StrJoin(filed, "; ")}},
      out);
}

void AddEnterpriseRow(Table& table, const v1::Enterprise& enterprise) {
  table.AddRow({enterprise.uscc(), OrDash(enterprise.name()), enterprise.park_id(),
                Region(enterprise.region()), enterprise.foreign_invested() ? "yes" : "no",
                EnumName(v1::EnterpriseStatus_descriptor(), enterprise.status()),
                EnumName(v1::RosterStatus_descriptor(), enterprise.roster_status())});
}

Table ListingTable() {
  return Table({"changed", "uscc", "park", "year", "change", "reason", "nominated projects"});
}

void AddListingRow(Table& table, const v1::TorchListing& listing) {
  table.AddRow({Time(listing.change_time()), listing.uscc(), listing.park_id(),
                absl::StrCat(listing.fiscal_year()),
                EnumName(v1::ListingChange_descriptor(), listing.change()),
                EnumName(v1::DelistReason_descriptor(), listing.delist_reason()),
                absl::StrCat(listing.nominated_projects_size())});
}

std::string MetricName(v1::Metric metric) {
  switch (metric) {
    case v1::METRIC_RD_INTENSITY:
      return "R&D expenditure / revenue";
    case v1::METRIC_TERTIARY_SHARE:
      return "tertiary-educated staff";
    case v1::METRIC_RD_STAFF_SHARE:
      return "R&D staff";
    default:
      return EnumName(v1::Metric_descriptor(), metric);
  }
}

std::string ComparisonSign(v1::Comparison comparison) {
  return comparison == v1::COMPARISON_GREATER ? ">" : ">=";
}

void PrintPolicy(const v1::Policy& policy, std::ostream& out) {
  PrintFields({{"Policy", absl::StrCat(policy.policy_id(), " v", policy.version())},
               {"Description", OrDash(policy.description())},
               {"Fiscal years",
                absl::StrCat(policy.first_fiscal_year(), " - ",
                             policy.has_last_fiscal_year() ? absl::StrCat(policy.last_fiscal_year())
                                                           : std::string("open"))},
               {"Source", OrDash(policy.source_file())}},
              out);
  Table table({"region", "criterion", "threshold", "revenue bands"});
  auto add = [&table](const std::string& region, const v1::Criterion& criterion) {
    std::vector<std::string> bands;
    for (const v1::RevenueBand& band : criterion.revenue_bands()) {
      bands.push_back(absl::StrCat("up to ", Yuan(band.revenue_up_to_fen()),
                                   " yuan: ", Percent(band.threshold_basis_points())));
    }
    table.AddRow({region, MetricName(criterion.metric()),
                  absl::StrCat(ComparisonSign(criterion.comparison()), " ",
                               Percent(criterion.threshold_basis_points())),
                  bands.empty() ? "-" : absl::StrJoin(bands, "; ")});
  };
  for (const v1::Criterion& criterion : policy.criteria()) add("all", criterion);
  for (const v1::RegionOverride& override_ : policy.region_overrides()) {
    for (const v1::Criterion& criterion : override_.criteria()) {
      add(Region(override_.region()), criterion);
    }
  }
  out << "\n";
  table.Print(out);
}

// grpc.health.v1.Health/Check through the generic stub: gRPC 1.51 ships no generated client
// for the health service, and its two messages are one field each, encoded by hand here.
// Returns "SERVING", "NOT_SERVING", "UNKNOWN" (service not served at that address) or
// "UNREACHABLE".
std::string HealthCheck(const std::shared_ptr<grpc::Channel>& channel, const std::string& service,
                        absl::Duration timeout, std::string* detail) {
  std::string request;
  request.push_back(0x0a);  // field 1, length-delimited; service names are < 128 bytes
  request.push_back(static_cast<char>(service.size()));
  request += service;
  grpc::GenericStub stub(channel);
  std::unique_ptr<grpc::ClientContext> context = Clients::ContextFor(timeout);
  grpc::Slice slice(request);
  grpc::ByteBuffer request_buffer(&slice, 1);
  grpc::ByteBuffer response_buffer;
  std::promise<grpc::Status> done;
  stub.UnaryCall(context.get(), "/grpc.health.v1.Health/Check", grpc::StubOptions(),
                 &request_buffer, &response_buffer,
                 [&done](grpc::Status status) { done.set_value(std::move(status)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) {
    *detail = status.error_message();
    if (status.error_code() == grpc::StatusCode::NOT_FOUND) {
      *detail = "not served at this address";
      return "UNKNOWN";
    }
    return status.error_code() == grpc::StatusCode::UNAVAILABLE ? "UNREACHABLE"
                                                                : CodeName(status.error_code());
  }
  std::vector<grpc::Slice> slices;
  (void)response_buffer.Dump(&slices);
  std::string response;
  for (const grpc::Slice& piece : slices) {
    response.append(reinterpret_cast<const char*>(piece.begin()), piece.size());
  }
  google::protobuf::UnknownFieldSet fields;
  int value = 0;  // UNKNOWN, the default, is not on the wire
  if (fields.ParseFromString(response)) {
    for (int i = 0; i < fields.field_count(); ++i) {
      if (fields.field(i).number() == 1) value = static_cast<int>(fields.field(i).varint());
    }
  }
  switch (value) {
    case 1:
      return "SERVING";
    case 2:
      return "NOT_SERVING";
    default:
      return "UNKNOWN";
  }
}

int RunHealth(Clients& clients) {
  const GlobalOptions& options = clients.options();
  const std::vector<std::pair<std::string, std::string>> services = {
      {"stip.v1.IntakeService", options.IntakeAddress()},
      {"stip.v1.AssessmentService", options.AssessmentAddress()},
      {"stip.v1.RegistryService", options.RegistryAddress()}};
  Table table({"service", "address", "status", "detail"});
  google::protobuf::Struct document;
  google::protobuf::ListValue* list = (*document.mutable_fields())["services"].mutable_list_value();
  bool all_serving = true;
  for (const auto& [service, address] : services) {
    std::string detail;
    const std::string status =
        HealthCheck(clients.ChannelTo(address), service, options.timeout, &detail);
    if (status != "SERVING") all_serving = false;
    table.AddRow({service, address, status, OrDash(detail)});
    google::protobuf::Struct* entry = list->add_values()->mutable_struct_value();
    (*entry->mutable_fields())["service"].set_string_value(service);
    (*entry->mutable_fields())["address"].set_string_value(address);
    (*entry->mutable_fields())["status"].set_string_value(status);
    if (!detail.empty()) (*entry->mutable_fields())["detail"].set_string_value(detail);
  }
  if (options.output == OutputFormat::kTable) {
    table.Print(std::cout);
  } else {
    PrintDocument(document, options.output, std::cout);
  }
  if (!all_serving) std::cerr << "stipctl: not every service is serving\n";
  return all_serving ? kExitOk : kExitFailed;
}

// enterprise enroll-bulk: one stip.v1.EnrollEnterpriseRequest (JSON) per line, 16 calls at a
// time. Enrolling is idempotent, so a repeated command changes nothing.
int RunEnrollBulk(Clients& clients, const std::string& path) {
  std::ifstream file(path);
  if (!file) return UsageError(absl::StrCat(path, ": cannot be read"));
  std::vector<v1::EnrollEnterpriseRequest> requests;
  std::string line;
  int line_number = 0;
  while (std::getline(file, line)) {
    ++line_number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    v1::EnrollEnterpriseRequest request;
    if (const auto parsed = google::protobuf::util::JsonStringToMessage(line, &request);
        !parsed.ok()) {
      return UsageError(absl::StrCat(
          path, ":", line_number,
          ": not a stip.v1.EnrollEnterpriseRequest in JSON: ", std::string(parsed.message())));
    }
    requests.push_back(std::move(request));
  }
  ProgressBar progress(static_cast<int64_t>(requests.size()), isatty(STDERR_FILENO) == 1,
                       std::cerr);
  std::atomic<int64_t> failed{0};
  std::mutex errors_mu;
  std::vector<std::string> errors;
  auto& registry = clients.Registry();  // made once, before the threads share it
  ParallelFor(
      requests.size(), 16,
      [&](size_t i) {
        v1::EnrollEnterpriseResponse response;
        const grpc::Status status =
            registry.EnrollEnterprise(clients.Context().get(), requests[i], &response);
        if (status.ok()) return;
        ++failed;
        std::lock_guard<std::mutex> lock(errors_mu);
        if (errors.size() < 20) {
          errors.push_back(absl::StrCat(requests[i].uscc(), ": ", status.error_message()));
        }
      },
      [&](int64_t finished) { progress.Update(finished); });
  progress.Finish(static_cast<int64_t>(requests.size()));
  for (const std::string& error : errors) std::cerr << "not enrolled: " << error << "\n";
  std::cerr << absl::StrFormat("%d enterprises: %d enrolled, %d failed, in %.1f s\n",
                               requests.size(), requests.size() - failed.load(), failed.load(),
                               absl::ToDoubleSeconds(progress.Elapsed()));
  return failed.load() > 0 ? kExitFailed : kExitOk;
}

}  // namespace

bool ParseEnumFlag(const google::protobuf::EnumDescriptor* type, const std::string& flag,
                   const std::string& text, int* value) {
  if (text.empty()) {
    *value = 0;
    return true;
  }
  std::optional<int> parsed = ParseEnum(type, text);
  if (!parsed.has_value()) {
    UsageError(absl::StrCat(flag, " ", text, ": not one of ", EnumChoices(type)));
    return false;
  }
  *value = *parsed;
  return true;
}

CLI::App* AddCommand(CLI::App& parent, const std::string& name, const std::string& description,
                     const std::string& example) {
  CLI::App* command = parent.add_subcommand(name, description);
  command->footer("Example:\n  " + example);
  return command;
}

void PrintDecisionText(const v1::QualificationDecision& decision, std::ostream& out) {
  PrintFields(
      {{"Decision", decision.decision_id()},
       {"Outcome", EnumName(v1::DecisionOutcome_descriptor(), decision.outcome())},
       {"Enterprise", decision.uscc()},
       {"Park", absl::StrCat(decision.park_id(), " (", Region(decision.region()), ")")},
       {"Fiscal year", absl::StrCat(decision.fiscal_year(), ", filing revision ",
                                    decision.filing_revision(), " (", decision.filing_id(), ")")},
       {"Policy", absl::StrCat(decision.policy_id(), " v", decision.policy_version())},
       {"Decided", Time(decision.decide_time())},
       {"Supersedes", OrDash(decision.supersedes_decision_id())}},
      out);
  Table table({"criterion", "measured", "threshold", "result", "shortfall"});
  for (const v1::CriterionResult& criterion : decision.criteria()) {
    std::string measured = Percent(criterion.measured_basis_points());
    if (criterion.metric() == v1::METRIC_RD_INTENSITY) {
      absl::StrAppend(&measured, " (", Yuan(criterion.measured().numerator()), " of ",
                      Yuan(criterion.measured().denominator()), " yuan)");
    } else {
      absl::StrAppend(&measured, " (", criterion.measured().numerator(), " of ",
                      criterion.measured().denominator(), ")");
    }
    std::string shortfall = "-";
    if (criterion.shortfall().has_rd_expenditure_fen()) {
      shortfall = absl::StrCat(Yuan(criterion.shortfall().rd_expenditure_fen()),
                               " yuan more R&D expenditure");
    } else if (criterion.shortfall().has_employees()) {
      shortfall = absl::StrCat(criterion.shortfall().employees(), " more employees");
    }
    table.AddRow({MetricName(criterion.metric()), measured,
                  absl::StrCat(ComparisonSign(criterion.comparison()), " ",
                               Percent(criterion.threshold_basis_points())),
                  EnumName(v1::CriterionOutcome_descriptor(), criterion.outcome()), shortfall});
  }
  out << "\n";
  table.Print(out);
  if (!decision.explanation().empty()) out << "\n" << decision.explanation() << "\n";
}

void AddRegistryCommands(CLI::App& app, CommandLine& command_line) {
  CommandLine* cl = &command_line;

  // enterprise enroll|get|list|history
  CLI::App* enterprise = app.get_subcommand("enterprise");
  {
    struct Args {
      std::string uscc, name, park;
      bool foreign_invested = false;
    };
    auto args = std::make_shared<Args>();
    CLI::App* command = AddCommand(
        *enterprise, "enroll", "Enroll an enterprise in a park (or move it to another park)",
        "stipctl enterprise enroll 91650100MA0000001X --name \"Xinjiang Solar Co.\" --park "
        "urumqi-hnz");
    command->add_option("USCC", args->uscc, "The 18-character Unified Social Credit Code")
        ->required();
    command->add_option("--name", args->name, "The enterprise's registered name")->required();
    command->add_option("--park", args->park, "The park's id, e.g. urumqi-hnz")->required();
    command->add_flag("--foreign-invested", args->foreign_invested,
                      "The enterprise is foreign-invested");
    command->callback([cl, args] {
      cl->run = [args](Clients& clients) {
        v1::EnrollEnterpriseRequest request;
        request.set_uscc(args->uscc);
        request.set_name(args->name);
        request.set_park_id(args->park);
        request.set_foreign_invested(args->foreign_invested);
        v1::EnrollEnterpriseResponse response;
        grpc::Status status =
            clients.Registry().EnrollEnterprise(clients.Context().get(), request, &response);
        if (!status.ok()) return RegistryError(clients, status);
        if (clients.options().output == OutputFormat::kTable) {
          PrintEnterprise(response.enterprise(), std::cout);
        } else {
          PrintDocument(response, clients.options().output, std::cout);
        }
        std::cerr << "enrolled " << response.enterprise().uscc() << " in "
                  << response.enterprise().park_id() << "\n";
        return kExitOk;
      };
    });
  }
  {
    auto path = std::make_shared<std::string>();
    CLI::App* command = AddCommand(
        *enterprise, "enroll-bulk",
        "Enroll many enterprises: an NDJSON file of stip.v1.EnrollEnterpriseRequest, one a "
        "line (idempotent: running it again changes nothing); exit 1 if any fails",
        "stipctl enterprise enroll-bulk enterprises.ndjson");
    command->add_option("FILE", *path, "The NDJSON file")->required();
    command->callback([cl, path] {
      cl->run = [path](Clients& clients) { return RunEnrollBulk(clients, *path); };
    });
  }
  {
    auto uscc = std::make_shared<std::string>();
    CLI::App* command =
        AddCommand(*enterprise, "get", "Show an enterprise: park, status, roster, filings",
                   "stipctl enterprise get 91650100MA0000001X -o yaml");
    command->add_option("USCC", *uscc, "The enterprise's USCC")->required();
    command->callback([cl, uscc] {
      cl->run = [uscc](Clients& clients) {
        v1::GetEnterpriseRequest request;
        request.set_uscc(*uscc);
        v1::GetEnterpriseResponse response;
        grpc::Status status =
            clients.Registry().GetEnterprise(clients.Context().get(), request, &response);
        if (!status.ok()) return RegistryError(clients, status);
        if (clients.options().output == OutputFormat::kTable) {
          PrintEnterprise(response.enterprise(), std::cout);
        } else {
          PrintDocument(response, clients.options().output, std::cout);
        }
        return kExitOk;
      };
    });
  }
  {
    struct Args {
      std::string park, region, status;
      int year = 0;
      int limit = 0;
    };
    auto args = std::make_shared<Args>();
    CLI::App* command = AddCommand(
        *enterprise, "list", "List enterprises, filtered by park, region, status or filing year",
        "stipctl enterprise list --park urumqi-hnz --status qualified --year 2024");
    command->add_option("--park", args->park, "Only this park's enterprises");
    command->add_option("--region", args->region,
                        "Only this region's: eastern, central, western, northeastern");
    command->add_option("--status", args->status,
                        "Only enterprises in this status: enrolled, qualified, not-qualified");
    command->add_option("--year", args->year, "Only enterprises that filed for this fiscal year");
    command->add_option("--limit", args->limit, "At most this many (default: all)");
    command->callback([cl, args] {
      cl->run = [args](Clients& clients) {
        v1::ListEnterprisesRequest request;
        int region = 0, status_filter = 0;
        if (!ParseEnumFlag(v1::EconomicRegion_descriptor(), "--region", args->region, &region) ||
            !ParseEnumFlag(v1::EnterpriseStatus_descriptor(), "--status", args->status,
                           &status_filter)) {
          return kExitUsage;
        }
        request.set_park_id(args->park);
        request.set_region(static_cast<v1::EconomicRegion>(region));
        request.set_status(static_cast<v1::EnterpriseStatus>(status_filter));
        request.set_fiscal_year(args->year);
        v1::ListEnterprisesResponse all;
        // Every page, unless --limit: the page token continues after the last USCC served.
        while (true) {
          v1::ListEnterprisesResponse page;
          grpc::Status status =
              clients.Registry().ListEnterprises(clients.Context().get(), request, &page);
          if (!status.ok()) return RegistryError(clients, status);
          for (v1::Enterprise& enterprise : *page.mutable_enterprises()) {
            if (args->limit > 0 && all.enterprises_size() >= args->limit) break;
            *all.add_enterprises() = std::move(enterprise);
          }
          if (page.next_page_token().empty() ||
              (args->limit > 0 && all.enterprises_size() >= args->limit)) {
            break;
          }
          request.set_page_token(page.next_page_token());
        }
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(all, clients.options().output, std::cout);
          return kExitOk;
        }
        Table table({"uscc", "name", "park", "region", "foreign", "status", "roster"});
        for (const v1::Enterprise& enterprise : all.enterprises()) {
          AddEnterpriseRow(table, enterprise);
        }
        table.Print(std::cout);
        std::cerr << all.enterprises_size() << " enterprises\n";
        return kExitOk;
      };
    });
  }
  {
    auto uscc = std::make_shared<std::string>();
    CLI::App* command = AddCommand(*enterprise, "history",
                                   "An enterprise's timeline: filings, decisions, roster changes",
                                   "stipctl enterprise history 91650100MA0000001X");
    command->add_option("USCC", *uscc, "The enterprise's USCC")->required();
    command->callback([cl, uscc] {
      cl->run = [uscc](Clients& clients) {
        v1::GetEnterpriseHistoryRequest request;
        request.set_uscc(*uscc);
        v1::GetEnterpriseHistoryResponse all;
        while (true) {
          v1::GetEnterpriseHistoryResponse page;
          grpc::Status status =
              clients.Registry().GetEnterpriseHistory(clients.Context().get(), request, &page);
          if (!status.ok()) return RegistryError(clients, status);
          for (v1::HistoryEntry& entry : *page.mutable_entries()) {
            *all.add_entries() = std::move(entry);
          }
          if (page.next_page_token().empty()) break;
          request.set_page_token(page.next_page_token());
        }
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(all, clients.options().output, std::cout);
          return kExitOk;
        }
        Table table({"time", "event", "year", "detail", "id"});
        for (const v1::HistoryEntry& entry : all.entries()) {
          if (entry.has_filing()) {
            const v1::AnnualFiling& filing = entry.filing().filing();
            table.AddRow({Time(entry.record_time()), "filing", absl::StrCat(filing.fiscal_year()),
                          absl::StrCat("revision ", filing.revision(), ", revenue ",
                                       Yuan(filing.gross_revenue_fen()), " yuan"),
                          entry.filing().filing_id()});
          } else if (entry.has_decision()) {
            const v1::QualificationDecision& decision = entry.decision();
            table.AddRow({Time(entry.record_time()), "decision",
                          absl::StrCat(decision.fiscal_year()),
                          EnumName(v1::DecisionOutcome_descriptor(), decision.outcome()),
                          decision.decision_id()});
          } else if (entry.has_listing()) {
            const v1::TorchListing& listing = entry.listing();
            table.AddRow({Time(entry.record_time()), "listing", absl::StrCat(listing.fiscal_year()),
                          EnumName(v1::ListingChange_descriptor(), listing.change()),
                          listing.event_id()});
          }
        }
        table.Print(std::cout);
        return kExitOk;
      };
    });
  }

  // decision get
  {
    auto id = std::make_shared<std::string>();
    CLI::App* command =
        AddCommand(*app.get_subcommand("decision"), "get",
                   "Show a decision with each criterion's measured value, threshold and shortfall",
                   "stipctl decision get 91650100MA0000001X/2024/1/stip-default/1");
    command->add_option("ID", *id, "The decision id")->required();
    command->callback([cl, id] {
      cl->run = [id](Clients& clients) {
        v1::GetDecisionRequest request;
        request.set_decision_id(*id);
        v1::GetDecisionResponse response;
        grpc::Status status =
            clients.Registry().GetDecision(clients.Context().get(), request, &response);
        if (!status.ok()) return RegistryError(clients, status);
        if (clients.options().output == OutputFormat::kTable) {
          PrintDecisionText(response.decision(), std::cout);
        } else {
          PrintDocument(response, clients.options().output, std::cout);
        }
        return kExitOk;
      };
    });
  }

  // park list|stats
  CLI::App* park = app.get_subcommand("park");
  {
    auto region = std::make_shared<std::string>();
    CLI::App* command = AddCommand(*park, "list", "List the parks, optionally of one region",
                                   "stipctl park list --region western");
    command->add_option("--region", *region,
                        "Only this region's: eastern, central, western, northeastern");
    command->callback([cl, region] {
      cl->run = [region](Clients& clients) {
        v1::ListParksRequest request;
        int region_value = 0;
        if (!ParseEnumFlag(v1::EconomicRegion_descriptor(), "--region", *region, &region_value)) {
          return kExitUsage;
        }
        request.set_region(static_cast<v1::EconomicRegion>(region_value));
        v1::ListParksResponse all;
        while (true) {
          v1::ListParksResponse page;
          grpc::Status status =
              clients.Registry().ListParks(clients.Context().get(), request, &page);
          if (!status.ok()) return RegistryError(clients, status);
          for (v1::Park& p : *page.mutable_parks()) *all.add_parks() = std::move(p);
          if (page.next_page_token().empty()) break;
          request.set_page_token(page.next_page_token());
        }
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(all, clients.options().output, std::cout);
          return kExitOk;
        }
        Table table({"park", "name", "city", "province", "region", "founded"});
        for (const v1::Park& p : all.parks()) {
          table.AddRow({p.park_id(), p.name(), p.city(), p.province(), Region(p.region()),
                        absl::StrCat(p.year_founded())});
        }
        table.Print(std::cout);
        return kExitOk;
      };
    });
  }
  {
    struct Args {
      std::string park;
      int year = 0;
    };
    auto args = std::make_shared<Args>();
    CLI::App* command = AddCommand(*park, "stats", "A park's figures for a fiscal year",
                                   "stipctl park stats urumqi-hnz --year 2024");
    command->add_option("PARK", args->park, "The park's id")->required();
    command->add_option("--year", args->year, "The fiscal year")->required();
    command->callback([cl, args] {
      cl->run = [args](Clients& clients) {
        v1::GetParkStatisticsRequest request;
        request.set_park_id(args->park);
        request.set_fiscal_year(args->year);
        v1::GetParkStatisticsResponse response;
        grpc::Status status =
            clients.Registry().GetParkStatistics(clients.Context().get(), request, &response);
        if (!status.ok()) return RegistryError(clients, status);
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(response, clients.options().output, std::cout);
          return kExitOk;
        }
        const v1::ParkStatistics& s = response.statistics();
        PrintFields({{"Park", s.park_id()},
                     {"Fiscal year", absl::StrCat(s.fiscal_year())},
                     {"Enterprises", absl::StrCat(s.enterprises())},
                     {"Foreign-invested", absl::StrCat(s.foreign_invested_enterprises())},
                     {"Filed", absl::StrCat(s.filed_enterprises())},
                     {"Hi-tech (qualified)", absl::StrCat(s.hi_tech_enterprises())},
                     {"Listed (Torch)", absl::StrCat(s.listed_enterprises())},
                     {"Hi-tech projects", absl::StrCat(s.hi_tech_projects())},
                     {"Commercialized projects", absl::StrCat(s.commercialized_projects())},
                     {"Listed projects", absl::StrCat(s.listed_projects())},
                     {"Output (revenue)", Yuan(s.total_revenue_fen()) + " yuan"},
                     {"R&D expenditure", Yuan(s.total_rd_expenditure_fen()) + " yuan"}},
                    std::cout);
        return kExitOk;
      };
    });
  }

  // region stats
  {
    auto year = std::make_shared<int>(0);
    CLI::App* command =
        AddCommand(*app.get_subcommand("region"), "stats",
                   "Each economic region's parks and share of all parks' output for a year",
                   "stipctl region stats --year 2024");
    command->add_option("--year", *year, "The fiscal year")->required();
    command->callback([cl, year] {
      cl->run = [year](Clients& clients) {
        v1::GetRegionalStatisticsRequest request;
        request.set_fiscal_year(*year);
        v1::GetRegionalStatisticsResponse response;
        grpc::Status status =
            clients.Registry().GetRegionalStatistics(clients.Context().get(), request, &response);
        if (!status.ok()) return RegistryError(clients, status);
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(response, clients.options().output, std::cout);
          return kExitOk;
        }
        Table table({"region", "parks", "park share", "output (yuan)", "output share"});
        for (const v1::RegionStatistics& r : response.regions()) {
          table.AddRow({Region(r.region()), absl::StrCat(r.parks()),
                        Percent(r.park_share_basis_points()), Yuan(r.output_fen()),
                        Percent(r.output_share_basis_points())});
        }
        table.Print(std::cout);
        return kExitOk;
      };
    });
  }

  // window close
  {
    auto year = std::make_shared<int>(0);
    CLI::App* command = AddCommand(
        *app.get_subcommand("window"), "close",
        "Close a fiscal year's filing window: delist every listed enterprise that filed nothing",
        "stipctl window close 2024");
    command->add_option("YEAR", *year, "The fiscal year")->required();
    command->callback([cl, year] {
      cl->run = [year](Clients& clients) {
        v1::CloseFilingWindowRequest request;
        request.set_fiscal_year(*year);
        v1::CloseFilingWindowResponse response;
        grpc::Status status =
            clients.Registry().CloseFilingWindow(clients.Context().get(), request, &response);
        if (!status.ok()) return RegistryError(clients, status);
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(response, clients.options().output, std::cout);
        } else {
          Table table = ListingTable();
          for (const v1::TorchListing& listing : response.delistings()) {
            AddListingRow(table, listing);
          }
          if (!table.empty()) table.Print(std::cout);
        }
        std::cerr << "closed the filing window of " << *year << ": " << response.delistings_size()
                  << " delisted\n";
        return kExitOk;
      };
    });
  }

  // policy list|show
  CLI::App* policy = app.get_subcommand("policy");
  {
    CLI::App* command =
        AddCommand(*policy, "list", "List the qualification policies", "stipctl policy list");
    command->callback([cl] {
      cl->run = [](Clients& clients) {
        const auto fail = [&clients](const grpc::Status& status) {
          return ReportRpcError(status, clients.options().AssessmentAddress(),
                                clients.options().timeout);
        };
        v1::ListPoliciesRequest request;
        v1::ListPoliciesResponse all;
        while (true) {
          v1::ListPoliciesResponse page;
          grpc::Status status =
              clients.Assessment().ListPolicies(clients.Context().get(), request, &page);
          if (!status.ok()) return fail(status);
          for (v1::Policy& p : *page.mutable_policies()) *all.add_policies() = std::move(p);
          if (page.next_page_token().empty()) break;
          request.set_page_token(page.next_page_token());
        }
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(all, clients.options().output, std::cout);
          return kExitOk;
        }
        Table table({"policy", "version", "first year", "last year", "criteria", "description"});
        for (const v1::Policy& p : all.policies()) {
          table.AddRow({p.policy_id(), absl::StrCat(p.version()),
                        absl::StrCat(p.first_fiscal_year()),
                        p.has_last_fiscal_year() ? absl::StrCat(p.last_fiscal_year()) : "-",
                        absl::StrCat(p.criteria_size()), OrDash(p.description())});
        }
        table.Print(std::cout);
        return kExitOk;
      };
    });
  }
  {
    struct Args {
      std::string id;
      int version = 0;
    };
    auto args = std::make_shared<Args>();
    CLI::App* command = AddCommand(*policy, "show", "Show a policy's criteria and thresholds",
                                   "stipctl policy show stip-default --version 1");
    command->add_option("ID", args->id, "The policy id")->required();
    command->add_option("--version", args->version, "The version (default: the newest)");
    command->callback([cl, args] {
      cl->run = [args](Clients& clients) {
        v1::GetPolicyRequest request;
        request.set_policy_id(args->id);
        request.set_version(args->version);
        v1::GetPolicyResponse response;
        grpc::Status status =
            clients.Assessment().GetPolicy(clients.Context().get(), request, &response);
        if (!status.ok()) {
          return ReportRpcError(status, clients.options().AssessmentAddress(),
                                clients.options().timeout);
        }
        if (clients.options().output == OutputFormat::kTable) {
          PrintPolicy(response.policy(), std::cout);
        } else {
          PrintDocument(response, clients.options().output, std::cout);
        }
        return kExitOk;
      };
    });
  }

  // health
  {
    CLI::App* command =
        AddCommand(app, "health",
                   "Ask each service (grpc.health.v1) whether it is serving; exit 1 if any is not",
                   "stipctl health --server 127.0.0.1:50050");
    command->callback([cl] { cl->run = RunHealth; });
  }
}

}  // namespace stip::ctl
