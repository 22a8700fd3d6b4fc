package dev.ess.client;

import io.grpc.ChannelCredentials;
import io.grpc.InsecureChannelCredentials;
import io.grpc.ManagedChannel;
import io.grpc.TlsChannelCredentials;
import io.netty.channel.ChannelOption;
import io.netty.channel.EventLoopGroup;
import io.netty.channel.MultiThreadIoEventLoopGroup;
import io.netty.channel.epoll.Epoll;
import io.netty.channel.epoll.EpollDomainSocketChannel;
import io.netty.channel.epoll.EpollIoHandler;
import io.netty.channel.unix.DomainSocketAddress;
import io.netty.util.concurrent.DefaultThreadFactory;
import java.io.File;
import java.io.IOException;
import java.net.URI;
import java.util.concurrent.TimeUnit;

/**
 * The client's gRPC channel: "unix:PATH" over Netty's epoll Unix domain sockets (grpc-netty),
 * anything else ("HOST:PORT", "dns:///HOST:PORT") over TCP with grpc-netty-shaded.
 *
 * <p>Callbacks run on the network thread (directExecutor: no hand-off on the hot path; the
 * client's own callbacks never block). gRPC's retries are off: no message of the long-lived
 * stream is buffered for a replay, and the client replaces a failed stream itself.
 */
final class Channels {
  /** A channel and what must be shut down with it. */
  record Made(ManagedChannel channel, EventLoopGroup group) {
    void shutdown() {
      channel.shutdownNow();
      try {
        channel.awaitTermination(1, TimeUnit.SECONDS);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      if (group != null) {
        group.shutdownGracefully(0, 1, TimeUnit.SECONDS);
      }
    }
  }

  private Channels() {}

  /** The Unix socket path of a "unix:PATH" (or "unix:///PATH") target, or null. */
  static String unixPath(String target) {
    if (!target.startsWith("unix:")) {
      return null;
    }
    String path = target.substring("unix:".length());
    if (path.startsWith("//")) { // unix:///abs/path
      path = path.substring(2);
    }
    if (path.isEmpty()) {
      throw new IllegalArgumentException("target \"" + target + "\" has no socket path");
    }
    return path;
  }

  /**
   * Refuses a TCP target whose port is out of range. grpc-java's DNS resolver takes it, then
   * throws in its own executor thread when it resolves, where no caller hears of it: every
   * check waits out its deadline (a port that is no number it refuses at build, as here).
   */
  static void checkPort(String target) {
    // "dns:///h:p" as "h:p", and "h:p/" too (the resolver reads what ends in "/" whole).
    String trimmed = target.replaceFirst("/+$", "");
    String name = trimmed.substring(trimmed.lastIndexOf('/') + 1);
    int port;
    try {
      port = URI.create("//" + name).getPort(); // as the DNS resolver reads it
    } catch (IllegalArgumentException e) {
      return; // not a DNS name: gRPC's to refuse
    }
    if (port > 65535) {
      throw new IllegalArgumentException("target \"" + target + "\": port out of range");
    }
  }

  static ChannelCredentials credentials(File ca, File cert, File key) {
    if ((cert == null) != (key == null)) {
      throw new IllegalArgumentException(
          "a TLS client certificate needs both its certificate and key files");
    }
    TlsChannelCredentials.Builder tls = TlsChannelCredentials.newBuilder();
    try {
      if (ca != null) {
        tls.trustManager(ca);
      }
      if (cert != null) {
        tls.keyManager(cert, key);
      }
    } catch (IOException e) {
      throw new IllegalArgumentException("TLS files: " + e.getMessage(), e);
    }
    return tls.build();
  }

  static Made make(String target, ChannelCredentials credentials, String authority) {
    if (credentials == null) {
      credentials = InsecureChannelCredentials.create();
    }
    String path = unixPath(target);
    if (path != null) {
      if (!Epoll.isAvailable()) {
        throw new IllegalArgumentException("unix: targets need Netty's epoll transport (Linux"
            + " x86_64): " + Epoll.unavailabilityCause());
      }
      EventLoopGroup group = new MultiThreadIoEventLoopGroup(
          1, new DefaultThreadFactory("ess-uds", true), EpollIoHandler.newFactory());
      try {
        ManagedChannel channel = io.grpc.netty.NettyChannelBuilder
            .forAddress(new DomainSocketAddress(path), credentials)
            .channelType(EpollDomainSocketChannel.class)
            .eventLoopGroup(group)
            // grpc-netty sets SO_KEEPALIVE, which a Unix socket has not (Netty warns): unset.
            .withOption(ChannelOption.SO_KEEPALIVE, null)
            .overrideAuthority(authority != null ? authority : "localhost")
            .disableRetry()
            .directExecutor()
            .userAgent(GuardClient.USER_AGENT)
            .build();
        return new Made(channel, group);
      } catch (RuntimeException e) {
        group.shutdownGracefully(0, 0, TimeUnit.SECONDS);
        throw e;
      }
    }
    checkPort(target);
    io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder builder =
        io.grpc.netty.shaded.io.grpc.netty.NettyChannelBuilder.forTarget(target, credentials)
            .disableRetry()
            .directExecutor()
            .userAgent(GuardClient.USER_AGENT);
    if (authority != null) {
      builder.overrideAuthority(authority);
    }
    return new Made(builder.build(), null);
  }
}
