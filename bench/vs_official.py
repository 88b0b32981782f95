"""Training step and evaluation time of each method against its official code, on the same random
ViT-B/16 weights and the same batch, alternating, in one script run.

    python bench/vs_official.py --official-root DIR [--methods CoOp CoCoOp MaPLe PromptSRC MMRL MMRL++]
                                [--rounds 3] [--classes 100] [--batch 4] [--eval-images 16]

DIR holds checkouts of the official repositories at the commits in OFFICIAL (without them the
script prints the commands that fetch them and exits 2):

    git clone https://github.com/KaiyangZhou/CoOp DIR/CoOp && git -C DIR/CoOp checkout <commit>
    (and so on for Dassl.pytorch, multimodal-prompt-learning, PromptSRC, MMRL)

Each side runs in its own process (their `trainers` and `clip` packages are not ours): the official
one imports the repository's train.py (its extend_cfg), merges its base-to-new config, and builds
the method with the trainer's own build_model, then times the trainer's own forward_backward and,
for evaluation, its model on the test batches as Dassl's test loop calls it. Run-time workarounds in
that process only (the checkouts are not modified): `clip._download` returns the weights file (no
network); the Dassl LR scheduler is not built (Dassl passes `verbose` to torch's LRScheduler, which
torch >= 2.7 no longer takes; the steps timed here never step it); where the packages are missing,
Dassl's tensorboard writer and its WILDS datasets (tensorboard, wilds, pandas: none used by a step
or an evaluation) are empty modules; without CUDA, their `.cuda()` calls stay on the CPU
(external/cpu_fallback.py, as for any trainer file written for CUDA). Our side builds the method's
model with the same settings (bench/bench_methods.py) on the same weights file, and times its step
and its evaluation (class text features encoded once, as TrainerX.test does). Both in fp32.

The weights: a random ViT-B/16 (seed 0) rounded to fp16 values, so that the official build_model,
which loads them into fp16 layers before `.float()`, gets exactly the fp32 values ours loads.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = {  # checkout folder: (repository, pinned commit)
    "CoOp": ("https://github.com/KaiyangZhou/CoOp", "ff61507c790454bce7c5052c3ac39e60772f1f89"),
    "Dassl.pytorch": ("https://github.com/KaiyangZhou/Dassl.pytorch", "c61a1b570ac6333bd50fb5ae06aea59002fb20bb"),
    "multimodal-prompt-learning": ("https://github.com/muzairkhattak/multimodal-prompt-learning",
                                   "69bce21ae8eda80ad6187534b2dce09cf6c59e17"),
    "PromptSRC": ("https://github.com/muzairkhattak/PromptSRC", "bb95c77b634d63488f2cad81ff4a72d53bdd06d5"),
    "MMRL": ("https://github.com/yunncheng/MMRL", "27d8821f6ac135a1d0c8e4c5ed78af14df0cd82e"),
}


@dataclass(frozen=True)
class Method:
    repo: str  # checkout folder
    module: str  # the trainer's module in it
    trainer: str
    config: str  # the official base-to-new config, in the checkout
    node: str  # its config node
    opts: dict = field(default_factory=dict)  # what the official scripts set on the command line
    ours: str = ""  # bench/bench_methods.METHODS key: our model with the same settings


METHODS = {
    "CoOp": Method("CoOp", "trainers.coop", "CoOp", "configs/trainers/CoOp/vit_b16_ep50.yaml", "COOP",
                   {"N_CTX": 16, "CSC": False, "CLASS_TOKEN_POSITION": "end", "CTX_INIT": ""}, "CoOp (16 ctx)"),
    "CoCoOp": Method("CoOp", "trainers.cocoop", "CoCoOp", "configs/trainers/CoCoOp/vit_b16_c4_ep10_batch1_ctxv1.yaml",
                     "COCOOP", {}, "CoCoOp (4 ctx)"),
    "MaPLe": Method("multimodal-prompt-learning", "trainers.maple", "MaPLe",
                    "configs/trainers/MaPLe/vit_b16_c2_ep5_batch4_2ctx.yaml", "MAPLE", {}, "MaPLe (2, depth 9)"),
    "PromptSRC": Method("PromptSRC", "trainers.promptsrc", "PromptSRC",
                        "configs/trainers/PromptSRC/vit_b16_c2_ep20_batch4_4+4ctx.yaml", "PROMPTSRC", {},
                        "PromptSRC (4+4, depth 9)"),
    "MMRL": Method("MMRL", "trainers.mmrl", "MMRL", "configs/trainers/MMRL/vit_b16.yaml", "MMRL", {},
                   "MMRL (5 tokens, layers 6-12)"),
    "MMRL++": Method("MMRL", "trainers.mmrlpp", "MMRLpp", "configs/trainers/MMRLpp/vit_b16.yaml", "MMRLpp", {},
                     "MMRL++ (5 tokens, layers 6-12)"),
}


def checkouts(root: Path, methods: list[str]) -> dict[str, str]:
    """The commit of each checkout the methods need; exits 2, saying how to fetch them, if any is missing."""
    needed = ["Dassl.pytorch", *dict.fromkeys(METHODS[m].repo for m in methods)]
    missing = [name for name in needed if not (root / name / ".git").exists()]
    if missing:
        lines = [f"The official code is not all in {root}: missing {', '.join(missing)}. Fetch it at the pinned "
                 "commits (each is a public repository):"]
        for name in missing:
            url, commit = OFFICIAL[name]
            lines.append(f"  git clone {url} {root / name} && git -C {root / name} checkout {commit}")
        lines.append("Their Python requirements are ours (torch, ftfy, regex, yacs, gdown, tabulate, scikit-learn); "
                     "tensorboard, wilds and pandas may be missing (see this script's docstring).")
        print("\n".join(lines), file=sys.stderr)
        sys.exit(2)
    commits = {}
    for name in needed:
        commit = subprocess.run(["git", "-C", str(root / name), "rev-parse", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        if commit != OFFICIAL[name][1]:
            print(f"warning: {root / name} is at {commit}, not the pinned {OFFICIAL[name][1]}", file=sys.stderr)
        commits[name] = commit
    return commits


# ---- the two sides, each in its own process --------------------------------------------------------------
def batch(classes: int, batch_size: int, eval_images: int, seed: int = 0):
    import torch

    from bench.common import classnames

    g = torch.Generator().manual_seed(seed)
    images = torch.randn(batch_size, 3, 224, 224, generator=g)
    labels = torch.randint(0, classes, (batch_size,), generator=g)
    test = torch.randn(eval_images, 3, 224, 224, generator=g)
    return classnames(classes), images, labels, test


def official_side(method: Method, root: Path, weights: Path, names: list[str]):
    """(step, evaluate) of the official trainer, built by its own build_model."""
    import torch

    repo = root / method.repo
    sys.path[:0] = [str(repo), str(root / "Dassl.pytorch")]
    os.chdir(repo)
    for package, stub in (("tensorboard", "torch.utils.tensorboard"), ("wilds", "dassl.data.datasets.dg.wilds")):
        if importlib.util.find_spec(package) is None:
            module = types.ModuleType(stub)
            module.SummaryWriter = None
            sys.modules[stub] = module
    if not torch.cuda.is_available():
        from external import cpu_fallback

        cpu_fallback.install()
    from clip import clip
    from dassl.config import get_cfg_default
    from dassl.engine.trainer import TrainerBase

    clip._download = lambda url, root=None: str(weights)
    official_train = importlib.import_module("train")
    module = importlib.import_module(method.module)
    module.build_lr_scheduler = lambda optim, optim_cfg: None
    cfg = get_cfg_default()
    official_train.extend_cfg(cfg)
    cfg.merge_from_file(str(repo / method.config))
    cfg.MODEL.BACKBONE.NAME = "ViT-B/16"
    cfg.DATASET.NAME, cfg.DATASET.SUBSAMPLE_CLASSES = "Caltech101", "base"
    for key, value in {**method.opts, "PREC": "fp32"}.items():
        cfg.TRAINER[method.node][key] = value
    if "TASK" in cfg:
        cfg.TASK = "B2N"
    trainer_cls = getattr(module, method.trainer)
    trainer = trainer_cls.__new__(trainer_cls)
    TrainerBase.__init__(trainer)
    trainer.cfg, trainer.device, trainer.epoch = cfg, torch.device("cpu"), 0
    trainer.batch_idx, trainer.num_batches = 0, 10 ** 9  # never the epoch's last batch: no scheduler step
    trainer.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=names))
    torch.manual_seed(0)
    trainer.build_model()

    def step(images, labels):
        trainer.set_model_mode("train")
        return trainer.forward_backward({"img": images, "label": labels})

    @torch.no_grad()
    def evaluate(chunks):
        trainer.set_model_mode("eval")
        # MMRL's and MMRL++'s models keep the class text features of their first inference for
        # good; an evaluation after training computes them once, so each timed evaluation does
        if hasattr(trainer.model, "text_features_for_inference"):
            trainer.model.text_features_for_inference = None
        for chunk in chunks:
            trainer.model_inference(chunk)
    return step, evaluate


def our_side(method: Method, weights: Path, names: list[str]):
    import torch

    sys.path.insert(0, str(REPO))
    from backbone import load_clip
    from bench.bench_methods import METHODS as OURS

    torch.manual_seed(0)
    clip = load_clip(str(weights), precision="fp32")
    model, loss_of = OURS[method.ours](clip, names)
    learnable = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.SGD(learnable, lr=0.002, momentum=0.9, weight_decay=5e-4)

    def step(images, labels):
        model.train()
        loss = loss_of(images, labels)
        optim.zero_grad()
        loss.backward()
        optim.step()
        return {"loss": loss.item()}

    @torch.no_grad()
    def evaluate(chunks):
        model.eval()
        # as TrainerX.test: class text features encoded once (ClipTrainer.evaluation_context), but
        # for CoCoOp, whose text depends on the image
        with getattr(model, "cached_text_features", contextlib.nullcontext)():
            for chunk in chunks:
                model(chunk)
    return step, evaluate


def side(which: str, method_name: str, root: Path, weights: Path, classes: int, batch_size: int,
         eval_images: int, eval_batch: int) -> None:
    """A child process: builds one side, then answers `step` and `eval` with seconds, one JSON per line
    (its own prints go to stderr)."""
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.path.insert(0, str(REPO))
    names, images, labels, test = batch(classes, batch_size, eval_images)
    method = METHODS[method_name]
    step, evaluate = (official_side(method, root, weights, names) if which == "official"
                      else our_side(method, weights, names))
    chunks = list(test.split(eval_batch))
    answers.write(json.dumps({"ready": True}) + "\n")
    for line in sys.stdin:
        start = time.perf_counter()
        out = step(images, labels) if line.strip() == "step" else evaluate(chunks)
        answers.write(json.dumps({"s": time.perf_counter() - start, "out": out}) + "\n")


class Side:
    def __init__(self, which: str, method: str, args: argparse.Namespace, weights: Path, log: Path):
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--side", which, method, str(args.official_root), str(weights),
             str(args.classes), str(args.batch), str(args.eval_images), str(args.eval_batch)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, bufsize=1)
        self.answer()

    def answer(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the side process stopped; its log: {self.log.name}")
        return json.loads(line)

    def ask(self, what: str) -> float:
        self.proc.stdin.write(what + "\n")
        return self.answer()["s"]

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()
        self.log.close()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official-root", type=Path)
    p.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--eval-images", type=int, default=16)
    p.add_argument("--eval-batch", type=int, default=8)
    p.add_argument("--side", nargs=8, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.side:
        which, method, root, weights, classes, batch_size, eval_images, eval_batch = args.side
        return side(which, method, Path(root), Path(weights), int(classes), int(batch_size), int(eval_images),
                    int(eval_batch))
    if args.official_root is None:
        p.error("--official-root DIR is required (the folder of the official checkouts; see --help)")
    args.official_root = args.official_root.resolve()
    commits = checkouts(args.official_root, args.methods)
    import torch

    work = Path(tempfile.mkdtemp(prefix="vs-official-"))
    weights = work / "vit_b16_random_fp16_values.pt"
    sys.path.insert(0, str(REPO))
    from bench.common import save_random_vit_b16

    save_random_vit_b16(weights, fp16_values=True)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU, fp32, random ViT-B/16, {args.classes} "
          f"classes, batch {args.batch}, evaluation of {args.eval_images} images in batches of {args.eval_batch}; "
          f"{args.rounds} rounds after a warm-up round, the two sides alternating (min, median, seconds)")
    for name, commit in commits.items():
        print(f"  {name} @ {commit}")
    try:
        rows = compare(args, weights, work)
    finally:
        weights.unlink()  # 600 MB; the sides' logs stay in the folder (an error names them)
    from tabulate import tabulate

    print(tabulate(rows, headers="keys", tablefmt="github"))


def compare(args: argparse.Namespace, weights: Path, work: Path) -> list[dict]:
    """One row per method: both sides' step and evaluation times (min / median) and the ratios."""
    rows = []
    for method in args.methods:
        sides = {w: Side(w, method, args, weights, work / f"{method}-{w}.log") for w in ("official", "ours")}
        times = {(w, what): [] for w in sides for what in ("step", "eval")}
        try:
            for r in range(args.rounds + 1):
                order = list(sides) if r % 2 else list(sides)[::-1]
                for what in ("step", "eval"):
                    for w in order:
                        seconds = sides[w].ask(what)
                        if r:
                            times[(w, what)].append(seconds)
        finally:
            for s in sides.values():
                s.close()
        row = {"method": method}
        for what in ("step", "eval"):
            off, ours = times[("official", what)], times[("ours", what)]
            row[f"official {what}"] = f"{min(off):.2f} / {statistics.median(off):.2f}"
            row[f"ours {what}"] = f"{min(ours):.2f} / {statistics.median(ours):.2f}"
            row[f"ours / official {what}"] = f"{statistics.median(ours) / statistics.median(off):.2f}x"
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
