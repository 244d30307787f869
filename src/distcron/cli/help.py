"""One style for every command's help: defaults and environment variables in
click's own brackets (``[env var: X; default: Y]``), never in the prose.

``serve`` reads its settings in layers (config file, environment, flags; see
:mod:`distcron.replica.config`), so its options only *show* the variable and
the default the layers end in: :class:`Layered` does that, and reads nothing.
"""

from __future__ import annotations

from typing import Any

import click
from click.types import OptionHelpExtra

LOG_LEVELS = click.Choice(["debug", "info", "warning", "error"], case_sensitive=False)


class Layered(click.Option):
    """An option whose environment variable and default are applied elsewhere,
    shown in its help as if click applied them."""

    def __init__(self, *args: Any, env: str, shown_default: str | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.layered_env = env
        self.shown_default = shown_default

    def get_help_extra(self, ctx: click.Context) -> OptionHelpExtra:
        extra = super().get_help_extra(ctx)
        extra["envvars"] = (self.layered_env,)
        if self.shown_default is not None:
            extra["default"] = self.shown_default
        return extra
