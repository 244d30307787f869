"""distcron: a distributed cron that keeps its promises when machines fail."""

__version__ = "0.1.0"
