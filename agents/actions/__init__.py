"""Actions: typed operations the model calls as tools."""
