"""Small HTTP servers Ballast ships beside the operator (run as `ballast <name>` in their own pods)."""
