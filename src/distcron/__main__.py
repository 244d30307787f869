"""``python -m distcron`` is the ``distcron`` command."""

from distcron.cli import main

main()
