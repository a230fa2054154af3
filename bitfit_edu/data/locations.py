"""Where GLUE and the pre-trained models come from: the Hugging Face hub, or local copies offline.

Online, nothing needs setting: GLUE comes from the hub's ``nyu-mll/glue`` and models from the hub.
Offline, one folder holds both local copies, in the layout of this project's ``shared/`` folder::

    $BITFIT_EDU_DATA/glue_data/   a classic GLUE folder (RTE/train.tsv, RTE/dev.tsv, ...)
    $BITFIT_EDU_DATA/hf-hub/      a Hugging Face hub cache holding the models

``BITFIT_EDU_DATA`` defaults to ``shared/`` beside the checkout when that folder exists, so a clone
next to it needs no setting at all. The standard variables ``GLUE_DIR`` and ``HF_HUB_CACHE`` still win
where set. Every path is resolved once, here, to an absolute one: a notebook's kernel runs in
``notebooks/``, and a relative path that works from the checkout's root points nowhere there. A path that
names no folder is one clear error that says so, never a silent fall-back to a hub download.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import BitFitError

DATA_VARIABLE = "BITFIT_EDU_DATA"
CHECKOUT = Path(__file__).resolve().parents[2]  # the repository root for a clone or an editable install


def repo_root(start: str | Path | None = None) -> Path:
    """The checkout holding ``start`` (default: the working directory): the nearest folder with a
    ``pyproject.toml``; the working directory itself when there is none (e.g. on Colab)."""
    start = Path(start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / "pyproject.toml").is_file():
            return folder
    return start


def course_root() -> Path:
    """The course folder whose ``results/`` and ``notebooks/`` the package reads: the checkout it is installed
    from (a clone, an editable install, a student build), wherever the working directory is; for a plain
    install, the working directory's checkout."""
    if (CHECKOUT / "pyproject.toml").is_file() and (CHECKOUT / "results").is_dir():
        return CHECKOUT
    return repo_root()


def results_folder(*parts: str) -> Path:
    """The course's ``results/<parts>`` (committed records, figures, benchmarks, deltas): the one place a
    path under ``results/`` is built."""
    return course_root() / "results" / Path(*parts)


def existing_folder(variable: str, value: str | Path) -> Path:
    """``value`` as an absolute folder, or an error naming ``variable`` and saying what to do."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path.resolve()
    seen_from = "" if path.is_absolute() else f" seen from {Path.cwd()} (a relative path is read from the " \
                                              "working directory; a notebook's kernel runs in notebooks/)"
    raise BitFitError(
        f"{variable}={value} is not a folder{seen_from}. Set it to an absolute path, or unset it: "
        f"{DATA_VARIABLE} (default: shared/ beside the checkout) holds glue_data/ and hf-hub/ for offline use, "
        "and online everything comes from the Hugging Face hub"
    )


def default_data_home() -> Path | None:
    """``shared/`` beside the checkout that holds this package, or beside the working directory's checkout."""
    for checkout in (CHECKOUT, repo_root()):
        if (checkout / "pyproject.toml").is_file() and (checkout.parent / "shared").is_dir():
            return (checkout.parent / "shared").resolve()
    return None


def data_home() -> Path | None:
    """The offline data folder: ``$BITFIT_EDU_DATA``, else ``shared/`` beside the checkout, else None."""
    value = os.environ.get(DATA_VARIABLE)
    return existing_folder(DATA_VARIABLE, value) if value else default_data_home()


def glue_dir(explicit: str | Path | None = None) -> Path | None:
    """The classic GLUE folder to read: ``explicit``, ``$GLUE_DIR``, or the data folder's ``glue_data``;
    None means the hub."""
    if explicit:
        return existing_folder("glue_dir", explicit)
    if os.environ.get("GLUE_DIR"):
        return existing_folder("GLUE_DIR", os.environ["GLUE_DIR"])
    home = data_home()
    return home / "glue_data" if home and (home / "glue_data").is_dir() else None


def hub_cache() -> Path | None:
    """The hub cache holding offline models: ``$HF_HUB_CACHE`` or the data folder's ``hf-hub``; None:
    the hub's default cache."""
    if os.environ.get("HF_HUB_CACHE"):
        return existing_folder("HF_HUB_CACHE", os.environ["HF_HUB_CACHE"])
    home = data_home()
    return home / "hf-hub" if home and (home / "hf-hub").is_dir() else None


def hub_options() -> dict:
    """Keyword arguments for ``from_pretrained``: the cache to read, and no download attempt when the
    models come from the offline data folder."""
    cache = hub_cache()
    if cache is None:
        return {}
    from_data_home = not os.environ.get("HF_HUB_CACHE")
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    return {"cache_dir": str(cache), "local_files_only": from_data_home or offline}


def model_options() -> dict:
    """``hub_options`` for a model's ``from_pretrained``. With peft installed, transformers also looks for an
    adapter beside the model, and (5.24) without the cache or ``local_files_only`` it was given: offline,
    every load would wait on a minute of retries. They are handed to that look-up too."""
    options = hub_options()
    return {**options, "adapter_kwargs": dict(options)} if options else {}


def describe(explicit_glue_dir: str | Path | None = None) -> str:
    """Where data and models come from, in one line for a run's printed settings."""
    glue, cache = glue_dir(explicit_glue_dir), hub_cache()
    data = f"GLUE from {glue}" if glue else "GLUE from the Hugging Face hub"
    models = f"models from {cache}" if cache else "models from the Hugging Face hub"
    return f"{data}, {models}"
