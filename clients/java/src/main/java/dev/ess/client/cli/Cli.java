package dev.ess.client.cli;

import com.google.common.net.InetAddresses;
import dev.ess.client.InvalidTokenException;
import dev.ess.client.Verdict;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * What ess-check, ess-smoke and ess-bench share: flag parsing with the usage exit code, and
 * the one line printed for a verdict.
 */
final class Cli {
  static final int EXIT_ALLOWED = 0;
  static final int EXIT_DENIED = 2;
  static final int EXIT_USAGE = 64; // EX_USAGE
  /** The longest deadline in ms: a longer one is a typo. */
  static final double MAX_DEADLINE_MS = 3_600_000;
  /** The shortest: a shorter one is a typo too, and 5e-324 is no deadline at all. */
  static final double MIN_DEADLINE_MS = 0.001;
  /** DNS's longest name. */
  private static final int MAX_HOST_CHARS = 253;
  /** sun_path holds 108 bytes with the NUL: a longer path never connects. */
  private static final int MAX_UNIX_PATH_BYTES = 107;
  /**
   * The longest number's text: it bounds every parser (review 52d: Go's misread one of 800
   * digits, 1e13 as a far smaller number, and allowed it).
   */
  static final int MAX_NUMBER_CHARS = 64;
  // The one grammar of every client's programs (tests/clients/smoke.py): parseDouble alone
  // takes "1d", "0x1p4" and " 1", numbers the operator did not write.
  private static final Pattern PLAIN_DECIMAL =
      Pattern.compile("[+]?([0-9]+(\\.[0-9]*)?|\\.[0-9]+)([eE][+-]?[0-9]+)?");
  // HOST (review 52d): a dotted quad, an RFC 1123 name (a numeric last label only as a dotted
  // quad: gRPC's resolvers read 127.1 and 2130706433 their own ways) or [IPv6].
  private static final String OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])";
  private static final Pattern IPV4 = Pattern.compile(OCTET + "(\\." + OCTET + "){3}");
  private static final Pattern LABEL =
      Pattern.compile("[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?");
  // Review 52e: a name ending in a number is an address to the URL standard (0x7f.1 reached
  // 127.0.0.1 in two clients), so only a dotted quad may end in one; review 53b: a last label
  // that starts with a digit (a.1b) java.net.URI refused, so a name's last label starts with
  // a letter (RFC 2396's toplabel), which covers both.
  private static final Pattern TOP_LABEL = Pattern.compile("[A-Za-z].*");
  private static final Pattern IPV6 = Pattern.compile("[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*");
  // PATH (review 52d): printable ASCII, none of %, ? and # (gRPC's URI syntax reached another
  // file elsewhere: q?x.sock as q); // only as ///abs (the clients read //host/x apart).
  private static final Pattern UNIX_PATH =
      Pattern.compile("(?!//)[!-~]([ -~]*[!-~])?|///[!-.0-~]([ -~]*[!-~])?");
  // ess-smoke's words: split on ASCII whitespace only, as every client's ess-smoke does.
  private static final Pattern SPACES = Pattern.compile("[ \\t\\n\\x0B\\f\\r]+");

  /** A usage error: the program prints the synopsis and the message, and exits 64. */
  static final class UsageError extends Exception {
    private static final long serialVersionUID = 1L;

    UsageError(String message) {
      super(message);
    }
  }

  private final String name;
  private final String synopsis;
  private final String about;
  private final Map<String, String> help = new LinkedHashMap<>();
  private final Map<String, String> defaults = new LinkedHashMap<>();
  private final Map<String, String> values = new LinkedHashMap<>();

  Cli(String name, String synopsis, String about) {
    this.name = name;
    this.synopsis = synopsis;
    this.about = about;
  }

  /** Declares --flag (taking a value), with its default (null: none). */
  Cli flag(String flag, String defaultValue, String description) {
    help.put(flag, description);
    if (defaultValue != null) {
      defaults.put(flag, defaultValue);
    }
    return this;
  }

  /**
   * Parses args: "--flag value", "--flag=value" (or one dash). -h / --help alone prints the
   * usage and exits 0; beside other arguments it is a usage error, as is an unknown,
   * repeated-without-value or missing required flag, or a stray argument.
   */
  void parse(String[] args, String... required) throws UsageError {
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      if (isHelp(arg)) {
        // Not 0 (ess-check's "allowed") beside other arguments, so that
        // `ess-check ... --help && send` sends nothing; alone, it is a plain question.
        for (String other : args) {
          if (!isHelp(other)) {
            throw new UsageError("--help given with other arguments: nothing was checked");
          }
        }
        printUsage(System.out);
        System.exit(0);
      }
      if (!arg.startsWith("-") || arg.equals("-") || arg.equals("--")) {
        throw new UsageError("unexpected argument \"" + arg + "\"");
      }
      String flag = arg.startsWith("--") ? arg.substring(2) : arg.substring(1);
      String value = null;
      int eq = flag.indexOf('=');
      if (eq >= 0) {
        value = flag.substring(eq + 1);
        flag = flag.substring(0, eq);
      }
      if (!help.containsKey(flag)) {
        throw new UsageError("unrecognized argument: --" + flag);
      }
      if (value == null) {
        if (i + 1 >= args.length) {
          throw new UsageError("argument --" + flag + ": expected one argument");
        }
        value = args[++i];
      }
      // Review 52d: the JVM reads argv's bytes that are not UTF-8 as U+FFFD, a value the
      // operator did not write (Go and C++ refuse the bytes themselves).
      if (value.indexOf('\uFFFD') >= 0) {
        throw new UsageError("argument --" + flag + ": not valid UTF-8 (U+FFFD): " + quoted(value));
      }
      values.put(flag, value);
    }
    List<String> missing = new ArrayList<>();
    for (String flag : required) {
      if (!values.containsKey(flag)) {
        missing.add("--" + flag);
      }
    }
    if (!missing.isEmpty()) {
      throw new UsageError("the following arguments are required: " + String.join(", ", missing));
    }
  }

  private static boolean isHelp(String arg) {
    return arg.equals("-h") || arg.equals("--help");
  }

  String get(String flag) {
    return values.getOrDefault(flag, defaults.get(flag));
  }

  /** A flag's value as a number &gt; 0. */
  double positive(String flag) throws UsageError {
    return positive("argument --" + flag, get(flag));
  }

  /** A plain decimal number &gt; 0 and finite. */
  static double positive(String what, String text) throws UsageError {
    if (text.length() > MAX_NUMBER_CHARS) {
      throw new UsageError(what + ": longer than " + MAX_NUMBER_CHARS + " characters");
    }
    if (!PLAIN_DECIMAL.matcher(text).matches()) {
      throw new UsageError(what + ": not a plain decimal number: " + quoted(text));
    }
    double value = Double.parseDouble(text);
    if (!(value > 0) || Double.isInfinite(value)) {
      throw new UsageError(what + ": must be a finite number > 0, got " + text);
    }
    return value;
  }

  /** A flag's value as a deadline in ms (see {@link #deadline(String, String)}). */
  Duration deadline(String flag) throws UsageError {
    return deadline("argument --" + flag, get(flag));
  }

  /** A deadline in ms: from {@link #MIN_DEADLINE_MS} to {@link #MAX_DEADLINE_MS}. */
  static Duration deadline(String what, String text) throws UsageError {
    double ms = positive(what, text);
    if (ms < MIN_DEADLINE_MS) {
      throw new UsageError(what + ": must be at least " + MIN_DEADLINE_MS + ", got " + text);
    }
    if (ms > MAX_DEADLINE_MS) {
      throw new UsageError(what + ": must be at most " + (long) MAX_DEADLINE_MS + ", got " + text);
    }
    return millis(ms);
  }

  /**
   * A flag's value, which must be a target (see {@link #isTarget}): a typo must not look like
   * an outage (a check that fails closed). Returned as gRPC is given it: HOST:PORT as
   * dns:///HOST:PORT, where gRPC would read a host that is one of its schemes as the scheme
   * (review 53b: "unix-abstract:1" reached the abstract Unix socket "1" in three clients).
   * A [IPv6] host, which no scheme reads, is left as it is: java.net.URI refuses a '[' in the
   * path of dns:///[::1]:1, and gRPC makes that URI of it itself.
   */
  String target(String flag) throws UsageError {
    String text = get(flag);
    if (text == null || !isTarget(text)) {
      throw new UsageError("argument --" + flag + ": expected HOST:PORT or unix:PATH, got "
          + quoted(text));
    }
    return text.startsWith("unix:") || text.startsWith("[") ? text : "dns:///" + text;
  }

  /**
   * Whether text is HOST:PORT (HOST see {@link #isHost}; PORT 1-65535) or unix:PATH (PATH 1-107
   * characters of printable ASCII, not led or ended by a space, none of %, ? and #, and //
   * only as ///abs).
   */
  static boolean isTarget(String text) {
    if (text.startsWith("unix:")) {
      String path = text.substring("unix:".length());
      return path.length() <= MAX_UNIX_PATH_BYTES && UNIX_PATH.matcher(path).matches()
          && path.chars().noneMatch(c -> c == '%' || c == '?' || c == '#');
    }
    int colon = text.lastIndexOf(':');
    if (colon < 1 || !isHost(text.substring(0, colon))) {
      return false;
    }
    String port = text.substring(colon + 1);
    return !port.isEmpty() && port.length() <= 5 && port.chars().allMatch(c -> c >= '0' && c <= '9')
        && Integer.parseInt(port) >= 1 && Integer.parseInt(port) <= 65535;
  }

  /**
   * A dotted quad, an RFC 1123 name of at most 253 characters (one trailing dot may end it;
   * its last label starting with a letter), or [IPv6] as Guava
   * reads it: never a DNS lookup.
   */
  static boolean isHost(String host) {
    if (host.startsWith("[")) {
      String inside = host.substring(1, host.length() - (host.endsWith("]") ? 1 : 0));
      return host.endsWith("]") && host.length() > 2 && IPV6.matcher(inside).matches()
          && InetAddresses.isInetAddress(inside);
    }
    if (IPV4.matcher(host).matches()) {
      return true;
    }
    String name = host.endsWith(".") ? host.substring(0, host.length() - 1) : host;
    String[] labels = name.split("\\.", -1);
    for (String label : labels) {
      if (!LABEL.matcher(label).matches()) {
        return false;
      }
    }
    return host.length() <= MAX_HOST_CHARS
        && TOP_LABEL.matcher(labels[labels.length - 1]).matches();
  }

  /** Control and line-separator characters: gRPC refuses some, a log line breaks on others. */
  private static boolean isControl(int c) {
    return c < 0x20 || c >= 0x7f && c <= 0x9f || c == 0x2028 || c == 0x2029;
  }

  /**
   * The usage error for a client the library refused to build: --token for a token it
   * refuses (review 54e; as Go's cli.Refused, Rust's and C++'s), else --target, the one other
   * flag it reads unchecked.
   */
  static UsageError refused(IllegalArgumentException e) {
    String flag = e instanceof InvalidTokenException ? "token" : "target";
    return new UsageError("argument --" + flag + ": " + quoted(e.getMessage()));
  }

  /**
   * text quoted on one line, control and line-separator characters escaped: a usage error's
   * last line names its flag whatever the value holds.
   */
  static String quoted(String text) {
    if (text == null) {
      return "null";
    }
    StringBuilder out = new StringBuilder("\"");
    text.chars().forEach(c -> {
      if (c == '"' || c == '\\') {
        out.append('\\').append((char) c);
      } else if (isControl(c)) {
        out.append(String.format("\\u%04x", c));
      } else {
        out.append((char) c);
      }
    });
    return out.append('"').toString();
  }

  /**
   * The next line of input's bytes, split on '\n' only (a '\r' before it dropped), as every
   * client's ess-smoke splits them: readLine also breaks at a bare '\r' (review 52d), inside
   * one line elsewhere; null at the end. Bytes, not text: see {@link #utf8}.
   */
  static byte[] rawLine(InputStream input) throws IOException {
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    int c;
    while ((c = input.read()) != -1 && c != '\n') {
      bytes.write(c);
    }
    if (c == -1 && bytes.size() == 0) {
      return null;
    }
    byte[] line = bytes.toByteArray();
    int end = line.length;
    return end > 0 && line[end - 1] == '\r' ? Arrays.copyOf(line, end - 1) : line;
  }

  /**
   * A line's bytes as text, or CharacterCodingException if they are not valid UTF-8 (review
   * 52e: a lenient reader put U+FFFD in a coid and checked an order under another id).
   */
  static String utf8(byte[] line) throws CharacterCodingException {
    return StandardCharsets.UTF_8.newDecoder()
        .onMalformedInput(CodingErrorAction.REPORT)
        .onUnmappableCharacter(CodingErrorAction.REPORT)
        .decode(ByteBuffer.wrap(line)).toString();
  }

  /** An ess-smoke line's words, split on ASCII whitespace only. */
  static String[] words(String line) {
    return SPACES.splitAsStream(line).filter(word -> !word.isEmpty()).toArray(String[]::new);
  }

  /**
   * A flag's value, which must not be empty or blank: an empty --coid would have the library
   * make one up that ess-check never prints.
   */
  String nonBlank(String flag) throws UsageError {
    String value = get(flag);
    if (value == null || value.isBlank()) {
      throw new UsageError("argument --" + flag + ": must not be empty");
    }
    return value;
  }

  int integer(String flag, int min) throws UsageError {
    String text = get(flag);
    try {
      int value = Integer.parseInt(text.trim());
      if (value < min) {
        throw new UsageError("argument --" + flag + ": must be >= " + min + ", got " + text);
      }
      return value;
    } catch (NumberFormatException e) {
      throw new UsageError("argument --" + flag + ": not an integer: " + quoted(text));
    }
  }

  static Duration millis(double ms) {
    return Duration.ofNanos(Math.max(1, Math.round(ms * 1_000_000)));
  }

  void printUsage(PrintStream out) {
    out.println("usage: " + synopsis);
    out.println(about);
    for (Map.Entry<String, String> entry : help.entrySet()) {
      String def = defaults.get(entry.getKey());
      out.println("  --" + entry.getKey() + "  " + entry.getValue()
          + (def != null ? " (default " + def + ")" : ""));
    }
  }

  /** Prints the synopsis and the error on stderr and exits 64. */
  int usage(UsageError error) {
    System.err.println("usage: " + synopsis);
    System.err.println(name + ": " + error.getMessage());
    return EXIT_USAGE;
  }

  /**
   * The one line ess-check prints: "ALLOWED &lt;decision_id&gt;" or "DENIED &lt;REASON&gt;
   * &lt;message&gt;" (REASON without DECISION_REASON_; CLIENT_FAIL_CLOSED, and the message led
   * by the cause, when the check failed closed).
   */
  static String line(Verdict verdict) {
    if (verdict.allowed()) { // one line too, whatever the id holds (review 58e)
      return ("ALLOWED " + String.join(" ", verdict.decisionId().trim().split("\\s+")))
          .stripTrailing();
    }
    String message = verdict.message();
    if (verdict.failedClosed()) {
      message = verdict.cause().label() + ": " + message;
    }
    // One line, whatever the message holds.
    message = String.join(" ", message.trim().split("\\s+"));
    return ("DENIED " + verdict.reasonName() + " " + message).stripTrailing();
  }
}
