package dev.ess.client;

/**
 * A token with a byte outside printable ASCII (0x20-0x7E) once stripped of the space, tab, CR
 * and LF around it (review 54e: gRPC-Java dropped such a header, logging the whole token, and
 * the sidecar's denial said "no credentials"). Its message says where, never the token.
 */
public final class InvalidTokenException extends IllegalArgumentException {
  private static final long serialVersionUID = 1L;

  private InvalidTokenException(String message) {
    super(message);
  }

  /**
   * The token as sent: stripped of space, tab, CR and LF at both ends, as by the sidecar,
   * essctl and every client (a CRLF file's "tok\r" is "tok"); "" (no token) for null.
   *
   * @throws InvalidTokenException a byte outside 0x20-0x7E left, named by its position in the
   *     token as given (UTF-8)
   */
  static String valid(String given) {
    if (given == null) {
      return "";
    }
    byte[] bytes = given.getBytes(java.nio.charset.StandardCharsets.UTF_8);
    int start = 0;
    int end = bytes.length;
    while (start < end && space(bytes[start])) {
      start++;
    }
    while (end > start && space(bytes[end - 1])) {
      end--;
    }
    for (int i = start; i < end; i++) {
      int b = bytes[i] & 0xff;
      if (b < 0x20 || b > 0x7e) {
        throw new InvalidTokenException("ess: the token's byte " + i
            + (b < 0x80 ? String.format(" is the control character 0x%02x", b) : " is not ASCII")
            + "; only 0x20-0x7E may be sent");
      }
    }
    return new String(bytes, start, end - start, java.nio.charset.StandardCharsets.US_ASCII);
  }

  private static boolean space(byte b) {
    return b == ' ' || b == '\t' || b == '\r' || b == '\n';
  }
}
