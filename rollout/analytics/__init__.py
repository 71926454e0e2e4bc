"""Query analytics: the `query_log` rows, their writer and retention, and the figures read from them."""
