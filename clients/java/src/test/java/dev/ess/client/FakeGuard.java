package dev.ess.client;

import dev.ess.v1.CheckOrderRequest;
import dev.ess.v1.CheckOrderResponse;
import dev.ess.v1.CheckOrderStreamRequest;
import dev.ess.v1.CheckOrderStreamResponse;
import dev.ess.v1.DecisionReason;
import dev.ess.v1.GuardServiceGrpc;
import dev.ess.v1.HeartbeatRequest;
import dev.ess.v1.HeartbeatResponse;
import dev.ess.v1.ReportFillRequest;
import dev.ess.v1.ReportFillResponse;
import dev.ess.v1.ReportOrderUpdateRequest;
import dev.ess.v1.ReportOrderUpdateResponse;
import dev.ess.v1.State;
import dev.ess.v1.SyncPositionsRequest;
import dev.ess.v1.SyncPositionsResponse;
import io.grpc.ForwardingServerCall;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.ServerCall;
import io.grpc.ServerCallHandler;
import io.grpc.ServerInterceptor;
import io.grpc.ServerInterceptors;
import io.grpc.Status;
import io.grpc.inprocess.InProcessChannelBuilder;
import io.grpc.inprocess.InProcessServerBuilder;
import io.grpc.stub.StreamObserver;
import java.io.IOException;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.LinkedBlockingQueue;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.Function;

/**
 * An in-process fake sidecar whose answers each test programs: {@link #stream} decides what
 * to do with each CheckOrderStream request (answer, answer wrongly, hold, fail the stream).
 * Like the real sidecar it sends a stream's headers as soon as the stream starts.
 */
final class FakeGuard extends GuardServiceGrpc.GuardServiceImplBase {
  /** What the fake does with one stream request. */
  interface StreamBehavior {
    void on(CheckOrderStreamRequest request, StreamObserver<CheckOrderStreamResponse> out);
  }

  /** A held stream request, to be answered (or not) later. */
  record Held(CheckOrderStreamRequest request, StreamObserver<CheckOrderStreamResponse> out) {
    void allow() {
      synchronized (out) {
        out.onNext(allowed(request));
      }
    }
  }

  final String name = InProcessServerBuilder.generateName();
  volatile StreamBehavior stream = FakeGuard::allow;
  volatile Function<CheckOrderRequest, CheckOrderResponse> unary =
      request -> decision(true, DecisionReason.DECISION_REASON_ALLOWED, "d-" + request.getClientOrderId());
  final AtomicInteger streams = new AtomicInteger();
  final LinkedBlockingQueue<Held> held = new LinkedBlockingQueue<>();
  final List<CheckOrderStreamRequest> streamRequests = new CopyOnWriteArrayList<>();
  final List<String> authorizations = new CopyOnWriteArrayList<>();
  final LinkedBlockingQueue<Object> calls = new LinkedBlockingQueue<>();
  /** How long to hold each heartbeat's answer, in turn (then none). */
  final LinkedBlockingQueue<Duration> heartbeatDelays = new LinkedBlockingQueue<>();
  private Server server;

  FakeGuard start() throws IOException {
    server = InProcessServerBuilder.forName(name).directExecutor()
        .addService(ServerInterceptors.intercept(this, new EarlyHeaders()))
        .build().start();
    return this;
  }

  void stop() {
    if (server != null) {
      server.shutdownNow();
      server = null;
    }
  }

  ManagedChannel channel() {
    return InProcessChannelBuilder.forName(name).directExecutor().build();
  }

  // ---- Answers. ----

  static CheckOrderResponse decision(boolean allowed, DecisionReason reason, String decisionId) {
    return CheckOrderResponse.newBuilder().setAllowed(allowed).setReason(reason)
        .setDecisionId(decisionId).setStateVersion(7).setMessage("fake").build();
  }

  static CheckOrderStreamResponse allowed(CheckOrderStreamRequest request) {
    return CheckOrderStreamResponse.newBuilder().setRequestId(request.getRequestId())
        .setDecision(decision(true, DecisionReason.DECISION_REASON_ALLOWED,
            "d-" + request.getOrder().getClientOrderId()))
        .build();
  }

  static void allow(CheckOrderStreamRequest request, StreamObserver<CheckOrderStreamResponse> out) {
    out.onNext(allowed(request));
  }

  /** Answers every request with this decision. */
  static StreamBehavior answering(CheckOrderResponse decision) {
    return (request, out) -> out.onNext(CheckOrderStreamResponse.newBuilder()
        .setRequestId(request.getRequestId()).setDecision(decision).build());
  }

  /** Holds every request (no answer) until the test answers it. */
  StreamBehavior holding() {
    return (request, out) -> held.add(new Held(request, out));
  }

  // ---- The service. ----

  @Override
  public StreamObserver<CheckOrderStreamRequest> checkOrderStream(
      StreamObserver<CheckOrderStreamResponse> out) {
    streams.incrementAndGet();
    return new StreamObserver<>() {
      @Override
      public void onNext(CheckOrderStreamRequest request) {
        streamRequests.add(request);
        synchronized (out) {
          stream.on(request, out);
        }
      }

      @Override
      public void onError(Throwable t) {}

      @Override
      public void onCompleted() {
        out.onCompleted();
      }
    };
  }

  @Override
  public void checkOrder(CheckOrderRequest request, StreamObserver<CheckOrderResponse> out) {
    calls.add(request);
    try {
      out.onNext(unary.apply(request));
      out.onCompleted();
    } catch (RuntimeException e) {
      out.onError(e instanceof io.grpc.StatusRuntimeException ? e
          : Status.INTERNAL.withDescription(e.toString()).asRuntimeException());
    }
  }

  @Override
  public void reportFill(ReportFillRequest request, StreamObserver<ReportFillResponse> out) {
    calls.add(request);
    out.onNext(ReportFillResponse.newBuilder().setPosition(request.getQuantity()).build());
    out.onCompleted();
  }

  @Override
  public void reportOrderUpdate(ReportOrderUpdateRequest request,
      StreamObserver<ReportOrderUpdateResponse> out) {
    calls.add(request);
    out.onNext(ReportOrderUpdateResponse.newBuilder().setKnown(true).build());
    out.onCompleted();
  }

  @Override
  public void syncPositions(SyncPositionsRequest request,
      StreamObserver<SyncPositionsResponse> out) {
    calls.add(request);
    out.onNext(SyncPositionsResponse.newBuilder().setPositions(request.getPositionsCount())
        .setWorkingOrders(request.getOpenOrdersCount()).build());
    out.onCompleted();
  }

  @Override
  public void heartbeat(HeartbeatRequest request, StreamObserver<HeartbeatResponse> out) {
    calls.add(request);
    Duration delay = heartbeatDelays.poll();
    Runnable answer = () -> {
      out.onNext(HeartbeatResponse.newBuilder().setState(State.STATE_ARMED).build());
      out.onCompleted();
    };
    if (delay == null) {
      answer.run();
    } else {
      CompletableFuture.runAsync(answer,
          CompletableFuture.delayedExecutor(delay.toNanos(), TimeUnit.NANOSECONDS));
    }
  }

  /** Sends every call's headers at once, as the sidecar does, and records the token. */
  private final class EarlyHeaders implements ServerInterceptor {
    @Override
    public <Q, A> ServerCall.Listener<Q> interceptCall(ServerCall<Q, A> call, Metadata headers,
        ServerCallHandler<Q, A> next) {
      String authorization =
          headers.get(Metadata.Key.of("authorization", Metadata.ASCII_STRING_MARSHALLER));
      authorizations.add(authorization == null ? "" : authorization);
      ServerCall<Q, A> once = new ForwardingServerCall.SimpleForwardingServerCall<>(call) {
        private boolean sent;

        @Override
        public synchronized void sendHeaders(Metadata metadata) {
          if (!sent) {
            sent = true;
            super.sendHeaders(metadata);
          }
        }
      };
      once.sendHeaders(new Metadata());
      return next.startCall(once, headers);
    }
  }
}
