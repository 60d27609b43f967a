"""The optional parts of the install, and the one-line hint a command gives when one is missing.

The core install runs optics, colour, PIA, the gate, Synthia and ``qupaint detect``. The
model (``[model]``), the chip-scan database (``[scan]``) and the web app (``[web]``) are
extras; ``[all]`` installs every one.

>>> extra_for("transformers"), extra_for("sqlalchemy.orm"), extra_for("numpy")
('model', 'scan', None)
>>> hint(ModuleNotFoundError("No module named 'fastapi'", name="fastapi"))
"this needs the 'web' extra (fastapi is not installed): pip install 'qupaint[web]'"
"""

from __future__ import annotations

__all__ = ["EXTRAS", "extra_for", "hint", "require"]

#: the top-level modules each extra brings (pyproject.toml's optional-dependencies)
EXTRAS: dict[str, tuple[str, ...]] = {
    "model": ("transformers", "accelerate", "tokenizers", "safetensors", "xgrammar"),
    "scan": ("sqlalchemy", "alembic", "skimage", "tifffile"),
    "web": ("fastapi", "uvicorn", "multipart", "python_multipart", "starlette",
            "fastapi_offline"),
}


def extra_for(module: str | None) -> str | None:
    """The extra that installs ``module`` (a dotted name), or None when no extra does."""
    top = (module or "").split(".")[0]
    return next((e for e, mods in EXTRAS.items() if top in mods), None)


def hint(exc: BaseException) -> str | None:
    """One line naming the extra to install for a :class:`ModuleNotFoundError` ``exc``, or
    None when the missing module is no extra's."""
    name = getattr(exc, "name", None)
    extra = extra_for(name)
    if extra is None:
        return None
    return (f"this needs the {extra!r} extra ({name.split('.')[0]} is not installed): "
            f"pip install 'qupaint[{extra}]'")  # fmt: skip


def require(extra: str, what: str) -> None:
    """Raise ModuleNotFoundError with the install line when a module of ``extra`` is missing;
    ``what`` names the part of qupaint that needs it (``"qupaint.model"``)."""
    import importlib.util

    for mod in EXTRAS[extra]:
        if mod in ("multipart", "python_multipart", "starlette"):
            continue  # brought in by fastapi; checked through it
        if importlib.util.find_spec(mod) is None:
            raise ModuleNotFoundError(
                f"{what} needs the {extra!r} extra ({mod} is not installed): "
                f"pip install 'qupaint[{extra}]'",
                name=mod,
            )
