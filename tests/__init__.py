"""hcl_plugin tests (a package, so `tests.*` never resolves to a site-packages `tests`, e.g. modelindex ships one)."""
