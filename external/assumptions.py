"""What trainer files assume about their own world, said as one error naming the file, the line,
the missing name and what to do, instead of a traceback from deep inside the file.

- A prompt template looked up by dataset name (`CUSTOM_TEMPLATES[cfg.DATASET.NAME]` in KgCoOp,
  ProGrad, CoOp's zsclip.py, MMRL): the table knows CoOp's eleven datasets only. The config key
  DATASET.PROMPT_TEMPLATE supplies one for the user's dataset (`supply_templates`), added to the
  file's tables for that dataset only, never replacing a template the file has.
- A method only a repository's fork of Dassl has (ProGrad's `self.prograd_backward_and_update`).
- A name only a forked `clip` package has (`clip.build_model_MMRL`) when the file runs on
  promptlab's layer (a file copied out of its repository).
"""
from __future__ import annotations

import linecache
import sys
import types
from contextlib import contextmanager
from typing import Iterator

from yacs.config import CfgNode as CN

from engine.errors import UserError
from engine.trainer import TrainerX
from external import forks
from external.errors import DOC, ExternalCodeError
from external.loader import PACKAGE
from trainers.templates import CUSTOM_TEMPLATES, template_for

TEMPLATE_KEY = "DATASET.PROMPT_TEMPLATE"  # declared in external/loader.py (add_external_keys)


def _is_template_table(value: object) -> bool:
    """A dict from CoOp's dataset names to format strings, as CoOp-family files keep them."""
    return (isinstance(value, dict) and any(name in value for name in CUSTOM_TEMPLATES)
            and all(isinstance(v, str) and "{}" in v for v in value.values()))


def _external_modules() -> list[types.ModuleType]:
    fork_modules = [m for modules in forks.IMPORTED.values() for m in modules.values()]
    return [m for name, m in list(sys.modules.items()) if name.startswith(PACKAGE + ".")] + fork_modules


def supply_templates(cfg: CN) -> None:
    """DATASET.PROMPT_TEMPLATE, if set, joins every template table of the loaded files for
    cfg.DATASET.NAME where the table has no entry for it."""
    template, dataset = cfg.DATASET.PROMPT_TEMPLATE, cfg.DATASET.NAME
    if not template:
        return
    if "{}" not in template:
        raise ExternalCodeError(f"{TEMPLATE_KEY} {template!r} has no '{{}}' for the class name, e.g. 'a photo of a {{}}.'")
    for module in _external_modules():
        for name, table in vars(module).items():
            if _is_template_table(table) and dataset not in table:
                table[dataset] = template
                print(f"{TEMPLATE_KEY}: {name}[{dataset!r}] = {template!r} in {module.__file__}")


def _innermost_external_frame(tb: types.TracebackType | None) -> tuple[str, int] | None:
    packages = [str(p) for p in forks.IMPORTED]
    found = None
    while tb is not None:
        frame = tb.tb_frame
        module = frame.f_globals.get("__name__", "")
        if module.startswith(PACKAGE + ".") or any(frame.f_code.co_filename.startswith(p) for p in packages):
            found = (frame.f_code.co_filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def explain(error: BaseException, cfg: CN) -> ExternalCodeError | None:
    """The error that says what `error`, raised by a trainer file's own code, assumed; None when
    it is not one of the assumptions this module knows (the traceback is then kept)."""
    where = _innermost_external_frame(error.__traceback__)
    if where is None:
        return None
    file, line = where
    code = linecache.getline(file, line).strip()
    at = f"{file}, line {line}: `{code}`"
    dataset = cfg.DATASET.NAME
    if isinstance(error, KeyError) and error.args and error.args[0] == dataset:
        return ExternalCodeError(
            f"{at} looks up a prompt template for the dataset {dataset!r}, which the file's table does not have (it "
            f"knows its repository's datasets). Supply one with the config key {TEMPLATE_KEY}, e.g. "
            f"{TEMPLATE_KEY} \"{template_for(dataset)}\" (the template promptlab's built-in trainers use for "
            f"{dataset}) after the flags, or in the dataset's yaml; it joins the file's tables for {dataset} only "
            f"({DOC})"
        )
    if not isinstance(error, AttributeError) or error.name is None:
        return None
    owner = getattr(error, "obj", None)
    if isinstance(owner, TrainerX):
        return ExternalCodeError(
            f"{at} uses self.{error.name}, which neither {type(owner).__name__} nor Dassl's TrainerX defines: it "
            "comes from the repository's own fork of Dassl, and promptlab's Dassl layer provides Dassl's API. "
            f"Define {error.name} in a subclass registered under another name, in a file of your own passed "
            f"with --trainer-file after this one (the class is TRAINER_REGISTRY.get({type(owner).__name__!r})), "
            f"and run that name ({DOC})"
        )
    if isinstance(owner, types.ModuleType) and owner.__name__.split(".")[0] in ("clip", "dassl"):
        layer = owner.__name__.split(".")[0]
        fork = "Run the file from inside its repository, whose own clip/ it then imports, or name that package " \
               "with --trainer-file path/to/clip" if layer == "clip" else "Port what the file needs onto Dassl's API"
        return ExternalCodeError(
            f"{at} uses {owner.__name__}.{error.name}, which promptlab's {layer} layer does not have: it comes from a "
            f"forked {layer} package. {fork} ({DOC})"
        )
    return None


@contextmanager
def explained(cfg: CN) -> Iterator[None]:
    try:
        yield
    except (KeyError, AttributeError) as e:
        better = None if isinstance(e, UserError) else explain(e, cfg)
        if better is None:
            raise
        raise better from e
