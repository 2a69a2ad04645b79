"""The report and the scripts that write its numbers and the README results."""
