// The bearer token rule of every client (review 54e): Python's, the sidecar's and essctl's.

/** A token with a byte outside printable ASCII (0x20-0x7E) once stripped of the space, tab,
 * CR and LF around it. Its message says where, never the token (grpc-js's own error printed
 * it, and ess-check blamed --target). */
export class InvalidTokenError extends Error {
  override readonly name = "InvalidTokenError";
}

const SPACE = new Set([0x20, 0x09, 0x0d, 0x0a]);

/** The token as sent: stripped of space, tab, CR and LF at both ends (a CRLF file's "tok\r"
 * is "tok"), "" (no token) when nothing is left; InvalidTokenError for a byte outside
 * 0x20-0x7E left inside, named by its position in the token as given (UTF-8). */
export function validToken(given: string | undefined): string {
  const bytes = Buffer.from(given ?? "", "utf8");
  let start = 0;
  let end = bytes.length;
  while (start < end && SPACE.has(bytes[start]!)) start += 1;
  while (end > start && SPACE.has(bytes[end - 1]!)) end -= 1;
  for (let i = start; i < end; i += 1) {
    const b = bytes[i]!;
    if (b < 0x20 || b > 0x7e) {
      const what = b < 0x80
        ? `the control character 0x${b.toString(16).padStart(2, "0")}`
        : "not ASCII";
      throw new InvalidTokenError(
        `ess: the token's byte ${i} is ${what}; only 0x20-0x7E may be sent`);
    }
  }
  return bytes.toString("latin1", start, end);
}
