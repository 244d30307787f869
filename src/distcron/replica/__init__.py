"""The replica: membership and election, the state mirror, the leader's term, takeover."""
