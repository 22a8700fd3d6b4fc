package dev.ess.client;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertSame;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ess.v1.TriggerRequest;
import org.junit.jupiter.api.Test;

/** A stop is never refused for what comes with it: its reason is made sendable. */
class TriggerTest {
  @Test
  void loneSurrogatesBecomeReplacementCharacters() {
    TriggerRequest request = TriggerRequest.newBuilder().setReason("stop \uD800 now \uD83D\uDE00")
        .setModeValue(99).build();
    TriggerRequest sent = GuardClient.sendableTrigger(request);
    assertEquals("stop \uFFFD now \uD83D\uDE00", sent.getReason());
    assertEquals(99, sent.getModeValue());
  }

  @Test
  void aHugeReasonIsCutToTheSidecarsBound() {
    String huge = "\uD83D\uDE00".repeat(3 << 20);
    String sent = GuardClient.sendableTrigger(TriggerRequest.newBuilder().setReason(huge).build())
        .getReason();
    assertTrue(sent.codePointCount(0, sent.length()) <= GuardClient.MAX_REASON_CHARS, sent);
    assertTrue(sent.startsWith("\uD83D\uDE00"), sent);
  }

  @Test
  void aValidReasonIsSentAsItIs() {
    TriggerRequest request = TriggerRequest.newBuilder().setReason("fine").build();
    assertSame(request, GuardClient.sendableTrigger(request));
  }
}
