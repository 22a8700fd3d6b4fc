"""Alert sinks: operators are told about transitions through notification URLs."""
