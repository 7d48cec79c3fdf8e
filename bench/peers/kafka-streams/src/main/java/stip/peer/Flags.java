package stip.peer;

import java.util.HashMap;
import java.util.Map;
import java.util.Set;

/** --name value and --name=value flags; unknown flags are refused. */
final class Flags {
  private final Map<String, String> values = new HashMap<>();

  Flags(String program, String[] args, Map<String, String> defaults, String usage) {
    values.putAll(defaults);
    Set<String> known = defaults.keySet();
    for (int i = 0; i < args.length; i++) {
      String arg = args[i];
      if (arg.equals("-h") || arg.equals("--help")) {
        System.out.println(usage);
        System.exit(0);
      }
      if (!arg.startsWith("--")) die(program, "unexpected argument " + arg, usage);
      String name = arg.substring(2);
      String value;
      int eq = name.indexOf('=');
      if (eq >= 0) {
        value = name.substring(eq + 1);
        name = name.substring(0, eq);
      } else {
        if (i + 1 >= args.length) die(program, "--" + name + " needs a value", usage);
        value = args[++i];
      }
      if (!known.contains(name)) die(program, "unknown flag --" + name, usage);
      values.put(name, value);
    }
  }

  private static void die(String program, String why, String usage) {
    System.err.println(program + ": " + why + "\n" + usage);
    System.exit(2);
  }

  String get(String name) {
    return values.get(name);
  }

  long getLong(String name) {
    try {
      return Long.parseLong(values.get(name));
    } catch (NumberFormatException e) {
      System.err.println("--" + name + " must be a whole number, not " + values.get(name));
      System.exit(2);
      return 0;
    }
  }
}
