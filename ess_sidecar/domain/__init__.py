"""The pure decision domain: standard library only, no I/O, time passed in."""
