"""Fetch TextSpan's general text pool (image_descriptions_general.txt, MIT) for the head analysis.

    python tools/download_textspan.py [--out FILE]

Default destination: the user cache (engine.cache.user_cache_dir), where `--texts textspan`
(tools/head_roles.py) and TRAINER.DEAR.ANALYSIS_TEXTS textspan look for it. The file comes from
a pinned commit of yossigandelsman/clip_text_span and is checked against its SHA-256 before it
is written; a file already there is checked and kept.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.cli import run_cli  # noqa: E402
from headroles import textspan_pool  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help=f"where to write it (default: {textspan_pool.default_path()})")
    p.add_argument("--url", default=textspan_pool.URL, help="source (default: TextSpan's repository at a pinned commit)")
    args = p.parse_args(argv)
    path, status = textspan_pool.download(args.out, args.url)
    print(f"TextSpan pool {status}: {path} (SHA-256 {textspan_pool.SHA256[:12]}..., license {textspan_pool.LICENSE_URL})")
    return 0


if __name__ == "__main__":
    run_cli(main)
