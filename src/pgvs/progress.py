"""Progress reporting: the ``progress=`` argument of index builds and ingest.

``progress`` is None (silent), a callable receiving samples, or True for a tqdm bar (tqdm is an
optional extra: ``pip install 'pgvs[progress]'``). The CLI draws its bars through the same
callbacks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ConfigurationError
from .results import IndexProgress, IngestProgress

__all__ = ["IndexProgressBar", "IngestProgressCallback", "ProgressCallback", "ingest_progress"]

#: Called with samples of a running index build (phase and percent).
ProgressCallback = Callable[[IndexProgress], None]
#: Called after every committed ingest batch (may be a coroutine function).
IngestProgressCallback = Callable[[IngestProgress], Any]


def _tqdm(what: str) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as exc:
        raise ConfigurationError(
            f"progress=True shows a tqdm progress bar {what}, but tqdm is not installed",
            hint="pip install 'pgvs[progress]' (or tqdm), or pass a callable as progress.",
        ) from exc
    return tqdm


class IndexProgressBar:
    """``progress=True`` for an index build: a bar in percent, the build phase beside it."""

    def __init__(self, description: str) -> None:
        self._bar = _tqdm("for index builds")(total=100.0, desc=description, unit="%", leave=True)

    def __call__(self, sample: IndexProgress) -> None:
        self._bar.set_postfix_str(sample.phase, refresh=False)
        if sample.percent is not None:
            self._bar.n = round(sample.percent, 1)
        self._bar.refresh()

    def close(self) -> None:
        self._bar.close()


def ingest_progress(
    progress: bool | IngestProgressCallback | None, total: int | None, label: str
) -> tuple[IngestProgressCallback | None, Callable[[], None]]:
    """(callback, close) for ingest's ``progress`` argument; the bar counts rows."""
    if progress is None or progress is False:
        return None, lambda: None
    if progress is True:
        bar = _tqdm("for ingest")(
            total=total, unit="rows", unit_scale=True, desc=label, dynamic_ncols=True
        )
        shown = [0]

        def update(state: IngestProgress) -> None:
            bar.update(state.rows_done - shown[0])
            shown[0] = state.rows_done

        return update, bar.close
    if not callable(progress):
        raise ConfigurationError(
            f"progress must be None, True or a callable, got {type(progress).__name__}"
        )
    return progress, lambda: None
