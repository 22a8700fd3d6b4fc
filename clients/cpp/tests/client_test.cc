// ess::Client against an in-process fake sidecar (tests/fake_guard.h): decisions, the
// fail-closed rules, deadlines, id matching, reconnection, token, TLS and the other RPCs.
#include <fstream>
#include <future>
#include <set>
#include <stdexcept>

#include "certs.h"
#include "fake_guard.h"
#include "internal.h"

namespace ess_test {
namespace {

using ess::Cause;

v1::CheckOrderResponse Denied(v1::DecisionReason reason, const std::string& message) {
  v1::CheckOrderResponse decision;
  decision.set_allowed(false);
  decision.set_reason(reason);
  decision.set_message(message);
  decision.set_decision_id("d-1");
  decision.set_state_version(9);
  return decision;
}

TEST(Client, AllowedAndDeniedDecisionsAreTheSidecars) {
  Harness h([](int, const v1::CheckOrderStreamRequest& request) {
    if (request.order().strategy() == "halted") {
      auto decision = Denied(v1::DECISION_REASON_SCOPE_TRIPPED, "STRATEGY:halted is TRIPPED");
      decision.mutable_blocking_scope()->set_kind(v1::SCOPE_KIND_STRATEGY);
      decision.mutable_blocking_scope()->set_id("halted");
      return Answer(Decision(request.request_id(), decision));
    }
    return Allow(0, request);
  });
  auto order = AnOrder();
  order.client_order_id = "coid-1";
  const auto allowed = h.client->Check(order, 2s);
  EXPECT_TRUE(allowed.allowed);
  EXPECT_FALSE(allowed.failed_closed());
  EXPECT_EQ(allowed.reason_name(), "ALLOWED");
  EXPECT_EQ(allowed.decision_id, "coid-1");
  EXPECT_EQ(allowed.client_order_id, "coid-1");
  EXPECT_EQ(allowed.state_version, 7u);

  order.strategy = "halted";
  order.client_order_id = "coid-2";
  const auto denied = h.client->Check(order, 2s);
  EXPECT_FALSE(denied.allowed);
  EXPECT_FALSE(denied.failed_closed());
  EXPECT_EQ(denied.reason, v1::DECISION_REASON_SCOPE_TRIPPED);
  EXPECT_EQ(denied.reason_name(), "SCOPE_TRIPPED");
  EXPECT_EQ(denied.message, "STRATEGY:halted is TRIPPED");
  EXPECT_EQ(denied.blocking_scope, "STRATEGY:halted");
  EXPECT_EQ(denied.client_order_id, "coid-2");
  EXPECT_TRUE(h.client->Failures().empty()) << "a sidecar's denial is not a failure";

  const auto requests = h.fake.Copy(h.fake.requests);
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].order().account(), "acc-1");
  EXPECT_EQ(requests[0].order().side(), v1::SIDE_BUY);
  EXPECT_EQ(requests[0].order().quantity(), 1);
  EXPECT_EQ(requests[0].order().price(), 100);
  EXPECT_NE(requests[0].request_id(), requests[1].request_id());
}

TEST(Client, MalformedAnswersAreDenials) {
  struct Case {
    const char* name;
    std::function<v1::CheckOrderStreamResponse(std::uint64_t)> answer;
  };
  const std::vector<Case> cases = {
      {"unknown reason",
       [](std::uint64_t id) {
         v1::CheckOrderResponse d;
         d.set_allowed(false);
         d.set_reason(static_cast<v1::DecisionReason>(99));
         return Decision(id, d);
       }},
      {"unknown reason, allowed",
       [](std::uint64_t id) {
         v1::CheckOrderResponse d;
         d.set_allowed(true);
         d.set_reason(static_cast<v1::DecisionReason>(99));
         return Decision(id, d);
       }},
      {"unspecified reason",
       [](std::uint64_t id) {
         v1::CheckOrderResponse d;
         d.set_allowed(true);
         return Decision(id, d);
       }},
      {"allowed with a denial's reason",
       [](std::uint64_t id) {
         v1::CheckOrderResponse d;
         d.set_allowed(true);
         d.set_reason(v1::DECISION_REASON_SCOPE_TRIPPED);
         return Decision(id, d);
       }},
      {"denied with ALLOWED",
       [](std::uint64_t id) {
         v1::CheckOrderResponse d;
         d.set_allowed(false);
         d.set_reason(v1::DECISION_REASON_ALLOWED);
         return Decision(id, d);
       }},
      {"neither decision nor error",
       [](std::uint64_t id) {
         v1::CheckOrderStreamResponse a;
         a.set_request_id(id);
         return a;
       }},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Harness h([&c](int, const v1::CheckOrderStreamRequest& request) {
      return Answer(c.answer(request.request_id()));
    });
    const auto verdict = h.client->Check(AnOrder(), 2s);
    EXPECT_FALSE(verdict.allowed);
    EXPECT_EQ(verdict.cause, Cause::kMalformed);
    EXPECT_EQ(verdict.reason_name(), "CLIENT_FAIL_CLOSED");
    EXPECT_EQ(verdict.reason, v1::DECISION_REASON_UNSPECIFIED);
    EXPECT_EQ(h.client->Failures(Cause::kMalformed), 1u);
  }
}

TEST(Client, RequestErrorIsADenialNamingTheField) {
  Harness h([](int, const v1::CheckOrderStreamRequest& request) {
    v1::CheckOrderStreamResponse answer;
    answer.set_request_id(request.request_id());
    answer.mutable_error()->set_code(3);
    answer.mutable_error()->set_field("order.quantity");
    answer.mutable_error()->set_message("quantity must be positive and finite");
    return Answer(answer);
  });
  const auto verdict = h.client->Check(AnOrder(), 2s);
  EXPECT_FALSE(verdict.allowed);
  EXPECT_EQ(verdict.cause, Cause::kRequestError);
  EXPECT_EQ(verdict.field, "order.quantity");
  EXPECT_EQ(verdict.message, "quantity must be positive and finite");
  // The stream stays open: the next check is answered on it.
  h.fake.behave = Allow;  // (the fake reads behave per request; no stream is reading now)
  EXPECT_TRUE(h.client->Check(AnOrder(), 2s).allowed);
  EXPECT_EQ(h.client->StreamsOpened(), 1u);
}

TEST(Client, WrongRequestIdDeniesAndReplacesTheStream) {
  Harness h([](int stream, const v1::CheckOrderStreamRequest& request) {
    Reply reply = Allow(stream, request);
    if (stream == 1) {
      reply.answer->set_request_id(request.request_id() + 1000);
    }
    return reply;
  });
  const auto verdict = h.client->Check(AnOrder(), 2s);
  EXPECT_FALSE(verdict.allowed);
  EXPECT_EQ(verdict.cause, Cause::kMalformed);
  EXPECT_NE(verdict.message.find("expected"), std::string::npos) << verdict.message;
  ASSERT_TRUE(Eventually([&] { return h.client->Check(AnOrder(), 2s).allowed; }));
  EXPECT_GE(h.client->StreamsOpened(), 2u);
  EXPECT_GE(h.fake.streams.load(), 2);
}

TEST(Client, MissedDeadlineIsADenialOnTime) {
  Harness h([](int stream, const v1::CheckOrderStreamRequest& request) {
    Reply reply = Allow(stream, request);
    if (request.order().strategy() == "slow") {
      reply.delay = 300ms;
    }
    return reply;
  });
  auto order = AnOrder();
  order.strategy = "slow";
  ess::Verdict verdict;
  const double ms = MillisOf([&] { verdict = h.client->Check(order, 20ms); });
  EXPECT_FALSE(verdict.allowed);
  EXPECT_EQ(verdict.cause, Cause::kDeadline);
  EXPECT_EQ(verdict.message, "no answer within 20ms");
  EXPECT_GE(ms, 19.0);
  EXPECT_LT(ms, 20.0 + 100.0);
  // The client's default deadline (5 ms) applies without one per call.
  const double default_ms = MillisOf([&] { verdict = h.client->Check(order); });
  EXPECT_EQ(verdict.cause, Cause::kDeadline);
  EXPECT_EQ(verdict.message, "no answer within 5ms");
  EXPECT_LT(default_ms, 5.0 + 100.0);
  // One late answer is jitter: the stream is kept, and the next check is answered on it
  // once the slow ones are (answers come in order).
  EXPECT_TRUE(h.client->Check(AnOrder(), 2s).allowed);
  EXPECT_EQ(h.client->StreamsOpened(), 1u);
  EXPECT_EQ(h.client->Failures(Cause::kDeadline), 2u);
}

TEST(Client, AnAnswerAfterTheDeadlineIsADenialEvenWhenItIsThere) {
  // The fake moves the clock answers are judged by an hour on before it answers "LATE":
  // the answer is there when the check looks, but it came after the deadline.
  struct Unskew {
    ~Unskew() { ess::internal::clock_skew = 0; }
  } unskew;
  static const auto kHour = std::chrono::duration_cast<ess::internal::Clock::duration>(1h);
  Harness h([](int stream, const v1::CheckOrderStreamRequest& request) {
    if (request.order().symbol() == "LATE") {
      ess::internal::clock_skew = kHour.count();
    }
    return Allow(stream, request);
  });
  h.fake.unary = [](const v1::CheckOrderRequest& request, v1::CheckOrderResponse* response) {
    if (request.symbol() == "LATE") {
      ess::internal::clock_skew = kHour.count();
    }
    response->set_allowed(true);
    response->set_reason(v1::DECISION_REASON_ALLOWED);
    return grpc::Status::OK;
  };
  auto late = AnOrder();
  late.symbol = "LATE";
  EXPECT_EQ(h.client->Check(late, 2s).cause, Cause::kDeadline);
  ess::internal::clock_skew = 0;
  // The unary check too (review 35: it took whatever the stub returned).
  const auto unary = h.client->CheckUnary(late, 2s);
  EXPECT_FALSE(unary.allowed);
  EXPECT_EQ(unary.cause, Cause::kDeadline);
  EXPECT_EQ(unary.message, "no answer within 2000ms");
  ess::internal::clock_skew = 0;
  EXPECT_TRUE(h.client->Check(AnOrder(), 2s).allowed);
  EXPECT_TRUE(h.client->CheckUnary(AnOrder(), 2s).allowed);
}

TEST(Client, DeadlineIsConfigurablePerClient) {
  ess::Options options = Quiet();
  options.deadline = 30ms;
  Harness h(
      [](int stream, const v1::CheckOrderStreamRequest& request) {
        Reply reply = Allow(stream, request);
        reply.delay = 10ms;
        return reply;
      },
      options);
  EXPECT_TRUE(h.client->Check(AnOrder()).allowed);  // 10 ms < 30 ms
  EXPECT_EQ(h.client->Check(AnOrder(), 1ms).cause, Cause::kDeadline);
}

TEST(Client, ManyChecksInFlightFromManyThreadsAreMatchedByRequestId) {
  Harness h([](int stream, const v1::CheckOrderStreamRequest& request) {
    Reply reply = Allow(stream, request);
    reply.delay = std::chrono::milliseconds(request.request_id() % 3);
    return reply;
  });
  constexpr int kThreads = 8;
  constexpr int kChecks = 100;
  std::vector<std::future<int>> results;
  for (int t = 0; t < kThreads; ++t) {
    results.push_back(std::async(std::launch::async, [&h, t] {
      int matched = 0;
      for (int i = 0; i < kChecks; ++i) {
        auto order = AnOrder();
        order.client_order_id = "t" + std::to_string(t) + "-" + std::to_string(i);
        const auto verdict = h.client->Check(order, 10s);
        EXPECT_TRUE(verdict.allowed) << verdict.message;
        // The fake answers with the order's own id: a mismatched answer would show here.
        matched += verdict.decision_id == order.client_order_id ? 1 : 0;
      }
      return matched;
    }));
  }
  int matched = 0;
  for (auto& result : results) {
    matched += result.get();
  }
  EXPECT_EQ(matched, kThreads * kChecks);
  EXPECT_EQ(h.client->StreamsOpened(), 1u);
  EXPECT_TRUE(h.client->Failures().empty());
}

TEST(Client, BrokenStreamDeniesAtOnceAndIsReplaced) {
  Harness h([](int stream, const v1::CheckOrderStreamRequest& request) {
    if (stream == 1) {
      return End(grpc::Status(grpc::StatusCode::INTERNAL, "boom"));
    }
    return Allow(stream, request);
  });
  ess::Verdict verdict;
  const double ms = MillisOf([&] { verdict = h.client->Check(AnOrder(), 5s); });
  EXPECT_FALSE(verdict.allowed);
  EXPECT_EQ(verdict.cause, Cause::kStreamBroken);
  EXPECT_NE(verdict.message.find("INTERNAL: boom"), std::string::npos) << verdict.message;
  EXPECT_LT(ms, 1000.0) << "denied when the stream broke, not at the deadline";
  ASSERT_TRUE(Eventually([&] { return h.client->Check(AnOrder(), 2s).allowed; }));
  EXPECT_EQ(h.client->StreamsOpened(), 2u);
}

TEST(Client, AnUndecodableAnswerDeniesAtOnceAndTheStreamIsReplaced) {
  Harness h([](int stream, const v1::CheckOrderStreamRequest& request) {
    Reply reply = Allow(stream, request);
    if (stream == 1) {
      // Not UTF-8 in a proto3 string: the fake sends it (and logs), no client decodes it.
      reply.answer->mutable_decision()->set_decision_id("\xff\xfe");
    }
    return reply;
  });
  ess::Verdict verdict;
  const double ms = MillisOf([&] { verdict = h.client->Check(AnOrder(), 5s); });
  EXPECT_FALSE(verdict.allowed);
  EXPECT_EQ(verdict.cause, Cause::kMalformed) << verdict.message;
  EXPECT_LT(ms, 1000.0) << "denied when the answer came, not at the deadline";
  ASSERT_TRUE(Eventually([&] { return h.client->Check(AnOrder(), 2s).allowed; }));
  EXPECT_EQ(h.client->StreamsOpened(), 2u);
}

TEST(Client, StreamEndedOrRefused) {
  const std::vector<std::pair<grpc::Status, Cause>> cases = {
      {grpc::Status::OK, Cause::kStreamBroken},
      {grpc::Status(grpc::StatusCode::UNAVAILABLE, "shutting down"), Cause::kUnavailable},
      {grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "role"), Cause::kRefused},
      {grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "token"), Cause::kRefused},
      {grpc::Status(grpc::StatusCode::UNKNOWN, "?"), Cause::kStreamBroken},
  };
  for (const auto& [status, cause] : cases) {
    SCOPED_TRACE(status.error_message());
    Harness h([status = status](int, const v1::CheckOrderStreamRequest&) {
      return End(status);
    });
    const auto verdict = h.client->Check(AnOrder(), 5s);
    EXPECT_FALSE(verdict.allowed);
    EXPECT_EQ(verdict.cause, cause) << verdict.message;
  }
}

TEST(Client, HungStreamIsReplacedAfterStallAfter) {
  ess::Options options = Quiet();
  options.stall_after = 100ms;
  Harness h(
      [](int stream, const v1::CheckOrderStreamRequest& request) {
        if (stream == 1) {
          return Silence(10s);  // never answers
        }
        return Allow(stream, request);
      },
      options);
  EXPECT_EQ(h.client->Check(AnOrder(), 20ms).cause, Cause::kDeadline);
  std::this_thread::sleep_for(150ms);
  // This check's own deadline passes too; by then the oldest request is > stall_after
  // old, and the stream is replaced.
  EXPECT_EQ(h.client->Check(AnOrder(), 20ms).cause, Cause::kDeadline);
  ASSERT_TRUE(Eventually([&] { return h.client->Check(AnOrder(), 2s).allowed; }));
  EXPECT_EQ(h.client->StreamsOpened(), 2u);
}

TEST(Client, SidecarDownFailsClosedAndIsFoundAgain) {
  Harness h;
  ASSERT_TRUE(h.client->Check(AnOrder(), 2s).allowed);
  h.server.Stop();
  for (int i = 0; i < 5; ++i) {
    ess::Verdict verdict;
    const double ms = MillisOf([&] { verdict = h.client->Check(AnOrder()); });
    EXPECT_FALSE(verdict.allowed);
    EXPECT_TRUE(verdict.failed_closed());
    EXPECT_LT(ms, 5.0 + 50.0) << ess::CauseName(verdict.cause) << ": " << verdict.message;
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_GT(h.client->Failures(Cause::kUnavailable) + h.client->Failures(Cause::kDeadline) +
                h.client->Failures(Cause::kStreamBroken),
            0u);
  h.server.Start();
  const double ms = MillisOf([&] {
    ASSERT_TRUE(Eventually([&] { return h.client->Check(AnOrder(), 2s).allowed; }, 10s));
  });
  EXPECT_LT(ms, 5000.0);
  EXPECT_GE(h.client->StreamsOpened(), 2u);
}

TEST(Client, NeverReachedSidecarFailsClosed) {
  TempDir dir;
  ess::Client client("unix:" + dir.File("nobody.sock"), Quiet());
  EXPECT_FALSE(client.Connect(100ms));
  for (int i = 0; i < 3; ++i) {
    ess::Verdict verdict;
    const double ms = MillisOf([&] { verdict = client.Check(AnOrder()); });
    EXPECT_FALSE(verdict.allowed);
    EXPECT_TRUE(verdict.cause == Cause::kUnavailable || verdict.cause == Cause::kDeadline)
        << verdict.message;
    EXPECT_LT(ms, 5.0 + 50.0);
  }
  const auto unary = client.CheckUnary(AnOrder());
  EXPECT_FALSE(unary.allowed);
  EXPECT_TRUE(unary.failed_closed());
}

TEST(Client, ClosedClientDenies) {
  Harness h;
  h.client->Close();
  h.client->Close();  // idempotent
  const auto verdict = h.client->Check(AnOrder(), 1s);
  EXPECT_FALSE(verdict.allowed);
  EXPECT_EQ(verdict.cause, Cause::kClientError);
  EXPECT_EQ(h.client->CheckUnary(AnOrder(), 1s).cause, Cause::kClientError);
  EXPECT_FALSE(h.client->Connect(10ms));
}

TEST(Client, CloseDeniesChecksInFlight) {
  Harness h([](int, const v1::CheckOrderStreamRequest&) { return Silence(10s); });
  auto check = std::async(std::launch::async, [&] { return h.client->Check(AnOrder(), 10s); });
  std::this_thread::sleep_for(50ms);
  const double ms = MillisOf([&] { h.client->Close(); });
  const auto verdict = check.get();
  EXPECT_EQ(verdict.cause, Cause::kClientError);
  EXPECT_LT(ms, 2000.0);
}

TEST(Client, ClientOrderIdsAreMadeUpWhenMissing) {
  Harness h;
  std::set<std::string> ids;
  std::string prefix;
  for (int i = 0; i < 5; ++i) {
    const auto verdict = h.client->Check(AnOrder(), 2s);
    ASSERT_TRUE(verdict.allowed);
    EXPECT_EQ(verdict.decision_id, verdict.client_order_id) << "the id sent is the id returned";
    ids.insert(verdict.client_order_id);
    const auto dash = verdict.client_order_id.find('-');
    ASSERT_EQ(dash, 12u) << verdict.client_order_id;
    if (prefix.empty()) {
      prefix = verdict.client_order_id.substr(0, dash);
    }
    EXPECT_EQ(verdict.client_order_id.substr(0, dash), prefix);
  }
  EXPECT_EQ(ids.size(), 5u);
  ess::Client other(h.server.target(), Quiet());
  EXPECT_NE(other.NewClientOrderId().substr(0, 12), prefix) << "a random per-client prefix";
  auto order = AnOrder();
  order.client_order_id = "mine";
  EXPECT_EQ(h.client->Check(order, 2s).client_order_id, "mine");
}

// Review 54e: stripped of the ASCII space around it (a CRLF file's), as by the sidecar.
TEST(Client, TokenIsSentAsBearer) {
  ess::Options options = Quiet();
  options.token = " \ts3cret\r\n";
  Harness h(Allow, options);
  h.fake.unary = [](const v1::CheckOrderRequest&, v1::CheckOrderResponse* response) {
    response->set_allowed(true);
    response->set_reason(v1::DECISION_REASON_ALLOWED);
    return grpc::Status::OK;
  };
  EXPECT_TRUE(h.client->Check(AnOrder(), 2s).allowed);
  EXPECT_TRUE(h.client->CheckUnary(AnOrder(), 2s).allowed);
  EXPECT_TRUE(h.client->ReportFill({"acc-1", "momo", "AAPL", ess::kBuy, 1, 100, "c", "f"}).ok());
  // The raw stub carries it too.
  grpc::ClientContext context;
  v1::ReportFillResponse response;
  EXPECT_TRUE(h.client->Raw().ReportFill(&context, v1::ReportFillRequest(), &response).ok());
  const auto auth = h.fake.Copy(h.fake.auth);
  ASSERT_EQ(auth.size(), 4u);
  for (const auto& header : auth) {
    EXPECT_EQ(header, "Bearer s3cret");
  }
}

TEST(Client, CheckUnaryFailsClosedTheSameWay) {
  Harness h;
  std::atomic<int> mode{0};
  h.fake.unary = [&mode](const v1::CheckOrderRequest& request, v1::CheckOrderResponse* response) {
    switch (mode.load()) {
      case 0:
        response->set_allowed(true);
        response->set_reason(v1::DECISION_REASON_ALLOWED);
        response->set_decision_id(request.client_order_id());
        return grpc::Status::OK;
      case 1:
        response->set_allowed(true);
        response->set_reason(v1::DECISION_REASON_REDUCE_ONLY);
        return grpc::Status::OK;
      case 2:
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "order.price: must be > 0");
      case 3:
        return grpc::Status(grpc::StatusCode::UNAVAILABLE, "state store");
      default:
        std::this_thread::sleep_for(300ms);
        response->set_allowed(true);
        response->set_reason(v1::DECISION_REASON_ALLOWED);
        return grpc::Status::OK;
    }
  };
  const auto allowed = h.client->CheckUnary(AnOrder(), 2s);
  EXPECT_TRUE(allowed.allowed);
  EXPECT_EQ(allowed.decision_id, allowed.client_order_id);
  mode = 1;
  EXPECT_EQ(h.client->CheckUnary(AnOrder(), 2s).cause, Cause::kMalformed);
  mode = 2;
  EXPECT_EQ(h.client->CheckUnary(AnOrder(), 2s).cause, Cause::kRequestError);
  mode = 3;
  EXPECT_EQ(h.client->CheckUnary(AnOrder(), 2s).cause, Cause::kUnavailable);
  mode = 4;
  ess::Verdict late;
  const double ms = MillisOf([&] { late = h.client->CheckUnary(AnOrder(), 20ms); });
  EXPECT_FALSE(late.allowed);
  EXPECT_EQ(late.cause, Cause::kDeadline);
  EXPECT_LT(ms, 20.0 + 100.0);
}

TEST(Client, FailuresAreCountedAndLoggedRateLimited) {
  auto lines = std::make_shared<std::vector<std::string>>();
  auto mu = std::make_shared<std::mutex>();
  ess::Options options;
  options.log_sink = [lines, mu](std::string_view line) {
    std::lock_guard<std::mutex> lock(*mu);
    lines->emplace_back(line);
  };
  options.log_interval = 200ms;
  Harness h([](int, const v1::CheckOrderStreamRequest& request) {
    v1::CheckOrderStreamResponse answer;
    answer.set_request_id(request.request_id());
    answer.mutable_error()->set_field("order.symbol");
    return Answer(answer);
  }, options);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(h.client->Check(AnOrder(), 2s).cause, Cause::kRequestError);
  }
  EXPECT_EQ(h.client->Failures(Cause::kRequestError), 10u);
  EXPECT_EQ(h.client->Failures(), (std::map<Cause, std::uint64_t>{{Cause::kRequestError, 10}}));
  std::this_thread::sleep_for(250ms);
  EXPECT_EQ(h.client->Check(AnOrder(), 2s).cause, Cause::kRequestError);
  std::lock_guard<std::mutex> lock(*mu);
  ASSERT_EQ(lines->size(), 2u);
  EXPECT_NE((*lines)[0].find("ess: check failed closed (request_error)"), std::string::npos)
      << (*lines)[0];
  EXPECT_NE((*lines)[0].find("[field order.symbol]"), std::string::npos) << (*lines)[0];
  EXPECT_NE((*lines)[1].find("[9 more suppressed]"), std::string::npos) << (*lines)[1];
}

TEST(Client, ThrowingLogSinkDoesNotMakeChecksThrow) {
  ess::Options options;
  options.log_sink = [](std::string_view) { throw std::runtime_error("the log is full"); };
  Harness h([](int, const v1::CheckOrderStreamRequest& request) {
    v1::CheckOrderStreamResponse answer;
    answer.set_request_id(request.request_id());
    answer.mutable_error()->set_field("order.symbol");
    return Answer(answer);
  }, options);
  h.fake.unary = [](const v1::CheckOrderRequest&, v1::CheckOrderResponse*) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "order.price: must be > 0");
  };
  ess::Verdict streamed;
  ess::Verdict unary;
  EXPECT_NO_THROW(streamed = h.client->Check(AnOrder(), 2s));
  EXPECT_NO_THROW(unary = h.client->CheckUnary(AnOrder(), 2s));
  EXPECT_EQ(streamed.cause, Cause::kRequestError);
  EXPECT_EQ(unary.cause, Cause::kRequestError);
  EXPECT_FALSE(streamed.allowed || unary.allowed);
  EXPECT_EQ(h.client->Failures(Cause::kRequestError), 2u);
}

TEST(Client, EndlessDeadlinesAreCappedNotOverflowed) {
  ess::Options options = Quiet();
  options.deadline = std::chrono::microseconds::max();
  options.rpc_timeout = std::chrono::milliseconds::max();
  options.log_interval = std::chrono::milliseconds::max();
  Harness h(Allow, options);
  h.fake.unary = [](const v1::CheckOrderRequest&, v1::CheckOrderResponse* response) {
    response->set_allowed(true);
    response->set_reason(v1::DECISION_REASON_ALLOWED);
    return grpc::Status::OK;
  };
  EXPECT_TRUE(h.client->Connect(std::chrono::milliseconds::max()));
  const auto endless = std::chrono::microseconds::max();
  for (const auto& verdict : {h.client->Check(AnOrder()), h.client->Check(AnOrder(), endless),
                              h.client->CheckUnary(AnOrder(), endless)}) {
    EXPECT_TRUE(verdict.allowed) << ess::CauseName(verdict.cause) << ": " << verdict.message;
  }
  const auto metric = h.client->ReportMetric(*ess::ParseScope("GLOBAL"),
                                             v1::METRIC_SYSTEM_HEALTH, 0);
  EXPECT_EQ(metric.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);  // reached the fake
  h.client->Close();  // failures logged at most once per (endless) interval
  EXPECT_EQ(h.client->Check(AnOrder()).cause, Cause::kClientError);
  EXPECT_EQ(h.client->Check(AnOrder()).cause, Cause::kClientError);
}

// An OPEN update built without remaining_quantity is sent without it, never as 0 leaves
// (which would release a live order's reservation): the sidecar refuses it. An explicit 0
// (filled in full, fills not reported yet) is sent as 0.
TEST(Client, OpenUpdateWithoutRemainingIsNotSentAsZero) {
  Harness h;
  ess::OrderUpdate unset;
  unset.account = "acc-1";
  unset.client_order_id = "coid-1";
  unset.status = v1::ORDER_STATUS_OPEN;
  ASSERT_TRUE(h.client->ReportOrderUpdate(unset).ok());
  ess::OrderUpdate filled_in_full{"acc-1", "coid-1", v1::ORDER_STATUS_OPEN, 0.0, 2.0};
  ASSERT_TRUE(h.client->ReportOrderUpdate(filled_in_full).ok());
  const auto updates = h.fake.Copy(h.fake.updates);
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_FALSE(updates[0].has_remaining_quantity())
      << "sent as " << updates[0].remaining_quantity() << " left";
  EXPECT_TRUE(updates[1].has_remaining_quantity());
  EXPECT_EQ(updates[1].remaining_quantity(), 0);
  EXPECT_EQ(updates[1].filled_quantity(), 2);
}

TEST(Client, FillsUpdatesAndPositions) {
  Harness h;
  const auto fill = h.client->ReportFill({"acc-1", "momo", "AAPL", ess::kSell, 3, 101.5,
                                          "coid-1", "exec-1"});
  ASSERT_TRUE(fill.ok()) << fill.status.error_message();
  EXPECT_EQ(fill.response.position(), 3);

  ess::OrderUpdate cancelled{"acc-1", "coid-2", v1::ORDER_STATUS_CANCELLED, 5};
  ASSERT_TRUE(h.client->ReportOrderUpdate(cancelled).ok());
  ess::OrderUpdate open{"acc-1", "coid-3", v1::ORDER_STATUS_OPEN, 2.5};
  const auto update = h.client->ReportOrderUpdate(open);
  ASSERT_TRUE(update.ok());
  EXPECT_TRUE(update.response.known());
  ess::OrderUpdate open_filled{"acc-1", "coid-3", v1::ORDER_STATUS_OPEN, 2.5, 1.5};
  ASSERT_TRUE(h.client->ReportOrderUpdate(open_filled).ok());
  ess::OrderUpdate expired_filled{"acc-1", "coid-4", v1::ORDER_STATUS_EXPIRED, std::nullopt,
                                  0.0};
  ASSERT_TRUE(h.client->ReportOrderUpdate(expired_filled).ok());

  ess::Snapshot snapshot;
  snapshot.account = "acc-1";
  snapshot.equity = 1e6;
  v1::Position position;
  position.set_strategy("momo");
  position.set_symbol("AAPL");
  position.set_quantity(10);
  position.set_mark_price(187);
  snapshot.positions = {position, position};
  v1::OpenOrder open_order;
  open_order.set_client_order_id("coid-3");
  snapshot.open_orders = {open_order};
  snapshot.open_orders_complete = true;
  const auto sync = h.client->SyncPositions(snapshot);
  ASSERT_TRUE(sync.ok());
  EXPECT_EQ(sync.response.positions(), 2u);

  const auto fills = h.fake.Copy(h.fake.fills);
  ASSERT_EQ(fills.size(), 1u);
  EXPECT_EQ(fills[0].client_order_id(), "coid-1");
  EXPECT_EQ(fills[0].fill_id(), "exec-1");
  EXPECT_EQ(fills[0].side(), v1::SIDE_SELL);
  EXPECT_EQ(fills[0].price(), 101.5);
  const auto updates = h.fake.Copy(h.fake.updates);
  ASSERT_EQ(updates.size(), 4u);
  EXPECT_FALSE(updates[0].has_remaining_quantity()) << "sent with OPEN only";
  EXPECT_TRUE(updates[1].has_remaining_quantity());
  EXPECT_EQ(updates[1].remaining_quantity(), 2.5);
  EXPECT_FALSE(updates[0].has_filled_quantity()) << "sent only when given";
  EXPECT_FALSE(updates[1].has_filled_quantity()) << "sent only when given";
  EXPECT_TRUE(updates[2].has_filled_quantity());
  EXPECT_EQ(updates[2].filled_quantity(), 1.5);
  EXPECT_EQ(updates[2].remaining_quantity(), 2.5);
  EXPECT_TRUE(updates[3].has_filled_quantity()) << "0 is sent, whatever the status";
  EXPECT_EQ(updates[3].filled_quantity(), 0);
  EXPECT_FALSE(updates[3].has_remaining_quantity());
  const auto syncs = h.fake.Copy(h.fake.syncs);
  ASSERT_EQ(syncs.size(), 1u);
  EXPECT_EQ(syncs[0].open_orders_size(), 1);
  EXPECT_TRUE(syncs[0].open_orders_complete());
  EXPECT_EQ(syncs[0].equity(), 1e6);
}

TEST(Client, OtherRpcsReturnTheStatus) {
  Harness h;
  const auto metric = h.client->ReportMetric(*ess::ParseScope("GLOBAL"),
                                             v1::METRIC_SYSTEM_HEALTH, 0);
  EXPECT_FALSE(metric.ok());
  EXPECT_EQ(metric.status.error_code(), grpc::StatusCode::UNIMPLEMENTED);
  h.server.Stop();
  const auto fill = h.client->ReportFill({"acc-1", "momo", "AAPL", ess::kBuy, 1, 1, "c", "f"});
  EXPECT_FALSE(fill);
}

TEST(Client, HeartbeatBeatsUntilStopAndDeregisters) {
  Harness h;
  ess::HeartbeatConfig config;
  config.executor_id = "exec-1";
  config.scope = *ess::ParseScope("STRATEGY:momo");
  config.ttl = 150ms;  // beats every 50 ms
  grpc::Status status;
  auto heartbeater = h.client->StartHeartbeat(config, &status);
  ASSERT_NE(heartbeater, nullptr) << status.error_message();
  EXPECT_EQ(heartbeater->state(), v1::STATE_ARMED);
  ASSERT_TRUE(Eventually([&] { return h.fake.Copy(h.fake.heartbeats).size() >= 4; }, 5s));
  EXPECT_TRUE(heartbeater->Stop().ok());
  EXPECT_TRUE(heartbeater->Stop().ok());  // once
  const auto beats = h.fake.Copy(h.fake.heartbeats);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.fake.Copy(h.fake.heartbeats).size(), beats.size()) << "no beat after Stop";
  ASSERT_GE(beats.size(), 5u);
  for (std::size_t i = 0; i + 1 < beats.size(); ++i) {
    EXPECT_FALSE(beats[i].deregister());
    EXPECT_EQ(beats[i].ttl_ms(), 150u);
    EXPECT_EQ(beats[i].executor_id(), "exec-1");
    EXPECT_EQ(ess::ScopeString(beats[i].scope()), "STRATEGY:momo");
  }
  EXPECT_TRUE(beats.back().deregister());

  config.ttl = 0ms;
  EXPECT_EQ(h.client->StartHeartbeat(config, &status), nullptr);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

// Review 42e: an interval not shorter than the ttl was taken (and a 1 ms ttl's default was
// clamped to 1 ms, the ttl itself): a live executor's scope tripped for a missed heartbeat
// while its Heartbeater ran. Python's start_heartbeat refuses it.
TEST(Client, HeartbeatIntervalNotShorterThanTheTtlIsRefused) {
  Harness h;
  ess::HeartbeatConfig config;
  config.executor_id = "exec-1";
  config.scope = *ess::ParseScope("STRATEGY:momo");
  const std::pair<std::chrono::milliseconds, std::chrono::milliseconds> refused[] = {
      {300ms, 300ms}, {300ms, 1s}, {300ms, -1ms}, {1ms, 1ms}};
  for (const auto& [ttl, interval] : refused) {
    config.ttl = ttl;
    config.interval = interval;
    grpc::Status status;
    EXPECT_EQ(h.client->StartHeartbeat(config, &status), nullptr)
        << "ttl " << ttl.count() << " ms, interval " << interval.count() << " ms";
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_NE(status.error_message().find("heartbeat interval"), std::string::npos)
        << status.error_message();
  }
  EXPECT_TRUE(h.fake.Copy(h.fake.heartbeats).empty()) << "a refused heartbeat was sent";

  // The default (ttl/3) is shorter than the ttl, even the shortest: a 1 ms ttl beats every
  // 333 us, not every 1 ms.
  config.ttl = 1ms;
  config.interval = 0ms;
  config.on_error = [](const grpc::Status&) {};  // its beats may miss their 333 us
  grpc::Status status;
  auto heartbeater = h.client->StartHeartbeat(config, &status);
  ASSERT_NE(heartbeater, nullptr) << status.error_message();
  ASSERT_TRUE(Eventually([&] { return h.fake.Copy(h.fake.heartbeats).size() >= 4; }, 5s));
  EXPECT_TRUE(heartbeater->Stop().ok());
}

// A Heartbeater destroyed by an exception unwinding its scope (an executor that died) stops
// beating but does not deregister: the registration stays, so the scope trips when the TTL
// lapses. Only Stop deregisters, and destroying it after Stop sends nothing more.
TEST(Client, HeartbeaterDestroyedByAnExceptionDoesNotDeregister) {
  Harness h;
  ess::HeartbeatConfig config;
  config.executor_id = "exec-1";
  config.scope = *ess::ParseScope("STRATEGY:momo");
  config.ttl = 150ms;  // beats every 50 ms
  try {
    grpc::Status status;
    auto heartbeater = h.client->StartHeartbeat(config, &status);
    ASSERT_NE(heartbeater, nullptr) << status.error_message();
    ASSERT_TRUE(Eventually([&] { return h.fake.Copy(h.fake.heartbeats).size() >= 2; }, 5s));
    throw std::runtime_error("the executor died");
  } catch (const std::runtime_error&) {
  }
  const auto beats = h.fake.Copy(h.fake.heartbeats);
  ASSERT_GE(beats.size(), 2u);
  for (const auto& beat : beats) {
    EXPECT_FALSE(beat.deregister()) << "the destructor deregistered";
  }
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(h.fake.Copy(h.fake.heartbeats).size(), beats.size()) << "it beats when destroyed";

  auto stopped = h.client->StartHeartbeat(config);
  ASSERT_NE(stopped, nullptr);
  EXPECT_TRUE(stopped->Stop().ok());
  const auto before = h.fake.Copy(h.fake.heartbeats).size();
  stopped.reset();
  const auto after = h.fake.Copy(h.fake.heartbeats);
  EXPECT_EQ(after.size(), before) << "destroyed after Stop, it sent more";
  EXPECT_TRUE(after.back().deregister());
}

TEST(Client, HeartbeatThatCannotStartReturnsTheError) {
  TempDir dir;
  ess::Options options = Quiet();
  options.rpc_timeout = 100ms;
  ess::Client client("unix:" + dir.File("nobody.sock"), options);
  ess::HeartbeatConfig config;
  config.executor_id = "exec-1";
  config.scope = *ess::ParseScope("GLOBAL");
  config.ttl = 3s;
  grpc::Status status;
  EXPECT_EQ(client.StartHeartbeat(config, &status), nullptr);
  EXPECT_FALSE(status.ok());
}

TEST(Client, BadOptionsThrow) {
  ess::Options zero;
  zero.deadline = std::chrono::microseconds(0);
  EXPECT_THROW(ess::Client("unix:/tmp/x.sock", zero), std::invalid_argument);
  ess::Options tls;
  tls.tls.enabled = true;
  tls.tls.ca_file = "/nonexistent/ca.pem";
  EXPECT_THROW(ess::Client("localhost:1", tls), std::invalid_argument);
  ess::Options half;
  half.tls.enabled = true;
  half.tls.cert_file = "/nonexistent/cert.pem";
  EXPECT_THROW(ess::Client("localhost:1", half), std::invalid_argument);
}

// Review 42e: an rpc_timeout <= 0 was taken, and every RPC but the checks (Trigger,
// heartbeats, fills) then failed DEADLINE_EXCEEDED unsent. Review 54a: a stall_after <= 0
// too, and each late answer would then break the stream, denying every check in flight.
TEST(Client, NonPositiveRpcTimeoutOrStallAfterThrows) {
  for (const auto timeout : {std::chrono::milliseconds(0), std::chrono::milliseconds(-1)}) {
    ess::Options rpc, stall;
    rpc.rpc_timeout = timeout;
    stall.stall_after = timeout;
    for (const auto& [options, named] : {std::pair{rpc, "rpc_timeout"},
                                         std::pair{stall, "stall_after"}}) {
      try {
        ess::Client client("localhost:1", options);
        ADD_FAILURE() << named << " " << timeout.count() << " ms was taken";
      } catch (const std::invalid_argument& error) {
        EXPECT_NE(std::string(error.what()).find(named), std::string::npos) << error.what();
      }
    }
  }
  ess::Options shortest;
  shortest.rpc_timeout = std::chrono::milliseconds(1);
  EXPECT_NO_THROW(ess::Client("localhost:1", shortest));
}

// A TLS fake sidecar on 127.0.0.1 (mutual TLS when require_client_cert).
class TlsServer {
 public:
  TlsServer(FakeGuard* fake, bool require_client_cert) {
    grpc::SslServerCredentialsOptions ssl(
        require_client_cert ? GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY
                            : GRPC_SSL_DONT_REQUEST_CLIENT_CERTIFICATE);
    ssl.pem_root_certs = kCaPem;
    ssl.pem_key_cert_pairs.push_back({kServerKey, kServerPem});
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::SslServerCredentials(ssl), &port_);
    builder.RegisterService(fake);
    server_ = builder.BuildAndStart();
  }
  ~TlsServer() {
    server_->Shutdown(std::chrono::system_clock::now() + 50ms);
    server_->Wait();
  }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

void Write(const std::string& path, const char* text) { std::ofstream(path) << text; }

TEST(Client, Tls) {
  TempDir dir;
  Write(dir.File("ca.pem"), kCaPem);
  Write(dir.File("other.pem"), kOtherCaPem);
  Write(dir.File("client.pem"), kClientPem);
  Write(dir.File("client.key"), kClientKey);
  FakeGuard fake;
  {
    TlsServer server(&fake, false);
    ess::Options options = Quiet();
    options.tls.enabled = true;
    options.tls.ca_file = dir.File("ca.pem");
    options.tls.server_name = "localhost";
    ess::Client client(server.target(), options);
    ASSERT_TRUE(client.Connect(5s));
    EXPECT_TRUE(client.Check(AnOrder(), 2s).allowed);

    options.tls.ca_file = dir.File("other.pem");  // cannot verify the sidecar
    ess::Client untrusting(server.target(), options);
    EXPECT_FALSE(untrusting.Connect(300ms));
    const auto verdict = untrusting.Check(AnOrder(), 100ms);
    EXPECT_FALSE(verdict.allowed);
    EXPECT_TRUE(verdict.failed_closed());
  }
  {
    TlsServer server(&fake, true);
    ess::Options options = Quiet();
    options.tls.enabled = true;
    options.tls.ca_file = dir.File("ca.pem");
    options.tls.server_name = "localhost";
    ess::Client anonymous(server.target(), options);
    EXPECT_FALSE(anonymous.Check(AnOrder(), 300ms).allowed) << "mutual TLS needs a certificate";

    options.tls.cert_file = dir.File("client.pem");
    options.tls.key_file = dir.File("client.key");
    ess::Client client(server.target(), options);
    ASSERT_TRUE(client.Connect(5s));
    EXPECT_TRUE(client.Check(AnOrder(), 2s).allowed);
  }
}

}  // namespace
}  // namespace ess_test

// A stop is never refused for what comes with it: its reason is made sendable.
TEST(Trigger, ReasonIsValidUtf8AndBounded) {
  EXPECT_EQ(ess::BoundedReason("fine \xC3\xA9"), "fine \xC3\xA9");
  EXPECT_EQ(ess::BoundedReason("stop \xFF\xFE now"), "stop \xEF\xBF\xBD\xEF\xBF\xBD now");
  EXPECT_EQ(ess::BoundedReason("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  std::string huge;
  for (int i = 0; i < (3 << 20); ++i) huge += "\xC3\xA9";
  const std::string cut = ess::BoundedReason(huge);
  std::size_t chars = 0;
  for (const char c : cut) chars += (static_cast<unsigned char>(c) & 0xC0) != 0x80;
  EXPECT_LE(chars, ess::kMaxReasonChars);
  EXPECT_EQ(cut.rfind("\xC3\xA9\xC3\xA9", 0), 0u);
}
