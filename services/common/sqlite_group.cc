// Consumer groups (GroupMember): a member's row in eventlog_members and the eager rebalance
// protocol described at the top of sqlite_event_log.cc, and the process identity that tells
// whether another member's process is still alive.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "services/common/sqlite_db.h"
#include "services/common/sqlite_internal.h"
#include "spdlog/spdlog.h"
#include <sys/types.h>

namespace stip::sqlite {

// --- Process identity, to tell whether another member's process is still alive ----------
namespace {

struct ProcessIdentity {
  // Boot id and pid namespace: pids of two processes are comparable only when these match.
  std::string host;
  int64_t pid = 0;
  int64_t start = 0;  // start time in clock ticks since boot: tells a reused pid apart
};

std::string ReadFirstLine(const std::string& path) {
  std::ifstream file(path);
  std::string line;
  std::getline(file, line);
  return line;
}

// State letter and start time of `pid` from /proc/<pid>/stat; nullopt when it is gone.
std::optional<std::pair<char, int64_t>> ReadProcessStat(int64_t pid) {
  const std::string stat = ReadFirstLine(absl::StrCat("/proc/", pid, "/stat"));
  const size_t comm_end = stat.rfind(')');  // the command may hold spaces and parentheses
  if (comm_end == std::string::npos) return std::nullopt;
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(comm_end + 1), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state) of proc(5), fields[19] field 22 (starttime).
  if (fields.size() < 20 || fields[0].empty()) return std::nullopt;
  return std::make_pair(fields[0][0],
                        static_cast<int64_t>(std::strtoll(fields[19].c_str(), nullptr, 10)));
}

const ProcessIdentity& Self() {
  static const ProcessIdentity* self = [] {
    auto* identity = new ProcessIdentity;
    identity->pid = getpid();
    std::error_code error;
    const std::string boot = ReadFirstLine("/proc/sys/kernel/random/boot_id");
    const auto pid_namespace = std::filesystem::read_symlink("/proc/self/ns/pid", error);
    if (!boot.empty() && !error) identity->host = absl::StrCat(boot, "/", pid_namespace.string());
    if (auto stat = ReadProcessStat(identity->pid)) identity->start = stat->second;
    return identity;
  }();
  return *self;
}

// True only when `pid` on `host` is certainly no longer the process that wrote the row.
bool ProcessGone(std::string_view host, int64_t pid, int64_t start) {
  const ProcessIdentity& self = Self();
  if (self.host.empty() || host != self.host || pid == self.pid) return false;
  const auto stat = ReadProcessStat(pid);
  if (!stat) return kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
  return stat->first == 'Z' || stat->first == 'X' || stat->second != start;
}

}  // namespace

int64_t RandomId() {
  static std::mutex mutex;
  static std::mt19937_64 random(std::random_device{}() ^ static_cast<uint64_t>(getpid()));
  std::lock_guard<std::mutex> lock(mutex);
  return static_cast<int64_t>(random() >> 1);
}

// --- Group membership --------------------------------------------------------------------
absl::StatusOr<std::unique_ptr<GroupMember>> GroupMember::Create(SharedFile& shared, SqliteDb& db,
                                                                 std::string group,
                                                                 std::string member_id,
                                                                 std::vector<std::string> topics) {
  std::sort(topics.begin(), topics.end());
  topics.erase(std::unique(topics.begin(), topics.end()), topics.end());
  std::unique_ptr<GroupMember> member(
      new GroupMember(shared, db, std::move(group), std::move(member_id), std::move(topics)));
  STIP_ASSIGN_OR_RETURN(member->reader_, EventReader::Create(db));
  STIP_ASSIGN_OR_RETURN(
      member->select_members_,
      db.Prepare("SELECT member_id, incarnation, topics, heartbeat_us, host, pid, pid_start, "
                 "acked_generation FROM eventlog_members WHERE group_id = ? ORDER BY member_id"));
  STIP_ASSIGN_OR_RETURN(member->select_self_, db.Prepare("SELECT incarnation FROM eventlog_members "
                                                         "WHERE group_id = ? AND member_id = ?"));
  STIP_ASSIGN_OR_RETURN(
      member->upsert_self_,
      db.Prepare("INSERT OR REPLACE INTO eventlog_members (group_id, member_id, incarnation, "
                 "topics, heartbeat_us, host, pid, pid_start, acked_generation) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?, -1)"));
  STIP_ASSIGN_OR_RETURN(member->heartbeat_,
                        db.Prepare("UPDATE eventlog_members SET heartbeat_us = ? "
                                   "WHERE group_id = ? AND member_id = ?"));
  STIP_ASSIGN_OR_RETURN(member->delete_member_,
                        db.Prepare("DELETE FROM eventlog_members "
                                   "WHERE group_id = ? AND member_id = ? AND incarnation = ?"));
  STIP_ASSIGN_OR_RETURN(
      member->bump_generation_,
      db.Prepare("INSERT INTO eventlog_groups (group_id, generation) VALUES (?, 1) "
                 "ON CONFLICT (group_id) DO UPDATE SET generation = generation + 1"));
  STIP_ASSIGN_OR_RETURN(member->select_generation_,
                        db.Prepare("SELECT generation FROM eventlog_groups WHERE group_id = ?"));
  STIP_ASSIGN_OR_RETURN(member->ack_,
                        db.Prepare("UPDATE eventlog_members SET acked_generation = ? "
                                   "WHERE group_id = ? AND member_id = ? AND incarnation = ?"));
  STIP_ASSIGN_OR_RETURN(member->select_partitions_,
                        db.Prepare("SELECT partitions FROM eventlog_topics WHERE name = ?"));
  return member;
}

absl::StatusOr<std::vector<GroupMember::Member>> GroupMember::ReadMembers() {
  std::vector<Member> members;
  SqliteResetter reset(select_members_);
  select_members_.BindText(1, group_);
  while (true) {
    STIP_ASSIGN_OR_RETURN(bool row, select_members_.Step());
    if (!row) break;
    Member& member = members.emplace_back();
    member.id = std::string(select_members_.ColumnText(0));
    member.incarnation = select_members_.ColumnInt64(1);
    const std::string topics(select_members_.ColumnText(2));
    for (absl::string_view topic : absl::StrSplit(topics, '\n', absl::SkipEmpty())) {
      member.topics.emplace(topic);
    }
    member.heartbeat_us = select_members_.ColumnInt64(3);
    member.host = std::string(select_members_.ColumnText(4));
    member.pid = select_members_.ColumnInt64(5);
    member.pid_start = select_members_.ColumnInt64(6);
    member.acked_generation = select_members_.ColumnInt64(7);
  }
  return members;
}

bool GroupMember::Dead(const Member& member, int64_t now_us) const {
  if (member.id == member_id_) return false;
  return member.heartbeat_us < now_us - absl::ToInt64Microseconds(kSessionTimeout) ||
         ProcessGone(member.host, member.pid, member.pid_start);
}

absl::Status GroupMember::BumpGeneration() {
  bump_generation_.BindText(1, group_);
  return bump_generation_.Run();
}

absl::Status GroupMember::WriteMembership(bool join, absl::Duration lock_wait) {
  WriteTransaction transaction(shared_, db_);
  STIP_RETURN_IF_ERROR(transaction.Begin(lock_wait));
  const absl::Time now = absl::Now();
  const int64_t now_us = absl::ToUnixMicros(now);
  bool changed = join;
  if (!join) {
    std::optional<int64_t> incarnation;
    {
      SqliteResetter reset(select_self_);
      select_self_.BindText(1, group_);
      select_self_.BindText(2, member_id_);
      STIP_ASSIGN_OR_RETURN(bool row, select_self_.Step());
      if (row) incarnation = select_self_.ColumnInt64(0);
    }
    if (incarnation && *incarnation != incarnation_) return Fenced();
    if (!incarnation) {
      // Removed by the others (missed heartbeats): join again, as a new member would.
      spdlog::warn("member '{}' of group '{}' ({}) was removed from the group; rejoining",
                   member_id_, group_, shared_.path());
      generation_ = -1;
      changed = true;
    } else {
      heartbeat_.BindInt64(1, now_us);
      heartbeat_.BindText(2, group_);
      heartbeat_.BindText(3, member_id_);
      STIP_RETURN_IF_ERROR(heartbeat_.Run());
    }
  }
  if (changed) {
    const ProcessIdentity& self = Self();
    const std::string topics = absl::StrJoin(topics_, "\n");
    upsert_self_.BindText(1, group_);
    upsert_self_.BindText(2, member_id_);
    upsert_self_.BindInt64(3, incarnation_);
    upsert_self_.BindText(4, topics);
    upsert_self_.BindInt64(5, now_us);
    upsert_self_.BindText(6, self.host);
    upsert_self_.BindInt64(7, self.pid);
    upsert_self_.BindInt64(8, self.start);
    STIP_RETURN_IF_ERROR(upsert_self_.Run());
  }
  STIP_ASSIGN_OR_RETURN(std::vector<Member> members, ReadMembers());
  for (const Member& member : members) {
    if (!Dead(member, now_us)) continue;
    spdlog::info("removing member '{}' from group '{}' ({}): {}", member.id, group_, shared_.path(),
                 member.heartbeat_us < now_us - absl::ToInt64Microseconds(kSessionTimeout)
                     ? "no heartbeat within the session timeout"
                     : "its process is gone");
    delete_member_.BindText(1, group_);
    delete_member_.BindText(2, member.id);
    delete_member_.BindInt64(3, member.incarnation);
    STIP_RETURN_IF_ERROR(delete_member_.Run());
    changed = true;
  }
  if (changed) STIP_RETURN_IF_ERROR(BumpGeneration());
  STIP_RETURN_IF_ERROR(transaction.Commit());
  next_heartbeat_ = now + kHeartbeatInterval;
  next_liveness_check_ = now + kLivenessInterval;
  dirty_ = true;
  return absl::OkStatus();
}

std::vector<TopicPartition> GroupMember::ComputeAssignment(
    const std::vector<Member>& members, const std::map<std::string, int32_t>& topics) {
  // Round robin over every partition, in order, among the members subscribed to its topic;
  // `members` is sorted by id, so every member computes the same.
  std::vector<TopicPartition> mine;
  size_t next = 0;
  for (const auto& [topic, partitions] : topics) {
    for (int32_t partition = 0; partition < partitions; ++partition) {
      for (size_t tried = 0; tried < members.size(); ++tried) {
        const Member& member = members[(next + tried) % members.size()];
        if (!member.topics.contains(topic)) continue;
        if (member.id == member_id_) mine.push_back({topic, partition});
        next = (next + tried + 1) % members.size();
        break;
      }
    }
  }
  return mine;
}

absl::StatusOr<GroupMember::Change> GroupMember::Sync() {
  const absl::Time now = absl::Now();
  // A membership write that does not get the lock soon is tried again shortly: only an
  // absence of kSessionTimeout costs the membership.
  auto write_membership = [&]() -> absl::Status {
    absl::Status status = WriteMembership(/*join=*/false, kMembershipLockWait);
    if (absl::IsUnavailable(status)) {
      next_heartbeat_ = now + kLivenessInterval;
      return absl::OkStatus();
    }
    return status;
  };
  if (now >= next_heartbeat_) {
    STIP_RETURN_IF_ERROR(write_membership());
  } else if (!active_ && now >= next_liveness_check_) {
    // Waiting for the others to acknowledge: a crashed one would hold the group up until its
    // session times out, unless it is noticed sooner.
    next_liveness_check_ = now + kLivenessInterval;
    STIP_ASSIGN_OR_RETURN(std::vector<Member> members, ReadMembers());
    const int64_t now_us = absl::ToUnixMicros(now);
    if (std::any_of(members.begin(), members.end(),
                    [&](const Member& member) { return Dead(member, now_us); })) {
      STIP_RETURN_IF_ERROR(write_membership());
    }
  }

  // Membership changes only by commits of other connections (seen in the data version) or
  // of this member (which set dirty_).
  STIP_ASSIGN_OR_RETURN(int64_t data_version, reader_->DataVersion());
  if (!dirty_ && data_version == seen_data_version_) return Change::kNone;
  seen_data_version_ = data_version;
  dirty_ = false;

  // One snapshot for the generation, the members and the partition counts.
  int64_t generation = 0;
  std::vector<Member> members;
  std::map<std::string, int32_t> partitions;
  {
    STIP_ASSIGN_OR_RETURN(SqliteTransaction snapshot, SqliteTransaction::Read(db_));
    {
      SqliteResetter reset(select_generation_);
      select_generation_.BindText(1, group_);
      STIP_ASSIGN_OR_RETURN(bool row, select_generation_.Step());
      if (row) generation = select_generation_.ColumnInt64(0);
    }
    STIP_ASSIGN_OR_RETURN(members, ReadMembers());
    std::set<std::string> subscribed;
    for (const Member& member : members) {
      subscribed.insert(member.topics.begin(), member.topics.end());
    }
    for (const std::string& topic : subscribed) {
      SqliteResetter reset(select_partitions_);
      select_partitions_.BindText(1, topic);
      STIP_ASSIGN_OR_RETURN(bool row, select_partitions_.Step());
      if (row) partitions[topic] = static_cast<int32_t>(select_partitions_.ColumnInt64(0));
    }
    snapshot.Rollback();
  }

  auto self = std::find_if(members.begin(), members.end(),
                           [&](const Member& member) { return member.id == member_id_; });
  if (self == members.end()) {
    // Removed by the others while away: drop everything and join again.
    spdlog::warn("member '{}' of group '{}' ({}) was removed from the group; rejoining", member_id_,
                 group_, shared_.path());
    const bool had_partitions = active_ || generation_ >= 0;
    active_ = false;
    assignment_.clear();
    generation_ = -1;
    STIP_RETURN_IF_ERROR(WriteMembership(/*join=*/true, shared_.busy_timeout()));
    return had_partitions ? Change::kRevoked : Change::kNone;
  }
  if (self->incarnation != incarnation_) return Fenced();

  if (generation != generation_) {
    // Eager: give up every partition before acknowledging the new generation.
    active_ = false;
    assignment_.clear();
    generation_ = generation;
    target_ = ComputeAssignment(members, partitions);
    dirty_ = true;
    absl::Status acked = [&] {
      WriteTransaction transaction(shared_, db_);
      STIP_RETURN_IF_ERROR(transaction.Begin(kMembershipLockWait));
      ack_.BindInt64(1, generation);
      ack_.BindText(2, group_);
      ack_.BindText(3, member_id_);
      ack_.BindInt64(4, incarnation_);
      STIP_RETURN_IF_ERROR(ack_.Run());
      return transaction.Commit();
    }();
    if (absl::IsUnavailable(acked)) {
      generation_ = -1;  // acknowledge at the next Sync
    } else if (!acked.ok()) {
      return acked;
    }
    return Change::kRevoked;
  }
  if (!active_ && std::all_of(members.begin(), members.end(), [&](const Member& member) {
        return member.acked_generation == generation;
      })) {
    active_ = true;
    assignment_ = target_;
    return Change::kAssigned;
  }
  return Change::kNone;
}

absl::Status GroupMember::Leave(absl::Duration timeout) {
  WriteTransaction transaction(shared_, db_);
  STIP_RETURN_IF_ERROR(transaction.Begin(timeout));
  delete_member_.BindText(1, group_);
  delete_member_.BindText(2, member_id_);
  delete_member_.BindInt64(3, incarnation_);
  STIP_RETURN_IF_ERROR(delete_member_.Run());
  if (sqlite3_changes(db_.handle()) > 0) STIP_RETURN_IF_ERROR(BumpGeneration());
  STIP_RETURN_IF_ERROR(transaction.Commit());
  active_ = false;
  assignment_.clear();
  return absl::OkStatus();
}

absl::Status GroupMember::CheckMembership() {
  SqliteResetter reset(select_self_);
  select_self_.BindText(1, group_);
  select_self_.BindText(2, member_id_);
  STIP_ASSIGN_OR_RETURN(bool row, select_self_.Step());
  if (!row) {
    dirty_ = true;
    return absl::AbortedError(absl::StrCat(
        "member '", member_id_, "' of group '", group_, "' in SQLite file ", shared_.path(),
        " was removed from the group (no heartbeat within ", absl::FormatDuration(kSessionTimeout),
        "); its uncommitted events go to another member"));
  }
  if (select_self_.ColumnInt64(0) != incarnation_) return Fenced();
  return absl::OkStatus();
}

std::string NewMemberId(const std::string& kind) {
  return absl::StrCat(kind, "/", getpid(), "-", absl::Hex(RandomId(), absl::kZeroPad16));
}

}  // namespace stip::sqlite
