"""The text pool TextSpan chooses from: our labelled descriptions (text_pool.tsv, made by
make_pool.py) or any file with one text per line (unlabelled: cluster it with hdbscan)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_POOL = Path(__file__).with_name("text_pool.tsv")
REPO = Path(__file__).resolve().parents[1]


def shown(path: Path) -> str:
    """The path as recorded in role maps: relative to the repository when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO)) if resolved.is_relative_to(REPO) else str(path)


@dataclass(frozen=True)
class TextPool:
    texts: tuple[str, ...]
    labels: tuple[str, ...] | None  # concept of each text, or None for an unlabelled pool
    source: str

    @property
    def concepts(self) -> list[str]:
        """Concept names in order of first appearance."""
        return list(dict.fromkeys(self.labels or ()))


def read_pool(path: str | Path = DEFAULT_POOL) -> TextPool:
    """`concept<TAB>text` lines (labelled) or plain lines (unlabelled); blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No text pool at {path}; the shipped pool is {DEFAULT_POOL} (python -m headroles.make_pool)")
    rows = [(n, line.rstrip("\n")) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    tabbed = [("\t" in line) for _, line in rows]
    if any(tabbed) and not all(tabbed):
        bad = next(n for (n, _), t in zip(rows, tabbed) if not t)
        raise ValueError(f"{path}:{bad}: every line of a labelled pool must be `concept<TAB>text`")
    if not rows:
        raise ValueError(f"Text pool {path} is empty")
    if not all(tabbed):
        return TextPool(tuple(line.strip() for _, line in rows), None, shown(path))
    labels, texts = [], []
    for n, line in rows:
        concept, _, text = line.partition("\t")
        if not concept.strip() or not text.strip() or "\t" in text:
            raise ValueError(f"{path}:{n}: expected `concept<TAB>text`, got {line!r}")
        labels.append(concept.strip())
        texts.append(text.strip())
    return TextPool(tuple(texts), tuple(labels), shown(path))
