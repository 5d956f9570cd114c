"""The Router protocol and one file per router."""
