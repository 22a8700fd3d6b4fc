// The rules that turn answers and statuses into verdicts, and the stream's id matching,
// without a network.
#include <gtest/gtest.h>

#include "fake_guard.h"
#include "internal.h"

namespace ess_test {
namespace {

using ess::Cause;
using ess::internal::CheckStream;
using ess::internal::VerdictFromAnswer;
using ess::internal::VerdictFromDecision;

v1::CheckOrderResponse Of(bool allowed, int reason) {
  v1::CheckOrderResponse decision;
  decision.set_allowed(allowed);
  decision.set_reason(static_cast<v1::DecisionReason>(reason));
  return decision;
}

TEST(Verdict, OnlyASelfConsistentDecisionIsTrusted) {
  EXPECT_TRUE(VerdictFromDecision(Of(true, v1::DECISION_REASON_ALLOWED)).allowed);
  const auto denied = VerdictFromDecision(Of(false, v1::DECISION_REASON_ORDER_RATE));
  EXPECT_FALSE(denied.allowed);
  EXPECT_FALSE(denied.failed_closed());
  EXPECT_EQ(denied.reason_name(), "ORDER_RATE");
  for (int reason = 2; reason <= 17; ++reason) {
    EXPECT_EQ(VerdictFromDecision(Of(true, reason)).cause, Cause::kMalformed) << reason;
    EXPECT_EQ(VerdictFromDecision(Of(false, reason)).cause, Cause::kNone) << reason;
  }
  EXPECT_EQ(VerdictFromDecision(Of(false, v1::DECISION_REASON_ALLOWED)).cause, Cause::kMalformed);
  for (int reason : {0, 18, 99, -1}) {
    EXPECT_EQ(VerdictFromDecision(Of(true, reason)).cause, Cause::kMalformed) << reason;
    EXPECT_EQ(VerdictFromDecision(Of(false, reason)).cause, Cause::kMalformed) << reason;
  }
}

TEST(Verdict, AnswerWithErrorOrNothing) {
  v1::CheckOrderStreamResponse error;
  error.mutable_error()->set_field("order.side");
  const auto rejected = VerdictFromAnswer(error);
  EXPECT_EQ(rejected.cause, Cause::kRequestError);
  EXPECT_EQ(rejected.field, "order.side");
  EXPECT_EQ(rejected.message, "the sidecar rejected the order");
  EXPECT_EQ(VerdictFromAnswer(v1::CheckOrderStreamResponse()).cause, Cause::kMalformed);
}

TEST(Verdict, StatusCodesAreCauses) {
  using ess::internal::FailureOf;
  EXPECT_EQ(FailureOf(grpc::Status::OK).cause, Cause::kStreamBroken);
  EXPECT_EQ(FailureOf(grpc::Status(grpc::StatusCode::UNAVAILABLE, "")).cause,
            Cause::kUnavailable);
  EXPECT_EQ(FailureOf(grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")).cause,
            Cause::kDeadline);
  EXPECT_EQ(FailureOf(grpc::Status(grpc::StatusCode::CANCELLED, "")).cause,
            Cause::kStreamBroken);
  EXPECT_EQ(FailureOf(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "")).cause,
            Cause::kRequestError);
  const auto refused = FailureOf(grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "role"));
  EXPECT_EQ(refused.cause, Cause::kRefused);
  EXPECT_EQ(refused.message, "PERMISSION_DENIED: role");
}

TEST(Verdict, Names) {
  EXPECT_EQ(ess::CauseName(Cause::kStreamBroken), "stream_broken");
  EXPECT_EQ(ess::Causes().size(), ess::kNumCauses - 1);
  ess::Verdict failed;
  failed.cause = Cause::kDeadline;
  EXPECT_EQ(failed.reason_name(), "CLIENT_FAIL_CLOSED");
  EXPECT_EQ(ess::internal::FormatDuration(std::chrono::microseconds(5000)), "5ms");
  EXPECT_EQ(ess::internal::FormatDuration(std::chrono::microseconds(2500)), "2.5ms");
  EXPECT_EQ(ess::internal::FormatDuration(std::chrono::microseconds(800)), "800us");
}

TEST(Verdict, ScopesAndSides) {
  EXPECT_EQ(ess::ScopeString(*ess::ParseScope("global")), "GLOBAL");
  EXPECT_EQ(ess::ScopeString(*ess::ParseScope("strategy:momo")), "STRATEGY:momo");
  EXPECT_EQ(ess::ParseScope("ACCOUNT:acc-1")->kind(), v1::SCOPE_KIND_ACCOUNT);
  EXPECT_FALSE(ess::ParseScope("ACCOUNT:"));
  EXPECT_FALSE(ess::ParseScope("DESK:x"));
  EXPECT_EQ(ess::ParseSide("buy"), ess::kBuy);
  EXPECT_EQ(ess::ParseSide("SIDE_SELL"), ess::kSell);
  EXPECT_FALSE(ess::ParseSide("short"));
}

v1::CheckOrderStreamResponse AllowedAnswer(std::uint64_t id) {
  return Decision(id, Of(true, v1::DECISION_REASON_ALLOWED));
}

TEST(Stream, AnswersMatchTheOldestRequest) {
  CheckStream stream(std::chrono::milliseconds(1000));
  ess::Verdict failure;
  auto first = stream.Send(1, v1::CheckOrderRequest(), &failure);
  auto second = stream.Send(2, v1::CheckOrderRequest(), &failure);
  ASSERT_TRUE(first && second);
  EXPECT_TRUE(stream.OnAnswer(AllowedAnswer(1)));
  const auto now = std::chrono::steady_clock::now();
  EXPECT_TRUE(first->WaitUntil(now)->allowed);
  EXPECT_FALSE(second->WaitUntil(now)) << "not answered yet";
  EXPECT_TRUE(stream.OnAnswer(AllowedAnswer(2)));
  EXPECT_TRUE(second->WaitUntil(now)->allowed);
  EXPECT_TRUE(stream.answered());
}

TEST(Stream, AWrongIdBreaksTheStreamAndDeniesEveryCheckOnIt) {
  CheckStream stream(std::chrono::milliseconds(1000));
  ess::Verdict failure;
  auto first = stream.Send(1, v1::CheckOrderRequest(), &failure);
  auto second = stream.Send(2, v1::CheckOrderRequest(), &failure);
  EXPECT_FALSE(stream.OnAnswer(AllowedAnswer(2)));  // 1 expected
  EXPECT_TRUE(stream.broken());
  const auto now = std::chrono::steady_clock::now();
  EXPECT_EQ(first->WaitUntil(now)->cause, Cause::kMalformed);
  EXPECT_EQ(second->WaitUntil(now)->cause, Cause::kMalformed);
  // Nothing more is sent on it, nor believed from it.
  EXPECT_EQ(stream.Send(3, v1::CheckOrderRequest(), &failure), nullptr);
  EXPECT_EQ(failure.cause, Cause::kMalformed);
  EXPECT_FALSE(stream.OnAnswer(AllowedAnswer(3)));
}

TEST(Stream, AnAnswerNobodyAskedForBreaksTheStream) {
  CheckStream stream(std::chrono::milliseconds(1000));
  EXPECT_FALSE(stream.OnAnswer(AllowedAnswer(1)));
  EXPECT_TRUE(stream.broken());
}

TEST(Stream, ALateAnswerIsJitterAStallBreaksIt) {
  CheckStream stream(std::chrono::milliseconds(50));
  ess::Verdict failure;
  auto first = stream.Send(1, v1::CheckOrderRequest(), &failure);
  stream.Expired();
  EXPECT_FALSE(stream.broken());
  std::this_thread::sleep_for(std::chrono::milliseconds(60));
  stream.Expired();
  EXPECT_TRUE(stream.broken());
  EXPECT_EQ(first->WaitUntil(std::chrono::steady_clock::now())->cause, Cause::kDeadline);
}

TEST(Stream, AVerdictResolvedAfterTheDeadlineIsNotTaken) {
  ess::internal::Pending late(1, std::chrono::steady_clock::now());
  const auto deadline = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  late.Resolve(VerdictFromAnswer(AllowedAnswer(1)));
  EXPECT_FALSE(late.WaitUntil(deadline)) << "there, but it came after the deadline";
  // One resolved in time is taken, however late the wait for it ends.
  ess::internal::Pending on_time(2, std::chrono::steady_clock::now());
  on_time.Resolve(VerdictFromAnswer(AllowedAnswer(2)));
  std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(on_time.WaitUntil(std::chrono::steady_clock::now())->allowed);
}

TEST(Stream, TheQueueIsBounded) {
  CheckStream stream(std::chrono::milliseconds(1000));
  ess::Verdict failure;
  for (std::size_t i = 0; i < ess::Client::kMaxQueued; ++i) {
    ASSERT_NE(stream.Send(i + 1, v1::CheckOrderRequest(), &failure), nullptr);
  }
  EXPECT_EQ(stream.Send(0, v1::CheckOrderRequest(), &failure), nullptr);
  EXPECT_EQ(failure.cause, Cause::kClientError);
}

}  // namespace
}  // namespace ess_test
