"""`essctl`: the operator's command for an ESS sidecar (status, watch, trigger, reset, ...)."""
