// A RegistryService that enrolls every enterprise in one park and has recorded nothing:
// what intake's load tools and benchmarks stand on when the registry itself is not under
// test. Header-only, over the generated service alone. Thread-safe (stateless).
#pragma once

#include <string>

#include "grpcpp/server_context.h"
#include "stip/v1/registry_service.grpc.pb.h"

namespace stip::testing {

class EnrollEveryoneRegistry final : public v1::RegistryService::Service {
 public:
  static constexpr char kParkId[] = "urumqi-hnz";

  grpc::Status ListParks(grpc::ServerContext*, const v1::ListParksRequest*,
                         v1::ListParksResponse* response) override {
    v1::Park* park = response->add_parks();
    park->set_park_id(kParkId);
    park->set_region(v1::ECONOMIC_REGION_WESTERN);
    park->set_year_founded(1992);
    return grpc::Status::OK;
  }

  grpc::Status GetEnterprise(grpc::ServerContext*, const v1::GetEnterpriseRequest* request,
                             v1::GetEnterpriseResponse* response) override {
    response->mutable_enterprise()->set_uscc(request->uscc());
    response->mutable_enterprise()->set_park_id(kParkId);
    response->mutable_enterprise()->set_region(v1::ECONOMIC_REGION_WESTERN);
    return grpc::Status::OK;
  }

  grpc::Status GetFiling(grpc::ServerContext*, const v1::GetFilingRequest*,
                         v1::GetFilingResponse*) override {
    return grpc::Status(grpc::StatusCode::NOT_FOUND, "no filing recorded");
  }
};

}  // namespace stip::testing
