// An in-process fake GuardService with a programmable CheckOrderStream, served on a Unix
// socket in a temporary directory (a real transport: a stop and a restart on the same path
// are what a sidecar's restart looks like to the client).
#ifndef ESS_TESTS_FAKE_GUARD_H_
#define ESS_TESTS_FAKE_GUARD_H_

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "ess/client.h"

namespace ess_test {

namespace v1 = ess::v1;
using namespace std::chrono_literals;

// What the fake does with one stream request.
struct Reply {
  std::optional<v1::CheckOrderStreamResponse> answer;  // none: no answer (a hung sidecar)
  std::chrono::milliseconds delay{0};                  // before answering
  std::optional<grpc::Status> end;  // then end the stream with this status (OK: it finished)
};

// Answers with this.
inline Reply Answer(v1::CheckOrderStreamResponse answer) {
  Reply reply;
  reply.answer = std::move(answer);
  return reply;
}

// Says nothing for this long (then reads the next request).
inline Reply Silence(std::chrono::milliseconds delay) {
  Reply reply;
  reply.delay = delay;
  return reply;
}

// Ends the stream with this status, without answering.
inline Reply End(grpc::Status status) {
  Reply reply;
  reply.end = std::move(status);
  return reply;
}

// Decides the reply to a request of the stream numbered `stream` (from 1).
using Behavior = std::function<Reply(int stream, const v1::CheckOrderStreamRequest& request)>;

inline v1::CheckOrderStreamResponse Decision(std::uint64_t request_id,
                                             const v1::CheckOrderResponse& decision) {
  v1::CheckOrderStreamResponse answer;
  answer.set_request_id(request_id);
  *answer.mutable_decision() = decision;
  return answer;
}

// ALLOWED, with the order's client_order_id as decision_id.
inline Reply Allow(int /*stream*/, const v1::CheckOrderStreamRequest& request) {
  v1::CheckOrderResponse decision;
  decision.set_allowed(true);
  decision.set_reason(v1::DECISION_REASON_ALLOWED);
  decision.set_decision_id(request.order().client_order_id());
  decision.set_state_version(7);
  return Answer(Decision(request.request_id(), decision));
}

class FakeGuard final : public v1::GuardService::Service {
 public:
  Behavior behave = Allow;
  std::function<grpc::Status(const v1::CheckOrderRequest&, v1::CheckOrderResponse*)> unary;
  std::atomic<int> streams{0};

  std::mutex mu;
  std::vector<std::string> auth;  // the authorization metadata of every call
  std::vector<v1::CheckOrderStreamRequest> requests;
  std::vector<v1::HeartbeatRequest> heartbeats;
  std::condition_variable heartbeat_cv;  // notified with each heartbeat
  std::vector<v1::ReportFillRequest> fills;
  std::vector<v1::ReportOrderUpdateRequest> updates;
  std::vector<v1::SyncPositionsRequest> syncs;

  grpc::Status CheckOrderStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::CheckOrderStreamResponse, v1::CheckOrderStreamRequest>* stream)
      override {
    SawAuth(context);
    const int n = ++streams;
    v1::CheckOrderStreamRequest request;
    while (stream->Read(&request)) {
      {
        std::lock_guard<std::mutex> lock(mu);
        requests.push_back(request);
      }
      Reply reply = behave(n, request);
      const auto until = std::chrono::steady_clock::now() + reply.delay;
      while (std::chrono::steady_clock::now() < until) {
        if (context->IsCancelled()) {
          return grpc::Status::CANCELLED;
        }
        std::this_thread::sleep_for(1ms);
      }
      if (reply.answer && !stream->Write(*reply.answer)) {
        return grpc::Status::CANCELLED;
      }
      if (reply.end) {
        return *reply.end;
      }
    }
    return grpc::Status::OK;
  }

  grpc::Status CheckOrder(grpc::ServerContext* context, const v1::CheckOrderRequest* request,
                          v1::CheckOrderResponse* response) override {
    SawAuth(context);
    return unary(*request, response);
  }

  grpc::Status Heartbeat(grpc::ServerContext* /*context*/, const v1::HeartbeatRequest* request,
                         v1::HeartbeatResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    heartbeats.push_back(*request);
    heartbeat_cv.notify_all();
    response->set_state(v1::STATE_ARMED);
    response->set_state_version(1);
    return grpc::Status::OK;
  }

  grpc::Status ReportFill(grpc::ServerContext* context, const v1::ReportFillRequest* request,
                          v1::ReportFillResponse* response) override {
    SawAuth(context);
    std::lock_guard<std::mutex> lock(mu);
    fills.push_back(*request);
    response->set_position(request->quantity());
    return grpc::Status::OK;
  }

  grpc::Status ReportOrderUpdate(grpc::ServerContext* /*context*/,
                                 const v1::ReportOrderUpdateRequest* request,
                                 v1::ReportOrderUpdateResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    updates.push_back(*request);
    response->set_known(true);
    return grpc::Status::OK;
  }

  grpc::Status SyncPositions(grpc::ServerContext* /*context*/,
                             const v1::SyncPositionsRequest* request,
                             v1::SyncPositionsResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    syncs.push_back(*request);
    response->set_positions(static_cast<std::uint32_t>(request->positions_size()));
    return grpc::Status::OK;
  }

  // Waits up to `within` for at least n heartbeats.
  bool AwaitHeartbeats(std::size_t n, std::chrono::milliseconds within) {
    std::unique_lock<std::mutex> lock(mu);
    return heartbeat_cv.wait_for(lock, within, [&] { return heartbeats.size() >= n; });
  }

  template <typename T>
  std::vector<T> Copy(const std::vector<T>& of) {
    std::lock_guard<std::mutex> lock(mu);
    return of;
  }

 private:
  void SawAuth(grpc::ServerContext* context) {
    std::lock_guard<std::mutex> lock(mu);
    const auto& metadata = context->client_metadata();
    for (auto [it, end] = metadata.equal_range("authorization"); it != end; ++it) {
      auth.emplace_back(it->second.data(), it->second.size());
    }
  }
};

// A temporary directory, removed at the end.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "ess-cpp-XXXXXX").string();
    path_ = mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  std::string File(std::string_view name) const { return path_ + "/" + std::string(name); }

 private:
  std::string path_;
};

// A fake sidecar on a Unix socket, stoppable and restartable on the same path.
class FakeServer {
 public:
  explicit FakeServer(FakeGuard* fake) : fake_(fake), target_("unix:" + dir_.File("ess.sock")) {
    Start();
  }
  ~FakeServer() { Stop(); }
  const std::string& target() const { return target_; }
  const TempDir& dir() const { return dir_; }

  void Start() {
    grpc::ServerBuilder builder;
    builder.AddListeningPort(target_, grpc::InsecureServerCredentials());
    builder.RegisterService(fake_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr) << "cannot serve on " << target_;
  }

  void Stop() {
    if (server_) {
      server_->Shutdown(std::chrono::system_clock::now() + 50ms);
      server_->Wait();
      server_.reset();
    }
  }

 private:
  FakeGuard* fake_;
  TempDir dir_;
  std::string target_;
  std::unique_ptr<grpc::Server> server_;
};

// Options whose failures are logged nowhere.
inline ess::Options Quiet() {
  ess::Options options;
  options.log_sink = [](std::string_view) {};
  return options;
}

inline ess::Order AnOrder() {
  ess::Order order;
  order.account = "acc-1";
  order.strategy = "momo";
  order.symbol = "AAPL";
  order.side = ess::kBuy;
  order.quantity = 1;
  order.price = 100;
  return order;
}

// A fake sidecar and a connected client of it.
struct Harness {
  explicit Harness(Behavior behave = Allow, ess::Options options = Quiet())
      : server((fake.behave = std::move(behave), &fake)) {
    client = std::make_unique<ess::Client>(server.target(), std::move(options));
    EXPECT_TRUE(client->Connect(5s)) << "the fake sidecar was not reached";
  }
  ~Harness() {
    client.reset();  // before the server: its stream ends first
  }

  FakeGuard fake;
  FakeServer server;
  std::unique_ptr<ess::Client> client;
};

template <typename F>
double MillisOf(F&& f) {
  const auto started = std::chrono::steady_clock::now();
  f();
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started)
      .count();
}

// Waits up to `within` for condition.
template <typename F>
bool Eventually(F&& condition, std::chrono::milliseconds within = 10s) {
  const auto until = std::chrono::steady_clock::now() + within;
  while (!condition()) {
    if (std::chrono::steady_clock::now() > until) {
      return false;
    }
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

}  // namespace ess_test

#endif  // ESS_TESTS_FAKE_GUARD_H_
