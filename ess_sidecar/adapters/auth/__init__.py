"""Authentication: the tokens file and the principals it names."""
