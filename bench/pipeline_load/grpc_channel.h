// The gRPC channels pipeline-load calls the services on. Thread-safe; WaitConnected blocks
// up to 10 s and ends the process (Die) when the server cannot be reached.
#ifndef STIP_BENCH_PIPELINE_LOAD_GRPC_CHANNEL_H_
#define STIP_BENCH_PIPELINE_LOAD_GRPC_CHANNEL_H_

#include <memory>
#include <string>

#include "grpcpp/channel.h"

namespace stip::bench::load {

// A channel with its own connection (a local subchannel pool), so that several channels to
// one server spread the calls over several HTTP/2 connections.
std::shared_ptr<grpc::Channel> NewChannel(const std::string& target);

// Waits up to 10 s for `channel` to connect; dies naming `flag` and `target` when it does not.
void WaitConnected(const std::shared_ptr<grpc::Channel>& channel, const std::string& flag,
                   const std::string& target);

}  // namespace stip::bench::load

#endif  // STIP_BENCH_PIPELINE_LOAD_GRPC_CHANNEL_H_
