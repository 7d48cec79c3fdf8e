#include "bench/pipeline_load/grpc_channel.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "bench/raw_copy.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"

namespace stip::bench::load {

std::shared_ptr<grpc::Channel> NewChannel(const std::string& target) {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetMaxReceiveMessageSize(16 * 1024 * 1024);
  return grpc::CreateCustomChannel(target, grpc::InsecureChannelCredentials(), args);
}

void WaitConnected(const std::shared_ptr<grpc::Channel>& channel, const std::string& flag,
                   const std::string& target) {
  if (!channel->WaitForConnected(std::chrono::system_clock::now() + std::chrono::seconds(10))) {
    Die(absl::StrCat(flag, ": cannot connect to ", target, " within 10 s"));
  }
}

}  // namespace stip::bench::load
