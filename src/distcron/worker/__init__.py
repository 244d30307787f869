"""Worker agents: register under a lease, claim assigned launches, run them, report."""
