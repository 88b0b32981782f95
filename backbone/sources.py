"""Finding and reading CLIP weight files: local copies first, download last, never a hang.

Lookup for open_clip pretrained configs (OpenAI's included):
  1. $CLIP_CACHE_DIR or ~/.cache/clip/<file name of the config's URL> (where CoOp's
     clip.load and open_clip keep OpenAI's JIT archives, e.g. ViT-B-16.pt);
  2. the Hugging Face cache (hf_hub_download with local_files_only=True);
  3. a download, only if HF_HUB_OFFLINE is unset and the host answers a 3 s connect probe.
     Otherwise a FileNotFoundError says where to put the file, at once: huggingface_hub's
     own retries would keep an offline cluster node waiting for a minute or more.
"""
from __future__ import annotations

import os
import socket
import time
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import torch
from huggingface_hub import constants, hf_hub_download
from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME
from open_clip.pretrained import download_pretrained, get_pretrained_cfg

from engine.cache import file_identity, racy
from engine.errors import DataError, MissingFileError

META_KEYS = ("input_resolution", "context_length", "vocab_size", "attn_mask")
_TRUE = {"1", "ON", "YES", "TRUE"}


def clip_cache_dir() -> Path:
    return Path(os.environ.get("CLIP_CACHE_DIR") or "~/.cache/clip").expanduser()


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def host_reachable(url: str, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the URL's host opens within `timeout` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _hf_repo_and_files(hf_hub: str) -> tuple[str, list[str]]:
    """open_clip writes 'org/repo/' (default file names) or 'org/repo/file'."""
    repo_id, filename = os.path.split(hf_hub)
    if filename:
        return repo_id, [filename]
    return repo_id, [HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME]


def _hf_cached(hf_hub: str) -> str | None:
    repo_id, filenames = _hf_repo_and_files(hf_hub)
    for filename in filenames:
        try:
            return hf_hub_download(repo_id, filename, local_files_only=True)
        except (OSError, ValueError):  # LocalEntryNotFoundError is an OSError: not cached
            continue
    return None


def pretrained_file(arch: str, tag: str, label: str | None = None) -> str:
    """Local path of open_clip's pretrained weights (arch, tag), downloading only if online;
    `label` names them in errors (default 'arch:tag')."""
    cfg = get_pretrained_cfg(arch, tag)
    url, hf_hub = cfg.get("url", ""), cfg.get("hf_hub", "")
    places = []
    if url:
        local = clip_cache_dir() / os.path.basename(url)
        if local.is_file():
            return str(local)
        places.append(f"the file {local} (download {url}; set CLIP_CACHE_DIR to use another folder)")
    if hf_hub:
        cached = _hf_cached(hf_hub)
        if cached:
            return cached
        repo_id, _ = _hf_repo_and_files(hf_hub)
        places.append(
            f"the Hugging Face cache {constants.HF_HUB_CACHE} for repo {repo_id!r} "
            f"(on a machine with network: huggingface-cli download {repo_id}, then copy the cache over)"
        )

    probe = constants.ENDPOINT if hf_hub else url
    reason = "HF_HUB_OFFLINE is set" if hub_offline() else None
    if reason is None and not host_reachable(probe):
        reason = f"{urlparse(probe).hostname} is unreachable"
    if reason:
        raise MissingFileError(
            f"No local weights for {label or f'{arch}:{tag}'} and {reason}. Put them in " + ", or ".join(places) + "."
        )
    return download_pretrained(cfg)


def _is_torchscript(path: str | Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("constants.pkl") for name in archive.namelist())


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A CLIP state dict from an OpenAI JIT archive, a torch file or a safetensors file,
    without wrapper keys ('state_dict', 'module.') or JIT metadata; the copy a warm worker
    holds (`hold_weights`) if the file is still the one it read."""
    key = os.path.realpath(path)
    held = _HELD.pop(key, None)  # one read per process: the state dict is the caller's to change
    if held is not None and os.path.exists(key) and held[0] == file_identity(key):
        return dict(held[1])
    return _read_state_dict(str(path))


def _read_state_dict(path: str) -> dict[str, torch.Tensor]:
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    elif _is_torchscript(path):
        state = torch.jit.load(path, map_location="cpu").state_dict()
    else:
        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise DataError(f"{path} holds a {type(state).__name__}, not a state dict")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return {k: v for k, v in state.items() if k not in META_KEYS}


# ---- weights held in memory by a warm worker (engine/warm/server.py) ----------------------------
# real path -> (file identity when read, state dict). Only a worker fills it, before it forks its
# runs: each forked run takes its copy on its first read_state_dict of that file.
_HELD: dict[str, tuple[tuple[int, ...], dict[str, torch.Tensor]]] = {}


def hold_weights(path: str | Path) -> bool:
    """Read a weights file into memory for the runs this process will fork, unless the copy held
    is still the file's content. Not held if the file changed while it was read, or so shortly
    before that a rewrite could keep its timestamps (engine.cache.racy). True if read."""
    key = os.path.realpath(path)
    st = os.stat(key)
    identity = file_identity(key, st)
    held = _HELD.get(key)
    if held is not None and held[0] == identity:
        return False
    _HELD.pop(key, None)
    state = _read_state_dict(key)
    if file_identity(key) == identity and not racy(st, time.time()):
        _HELD[key] = (identity, state)
    return True
