// Review 54a: the heartbeat's `alive` (beats withheld while the trading loop is not alive),
// and a token Client refuses (a byte outside 0x20-0x7E).
#include <atomic>
#include <deque>
#include <future>
#include <stdexcept>

#include "fake_guard.h"

namespace ess_test {
namespace {

// An `alive` that answers, beat by beat, what the test feeds it: "yes", "no" or "throw"
// (closed: no). It blocks until fed, which holds the beats meanwhile.
class Script {
 public:
  void Feed(const std::string& answer) {
    std::lock_guard<std::mutex> lock(mu_);
    answers_.push_back(answer);
    cv_.notify_all();
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  // Waits up to `within` until `alive` has been asked n times.
  bool AwaitAsked(int n, std::chrono::milliseconds within) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, within, [&] { return asked_ >= n; });
  }
  std::function<bool()> Alive() {
    return [this] {
      std::unique_lock<std::mutex> lock(mu_);
      ++asked_;
      cv_.notify_all();
      cv_.wait(lock, [this] { return closed_ || !answers_.empty(); });
      if (answers_.empty()) {
        return false;
      }
      const std::string answer = answers_.front();
      answers_.pop_front();
      if (answer == "throw") {
        throw std::runtime_error("the loop's state is corrupt");
      }
      return answer == "yes";
    };
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::string> answers_;
  bool closed_ = false;
  int asked_ = 0;
};

// A log sink that keeps its lines.
struct Lines {
  std::mutex mu;
  std::vector<std::string> lines;
  int Count(const std::string& part) {
    std::lock_guard<std::mutex> lock(mu);
    int n = 0;
    for (const auto& line : lines) {
      n += line.find(part) != std::string::npos ? 1 : 0;
    }
    return n;
  }
};

// Closes the script when the test leaves, even through a failed ASSERT: the heartbeater,
// destroyed first, joins a thread that would otherwise wait in `alive` for good.
class ClosesOnExit {
 public:
  explicit ClosesOnExit(Script& script) : script_(script) {}
  ~ClosesOnExit() { script_.Close(); }

 private:
  Script& script_;
};

// A tick's beat has the interval as its deadline, so that beats never pile up: the interval
// is long enough for a beat on a loaded 2-core CI machine (1 ms missed some there).
ess::HeartbeatConfig Scripted(Script& script) {
  ess::HeartbeatConfig config;
  config.executor_id = "exec-1";
  config.scope = *ess::ParseScope("STRATEGY:momo");
  config.ttl = 2s;
  config.interval = 200ms;
  config.alive = script.Alive();
  return config;
}

// The heartbeat beat on while the executor's trading loop was dead, so only the death of
// the whole process tripped the scope. A beat is now sent only while `alive` says true.
TEST(Heartbeat, IsWithheldWhileNotAliveAndResumes) {
  auto lines = std::make_shared<Lines>();
  ess::Options options;
  options.log_sink = [lines](std::string_view line) {
    std::lock_guard<std::mutex> lock(lines->mu);
    lines->lines.emplace_back(line);
  };
  Harness h(Allow, options);
  Script script;
  script.Feed("yes");  // the first beat, in StartHeartbeat
  grpc::Status status;
  auto heartbeater = h.client->StartHeartbeat(Scripted(script), &status);
  const ClosesOnExit closing(script);
  ASSERT_NE(heartbeater, nullptr) << status.error_message();
  for (const char* answer : {"no", "throw", "no", "yes"}) {
    script.Feed(answer);
  }
  // Only "yes" beats, after the three ticks before it have finished.
  ASSERT_TRUE(h.fake.AwaitHeartbeats(2, 5s));
  EXPECT_EQ(heartbeater->skipped(), 3u);
  EXPECT_EQ(h.fake.Copy(h.fake.heartbeats).size(), 2u);
  EXPECT_EQ(lines->Count("withheld"), 1);
  EXPECT_EQ(lines->Count("resumed"), 1);
  EXPECT_EQ(lines->Count("threw (not alive): the loop's state is corrupt"), 1);
  script.Close();  // not alive from now on, and never blocking: Stop can join the thread
  EXPECT_TRUE(heartbeater->Stop().ok());
}

// Not alive at the start: nothing would register the executor, so nothing could trip its
// scope; StartHeartbeat refuses, and sends nothing.
TEST(Heartbeat, NotAliveAtTheStartIsRefusedAndSendsNothing) {
  Harness h;
  for (const char* answer : {"no", "throw"}) {
    Script script;
    script.Feed(answer);
    grpc::Status status;
    EXPECT_EQ(h.client->StartHeartbeat(Scripted(script), &status), nullptr) << answer;
    EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION) << answer;
  }
  EXPECT_TRUE(h.fake.Copy(h.fake.heartbeats).empty());
}

// A heartbeat every millisecond whose `alive` runs `act` on the first tick, on the
// heartbeat's own thread (the first `alive` is StartHeartbeat's, on the caller's).
ess::HeartbeatConfig OnFirstTick(std::function<void()> act) {
  ess::HeartbeatConfig config;
  config.executor_id = "exec-1";
  config.scope = *ess::ParseScope("STRATEGY:momo");
  config.ttl = 1s;
  config.interval = 1ms;
  config.alive = [asked = std::make_shared<std::atomic<int>>(0), act = std::move(act)] {
    if (++*asked == 2) {
      act();
    }
    return true;
  };
  return config;
}

// Review 54g: Close joined each heartbeat's thread, so a Close from the heartbeat's own
// `alive` joined itself (std::system_error), and a heartbeater destroyed after it left its
// thread joinable (std::terminate). Close now only tells it to end.
TEST(Heartbeat, CloseFromItsOwnAliveEndsItCleanly) {
  for (const bool destroy : {false, true}) {
    Harness h;
    std::promise<void> closed;
    const auto config = OnFirstTick([&] {
      h.client->Close();
      closed.set_value();
    });
    grpc::Status status;
    auto heartbeater = h.client->StartHeartbeat(config, &status);
    ASSERT_NE(heartbeater, nullptr) << status.error_message();
    ASSERT_EQ(closed.get_future().wait_for(10s), std::future_status::ready);
    if (destroy) {
      heartbeater.reset();  // joins the thread, which ends once `alive` returns
    } else {
      EXPECT_TRUE(heartbeater->Stop().ok());
    }
    for (const auto& beat : h.fake.Copy(h.fake.heartbeats)) {
      EXPECT_FALSE(beat.deregister());
    }
  }
}

// Review 54h: a Stop from the heartbeat's own `alive` while another thread's Stop joined
// the heartbeat's thread waited for that Stop, which waited for it: neither returned.
TEST(Heartbeat, StopFromItsOwnAliveWhileAnotherStopJoinsItReturns) {
  Harness h;
  std::promise<void> stopping;
  auto main_stops = stopping.get_future().share();
  ess::Heartbeater* self = nullptr;
  const auto config = OnFirstTick([&] {
    main_stops.wait();
    EXPECT_TRUE(self->Stop().ok());
  });
  grpc::Status status;
  auto heartbeater = h.client->StartHeartbeat(config, &status);
  ASSERT_NE(heartbeater, nullptr) << status.error_message();
  self = heartbeater.get();
  auto stopped = std::async(std::launch::async, [&] { return heartbeater->Stop(); });
  stopping.set_value();
  ASSERT_EQ(stopped.wait_for(10s), std::future_status::ready)
      << "the two Stops wait for each other";
  EXPECT_TRUE(stopped.get().ok());
  int deregistrations = 0;
  for (const auto& beat : h.fake.Copy(h.fake.heartbeats)) {
    deregistrations += beat.deregister() ? 1 : 0;
  }
  EXPECT_EQ(deregistrations, 1);
}

// Review 54i: after Close, two threads' Stops both joined the heartbeat's one thread, and
// one of them waited for good (in 1 to 7 rounds of 40).
TEST(Heartbeat, TwoStopsAfterCloseBothReturn) {
  for (int round = 0; round < 20; ++round) {
    Harness h;
    grpc::Status status;
    auto heartbeater = h.client->StartHeartbeat(OnFirstTick([] {}), &status);
    ASSERT_NE(heartbeater, nullptr) << status.error_message();
    h.client->Close();
    auto first = std::async(std::launch::async, [&] { return heartbeater->Stop(); });
    auto second = std::async(std::launch::async, [&] { return heartbeater->Stop(); });
    ASSERT_EQ(first.wait_for(10s), std::future_status::ready) << "round " << round;
    ASSERT_EQ(second.wait_for(10s), std::future_status::ready) << "round " << round;
    EXPECT_TRUE(first.get().ok());
    EXPECT_TRUE(second.get().ok());
  }
}

// Review 54e: a closed client's heartbeats beat on, and a new one could be started, so its
// scope never tripped. Close now ends them (a tick in progress sends nothing after it)
// without deregistering; Stop then sends nothing, and nothing more is started.
TEST(Heartbeat, CloseEndsTheBeatsWithoutDeregistering) {
  Harness h;
  Script script;
  script.Feed("yes");  // the first beat, in StartHeartbeat
  script.Feed("yes");  // the first tick's
  grpc::Status status;
  auto heartbeater = h.client->StartHeartbeat(Scripted(script), &status);
  const ClosesOnExit closing(script);
  ASSERT_NE(heartbeater, nullptr) << status.error_message();
  ASSERT_TRUE(h.fake.AwaitHeartbeats(2, 5s));
  ASSERT_TRUE(script.AwaitAsked(3, 5s));  // the second tick waits in `alive`
  std::thread closer([&h] { h.client->Close(); });
  const auto scope = *ess::ParseScope("STRATEGY:momo");
  const auto until = std::chrono::steady_clock::now() + 5s;
  std::size_t polls = 0;  // the test's own beats, sent until the client is closed
  for (; h.client->Heartbeat("exec-1", scope, 1000).ok(); ++polls) {
    ASSERT_LT(std::chrono::steady_clock::now(), until);
  }
  script.Feed("yes");  // the tick in progress goes on, and must not beat
  closer.join();
  EXPECT_TRUE(heartbeater->Stop().ok());
  const auto beats = h.fake.Copy(h.fake.heartbeats);
  EXPECT_EQ(beats.size(), 2 + polls);
  for (const auto& beat : beats) {
    EXPECT_FALSE(beat.deregister());
  }
  EXPECT_EQ(h.client->StartHeartbeat(Scripted(script), &status), nullptr);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

// A token with a control byte passed, and gRPC core aborted the process (SIGABRT) on the
// first call. Review 54e: Python's rule: the space, tab, CR and LF around it are dropped
// first (a CRLF file's "tok\r" is "tok", see client_test), then a byte outside 0x20-0x7E is
// refused, naming its position.
TEST(Options, TokenOutsidePrintableAsciiThrowsWithoutPrintingIt) {
  const std::vector<std::pair<std::string, std::string>> tokens = {
      {"zq\r9", "byte 2 "},     {"\tzq\n9", "byte 3 "},    {"z\tq9", "byte 1 "},
      {std::string("z\0q9", 4), "byte 1 "}, {"zq9\x7f", "byte 3 "}, {"zq9\xc3\xb6", "byte 3 "}};
  for (const auto& [token, at] : tokens) {
    ess::Options options;
    options.token = token;
    try {
      ess::Client client("localhost:1", options);
      ADD_FAILURE() << "a token with a byte outside 0x20-0x7E was taken";
    } catch (const ess::InvalidToken& error) {
      const std::string what = error.what();
      EXPECT_NE(what.find(at), std::string::npos) << what;
      EXPECT_EQ(what.find("q9"), std::string::npos) << "the token is printed: " << what;
    }
  }
  ess::Options printable;
  printable.token = " printable ~ASCII! ";
  EXPECT_NO_THROW(ess::Client("localhost:1", printable));
}

}  // namespace
}  // namespace ess_test
