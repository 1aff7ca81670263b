"""Where the data is: the data root and dataset sources relative to it.

:func:`resolve_data_root` finds the folder holding the datasets (``--data-root``, then
``$SSL_DATA_DIR``, then ``../shared/data`` beside the project checkout, then ``./data``);
:func:`find_source` resolves a dataset path as given or relative to that folder.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_ENV_VAR = "SSL_DATA_DIR"


def default_data_root() -> Path:
    """``../shared/data`` beside the project checkout (the folder holding ``core_ssl/``)."""
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def resolve_data_root(explicit: str | Path | None = None) -> Path:
    """The folder that holds the datasets.

    Order: ``explicit`` (the ``--data-root`` flag) if given; else ``$SSL_DATA_DIR`` if set;
    else the first existing of ``../shared/data`` beside the checkout and ``./data``. An
    explicit or environment choice that does not exist is an error, never silently skipped.

    Raises:
        FileNotFoundError: listing every place looked at and how to point at the data.
    """
    if explicit is not None:
        candidates = [("--data-root", Path(explicit).expanduser())]
    elif os.environ.get(DATA_ENV_VAR):
        candidates = [(f"${DATA_ENV_VAR}", Path(os.environ[DATA_ENV_VAR]).expanduser())]
    else:
        candidates = [("beside the checkout", default_data_root()), ("working directory", Path("data"))]
    for _, path in candidates:
        if path.is_dir():
            return path.resolve()
    looked = "; ".join(f"{path.absolute()} ({origin})" for origin, path in candidates)
    raise FileNotFoundError(
        f"no data folder found; looked at: {looked}. Pass --data-root PATH or set "
        f"{DATA_ENV_VAR}=PATH to the folder that holds the datasets."
    )


def data_root_for(root: str | Path | None, download: bool) -> Path:
    """:func:`resolve_data_root`, except that a download may create the folder it needs."""
    try:
        return resolve_data_root(root)
    except FileNotFoundError:
        if not download:
            raise
    path = Path(root if root is not None else os.environ.get(DATA_ENV_VAR) or "data").expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


def find_source(source: str | Path) -> Path:
    """``source`` as given if it exists, else relative to the data root."""
    path = Path(source).expanduser()
    if path.exists():
        return path.resolve()
    looked = [str(path.absolute())]
    if not path.is_absolute():
        try:
            candidate = resolve_data_root() / path
        except FileNotFoundError as err:
            looked.append(f"the data root, which was not found either ({err})")
        else:
            if candidate.exists():
                return candidate
            looked.append(str(candidate))
    raise FileNotFoundError(
        f"dataset source {str(source)!r} not found; looked at: {'; '.join(looked)}. Give an "
        f"existing folder or .zip path, or point --data-root / {DATA_ENV_VAR} at the folder holding it."
    )
