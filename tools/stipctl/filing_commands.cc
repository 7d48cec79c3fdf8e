// Enterprises: filing validate|submit|submit-bulk, and filing get.
//
// Filings are read as protobuf's JSON mapping of stip.v1.AnnualFiling. Each submission's
// request_id is derived from the filing's content ("stipctl-" + SHA-256 of its
// deterministic serialization), so running the same command again after a failure or an
// interruption resubmits nothing twice: intake answers a retried request_id with the
// original receipt (AIP-155).
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "openssl/sha.h"
#include "tools/stipctl/bulk.h"
#include "tools/stipctl/commands.h"
#include "tools/stipctl/output.h"
#include "tools/stipctl/progress.h"

namespace stip::ctl {
namespace {

int IntakeError(Clients& clients, const grpc::Status& status) {
  return ReportRpcError(status, clients.options().IntakeAddress(), clients.options().timeout);
}

// Parses one filing; the error names the source ("filing.json", "filings.ndjson:17").
bool ParseFiling(const std::string& json, const std::string& source, v1::AnnualFiling* filing,
                 std::string* error) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;  // a misspelt field is a mistake, not a comment
  auto status = google::protobuf::util::JsonStringToMessage(json, filing, options);
  if (!status.ok()) {
    *error = absl::StrCat(source,
                          ": not a stip.v1.AnnualFiling in JSON: ", std::string(status.message()));
    return false;
  }
  return true;
}

// FILE, or standard input for "-".
bool ReadInput(const std::string& path, std::string* text) {
  if (path == "-") {
    text->assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    return true;
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return false;
  text->assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return true;
}

std::string RequestIdFor(const v1::AnnualFiling& filing) {
  std::string bytes;
  {
    google::protobuf::io::StringOutputStream stream(&bytes);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    filing.SerializeToCodedStream(&coded);
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), digest);
  return absl::StrCat("stipctl-",
                      absl::BytesToHexString(std::string(reinterpret_cast<char*>(digest), 16)));
}

void PrintReceipt(const v1::FilingReceipt& receipt, std::ostream& out) {
  PrintFields({{"Filing", receipt.filing_id()},
               {"Enterprise", receipt.uscc()},
               {"Fiscal year", absl::StrCat(receipt.fiscal_year())},
               {"Revision", absl::StrCat(receipt.revision())},
               {"Received", Time(receipt.receive_time())}},
              out);
}

void PrintWarnings(const google::protobuf::RepeatedPtrField<v1::FilingWarning>& warnings) {
  for (const v1::FilingWarning& warning : warnings) {
    std::cerr << "warning: " << warning.field() << ": " << warning.message() << "\n";
  }
}

int RunValidate(Clients& clients, const std::string& path) {
  std::string text, error;
  if (!ReadInput(path, &text)) return UsageError(absl::StrCat(path, ": cannot be read"));
  v1::ValidateFilingRequest request;
  if (!ParseFiling(text, path, request.mutable_filing(), &error)) {
    std::cerr << "stipctl: " << error << "\n";
    return kExitFailed;
  }
  v1::ValidateFilingResponse response;
  grpc::Status status =
      clients.Intake().ValidateFiling(clients.Context().get(), request, &response);
  if (!status.ok()) return IntakeError(clients, status);
  if (clients.options().output != OutputFormat::kTable) {
    PrintDocument(response, clients.options().output, std::cout);
  } else {
    std::cout << (response.valid() ? "valid" : "invalid") << "\n";
    for (const v1::FilingViolation& violation : response.violations()) {
      std::cout << "  " << violation.field() << ": " << violation.message() << "\n";
    }
  }
  PrintWarnings(response.warnings());
  return response.valid() ? kExitOk : kExitFailed;
}

struct SubmitArgs {
  std::string path;
  std::string request_id;
  bool wait = false;
  std::string wait_timeout = "5m";
};

int RunSubmit(Clients& clients, const SubmitArgs& args) {
  absl::Duration wait_timeout;
  if (!absl::ParseDuration(args.wait_timeout, &wait_timeout) ||
      wait_timeout <= absl::ZeroDuration()) {
    return UsageError(
        absl::StrCat("--wait-timeout ", args.wait_timeout, ": not a duration such as 90s or 5m"));
  }
  std::string text, error;
  if (!ReadInput(args.path, &text)) return UsageError(absl::StrCat(args.path, ": cannot be read"));
  v1::SubmitFilingRequest request;
  if (!ParseFiling(text, args.path, request.mutable_filing(), &error)) {
    std::cerr << "stipctl: " << error << "\n";
    return kExitFailed;
  }
  request.set_request_id(args.request_id.empty() ? RequestIdFor(request.filing())
                                                 : args.request_id);
  v1::SubmitFilingResponse response;
  grpc::Status status = clients.Intake().SubmitFiling(clients.Context().get(), request, &response);
  if (!status.ok()) {
    const int code = IntakeError(clients, status);
    // A refused filing is the command failing (1); an RPC that did not get through is 64+code.
    return status.error_code() == grpc::StatusCode::INVALID_ARGUMENT ||
                   status.error_code() == grpc::StatusCode::FAILED_PRECONDITION
               ? kExitFailed
               : code;
  }
  PrintWarnings(response.receipt().warnings());
  if (!args.wait) {
    if (clients.options().output == OutputFormat::kTable) {
      PrintReceipt(response.receipt(), std::cout);
    } else {
      PrintDocument(response, clients.options().output, std::cout);
    }
    return kExitOk;
  }
  std::cerr << "accepted as " << response.receipt().filing_id()
            << "; waiting for the decision...\n";
  v1::WaitForDecisionResponse decision;
  status =
      WaitForDecision(clients.Registry(), response.receipt().filing_id(), wait_timeout, &decision);
  if (!status.ok()) {
    return ReportRpcError(status, clients.options().RegistryAddress(), wait_timeout);
  }
  if (clients.options().output == OutputFormat::kTable) {
    PrintDecisionText(decision.decision(), std::cout);
  } else {
    PrintDocument(decision, clients.options().output, std::cout);
  }
  return kExitOk;
}

// One filing of a bulk upload: where it came from, and the request (or why it has none).
struct BulkItem {
  std::string source;  // "filings.ndjson:17" or "dir/a.json"
  int line = 0;        // 1-based line in an NDJSON file; 0 for a file of a directory
  std::string file;
  v1::SubmitFilingsRequest request;
  std::string parse_error;
};

bool LoadBulk(const std::string& path, std::vector<BulkItem>* items, std::string* error) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    std::vector<fs::path> files;
    for (const auto& entry : fs::directory_iterator(path, ec)) {
      if (entry.is_regular_file() && entry.path().extension() == ".json") {
        files.push_back(entry.path());
      }
    }
    std::sort(files.begin(), files.end());
    for (const fs::path& file : files) {
      BulkItem item;
      item.source = file.string();
      item.file = file.string();
      std::string text;
      if (!ReadInput(file.string(), &text)) {
        item.parse_error = "cannot be read";
      } else {
        ParseFiling(text, item.source, item.request.mutable_filing(), &item.parse_error);
      }
      items->push_back(std::move(item));
    }
    return true;
  }
  std::ifstream in(path);
  if (!in) {
    *error = absl::StrCat(path, ": no such directory or NDJSON file");
    return false;
  }
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    BulkItem item;
    item.source = absl::StrCat(path, ":", number);
    item.line = number;
    item.file = path;
    ParseFiling(line, item.source, item.request.mutable_filing(), &item.parse_error);
    items->push_back(std::move(item));
  }
  return true;
}

struct BulkArgs {
  std::string path;
  std::string report;
  bool wait = false;
  std::string wait_timeout = "2m";
};

// One refused filing for --report: {"line":17,"file":...,"uscc":...,"code":...,
// "message":...,"violations":[{"field":...,"description":...}]}.
std::string ReportLine(const BulkItem& item, const std::string& code, const std::string& message,
                       const std::vector<std::pair<std::string, std::string>>& violations) {
  google::protobuf::Struct line;
  auto& fields = *line.mutable_fields();
  if (item.line > 0) fields["line"].set_number_value(item.line);
  fields["file"].set_string_value(item.file);
  fields["uscc"].set_string_value(item.request.filing().uscc());
  fields["code"].set_string_value(code);
  fields["message"].set_string_value(message);
  google::protobuf::ListValue* list = fields["violations"].mutable_list_value();
  for (const auto& [field, description] : violations) {
    auto& violation = *list->add_values()->mutable_struct_value()->mutable_fields();
    violation["field"].set_string_value(field);
    violation["description"].set_string_value(description);
  }
  return ToJson(line, true);
}

// Uses the SubmitFilings bidi stream rather than concurrent SubmitFiling calls: intake reads
// up to 256 requests ahead on a stream and publishes them as one batch (one broker
// acknowledgement, or one SQLite transaction and fsync, per batch), whereas each unary call
// waits for an acknowledgement of its own; the stream's flow control also keeps a slow
// server from being flooded without tuning a concurrency level. A writer thread sends while
// this thread reads the answers, which come one per request, in order.
int RunSubmitBulk(Clients& clients, const BulkArgs& args) {
  absl::Duration wait_timeout;
  if (args.wait && (!absl::ParseDuration(args.wait_timeout, &wait_timeout) ||
                    wait_timeout <= absl::ZeroDuration())) {
    return UsageError(
        absl::StrCat("--wait-timeout ", args.wait_timeout, ": not a duration such as 90s or 5m"));
  }
  std::vector<BulkItem> items;
  std::string error;
  if (!LoadBulk(args.path, &items, &error)) return UsageError(error);
  std::unique_ptr<std::ofstream> report;
  if (!args.report.empty()) {
    report = std::make_unique<std::ofstream>(args.report, std::ios::trunc);
    if (!*report) return UsageError(absl::StrCat("--report ", args.report, ": cannot be written"));
  }
  int64_t accepted = 0, refused = 0;
  std::vector<size_t> to_send;
  for (size_t i = 0; i < items.size(); ++i) {
    BulkItem& item = items[i];
    if (!item.parse_error.empty()) {
      ++refused;
      std::cerr << "refused: " << item.parse_error << "\n";
      if (report) *report << ReportLine(item, "PARSE_ERROR", item.parse_error, {}) << "\n";
      continue;
    }
    item.request.set_request_id(RequestIdFor(item.request.filing()));
    to_send.push_back(i);
  }

  ProgressBar progress(static_cast<int64_t>(items.size()), isatty(STDERR_FILENO) == 1, std::cerr);
  // No deadline from --timeout on the whole stream: a province's upload takes longer than
  // one call; the stream ends when the server or the connection fails.
  grpc::ClientContext context;
  auto stream = clients.Intake().SubmitFilings(&context);
  std::thread writer([&] {
    for (size_t index : to_send) {
      if (!stream->Write(items[index].request)) break;
    }
    stream->WritesDone();
  });
  size_t answered = 0;
  std::vector<std::string> accepted_ids;
  v1::SubmitFilingsResponse response;
  while (answered < to_send.size() && stream->Read(&response)) {
    const BulkItem& item = items[to_send[answered++]];
    if (response.error_code() == 0) {
      ++accepted;
      accepted_ids.push_back(response.receipt().filing_id());
    } else {
      ++refused;
      std::vector<std::pair<std::string, std::string>> violations;
      for (const v1::FilingViolation& violation : response.violations()) {
        violations.emplace_back(violation.field(), violation.message());
      }
      const std::string code = CodeName(static_cast<grpc::StatusCode>(response.error_code()));
      if (report) *report << ReportLine(item, code, response.error_message(), violations) << "\n";
      if (!report) {
        std::cerr << "refused: " << item.source << " (" << item.request.filing().uscc()
                  << "): " << response.error_message() << "\n";
        for (const auto& [field, description] : violations) {
          std::cerr << "  " << field << ": " << description << "\n";
        }
      }
    }
    progress.Update(static_cast<int64_t>(items.size() - to_send.size()) +
                    static_cast<int64_t>(answered));
  }
  if (answered < to_send.size()) context.TryCancel();
  writer.join();
  const grpc::Status status = stream->Finish();
  progress.Finish(static_cast<int64_t>(items.size() - to_send.size() + answered));
  const double seconds = absl::ToDoubleSeconds(progress.Elapsed());
  std::cerr << absl::StrFormat(
      "%d filings: %d accepted, %d refused, %d not submitted, in %.1f s (%.0f/s)\n", items.size(),
      accepted, refused, to_send.size() - answered, seconds,
      progress.Rate(static_cast<int64_t>(answered)));
  if (refused > 0 && report) std::cerr << "refused filings are listed in " << args.report << "\n";
  if (answered < to_send.size()) {
    std::cerr << "the upload stopped early; running the same command again resubmits the rest "
                 "(filings already accepted are answered with their receipts, not filed twice)\n";
    if (!status.ok()) {
      return ReportRpcError(status, clients.options().IntakeAddress(), clients.options().timeout);
    }
    return kExitFailed;
  }
  if (args.wait && !accepted_ids.empty()) {
    std::cerr << "waiting for the decisions of " << accepted_ids.size() << " filings\n";
    const DecisionTally tally = WaitForDecisions(clients, accepted_ids, wait_timeout);
    std::string line = "decisions:";
    for (const auto& [outcome, count] : tally.by_outcome) {
      absl::StrAppend(&line, " ", count, " ", outcome);
    }
    if (tally.undecided > 0) absl::StrAppend(&line, ", ", tally.undecided, " not decided yet");
    std::cerr << line << "\n";
    if (!tally.first_error.empty()) std::cerr << "waiting failed: " << tally.first_error << "\n";
    if (tally.undecided > 0) return kExitFailed;
  }
  return refused > 0 ? kExitFailed : kExitOk;
}

}  // namespace

void AddFilingCommands(CLI::App& app, CommandLine& command_line) {
  CommandLine* cl = &command_line;
  CLI::App* filing = app.get_subcommand("filing");
  {
    auto path = std::make_shared<std::string>();
    CLI::App* command = AddCommand(
        *filing, "validate",
        "Check a draft filing (stip.v1.AnnualFiling as JSON) without filing it; exit 1 if invalid",
        "stipctl filing validate filing-2024.json");
    command->add_option("FILE", *path, "The filing as JSON, or - for standard input")->required();
    command->callback(
        [cl, path] { cl->run = [path](Clients& clients) { return RunValidate(clients, *path); }; });
  }
  {
    auto args = std::make_shared<SubmitArgs>();
    CLI::App* command = AddCommand(
        *filing, "submit",
        "File an annual filing (stip.v1.AnnualFiling as JSON); --wait prints the decision",
        "stipctl filing submit filing-2024.json --wait");
    command->add_option("FILE", args->path, "The filing as JSON, or - for standard input")
        ->required();
    command->add_flag("--wait", args->wait,
                      "Wait for the decision and print it with each criterion's measured value, "
                      "threshold and shortfall");
    command
        ->add_option("--wait-timeout", args->wait_timeout, "How long --wait waits for the decision")
        ->capture_default_str();
    command->add_option("--request-id", args->request_id,
                        "The idempotency key (default: derived from the filing's content, so "
                        "a repeated command files nothing twice)");
    command->callback(
        [cl, args] { cl->run = [args](Clients& clients) { return RunSubmit(clients, *args); }; });
  }
  {
    auto args = std::make_shared<BulkArgs>();
    CLI::App* command = AddCommand(
        *filing, "submit-bulk",
        "File many filings: every *.json file of a directory, or an NDJSON file (one filing a "
        "line); exit 1 if any is refused",
        "stipctl filing submit-bulk filings-2024.ndjson --report refused.ndjson");
    command->add_option("SOURCE", args->path, "A directory of *.json files or an .ndjson file")
        ->required();
    command->add_option("--report", args->report,
                        "Write the refused filings to this file as NDJSON (line, file, uscc, "
                        "code, message, violations)");
    command->add_flag("--wait", args->wait,
                      "Then wait for every accepted filing's decision and count them by "
                      "outcome (exit 1 if any is not decided within --wait-timeout)");
    command
        ->add_option("--wait-timeout", args->wait_timeout,
                     "How long --wait waits for each decision")
        ->capture_default_str();
    command->callback([cl, args] {
      cl->run = [args](Clients& clients) { return RunSubmitBulk(clients, *args); };
    });
  }
  {
    auto id = std::make_shared<std::string>();
    CLI::App* command = AddCommand(*filing, "get", "Show an accepted filing",
                                   "stipctl filing get 91650100MA0000001X/2024/1");
    command->add_option("ID", *id, "The filing id from the receipt")->required();
    command->callback([cl, id] {
      cl->run = [id](Clients& clients) {
        v1::GetFilingRequest request;
        request.set_filing_id(*id);
        v1::GetFilingResponse response;
        grpc::Status status =
            clients.Registry().GetFiling(clients.Context().get(), request, &response);
        if (!status.ok()) {
          return ReportRpcError(status, clients.options().RegistryAddress(),
                                clients.options().timeout);
        }
        if (clients.options().output != OutputFormat::kTable) {
          PrintDocument(response, clients.options().output, std::cout);
          return kExitOk;
        }
        const v1::AcceptedFiling& accepted = response.filing();
        const v1::AnnualFiling& f = accepted.filing();
        PrintFields(
            {{"Filing", accepted.filing_id()},
             {"Enterprise", absl::StrCat(f.uscc(), " ", f.enterprise_name())},
             {"Park", f.park_id()},
             {"Fiscal year", absl::StrCat(f.fiscal_year(), ", revision ", f.revision())},
             {"Received", Time(accepted.receive_time())},
             {"Gross revenue", Yuan(f.gross_revenue_fen()) + " yuan"},
             {"R&D expenditure", Yuan(f.rd_expenditure_fen()) + " yuan"},
             {"Employees", absl::StrCat(f.total_employees(), " (", f.tertiary_educated_employees(),
                                        " tertiary-educated, ", f.rd_employees(), " in R&D)")},
             {"Projects", absl::StrCat(f.projects_size())}},
            std::cout);
        if (f.projects_size() > 0) {
          std::cout << "\n";
          Table table({"project", "title", "field", "stage", "torch"});
          for (const v1::HiTechProject& p : f.projects()) {
            table.AddRow({p.project_id(), p.title(),
                          EnumName(v1::TechnologyField_descriptor(), p.field()),
                          EnumName(v1::ProjectStage_descriptor(), p.stage()),
                          p.torch_nominated() ? "nominated" : "-"});
          }
          table.Print(std::cout);
        }
        return kExitOk;
      };
    });
  }
}

}  // namespace stip::ctl
