import csv
import io
import json
import sys
from pathlib import Path

import pytest

from comparison.base2new import base2new
from comparison.command import main
from comparison.fewshot import few_shot
from comparison.reported import Reported, load_reported
from comparison.transfer import transfer
from comparison.tree import Method, Selection, method_labels
from engine.errors import UserError
from engine.summary import harmonic_mean
from tests.manifests import whole_manifest

REPO = Path(__file__).resolve().parents[1]
B2N_HEADER = ("dataset,method,config,shots,seeds,base_mean,base_std,new_mean,new_std,hm_of_means,hm_per_seed_mean,"
              "hm_per_seed_std")


def put(run_dir: Path, acc: float | None, subsample: str | None = None) -> None:
    run_dir.mkdir(parents=True)
    evaluations = {} if acc is None else {"test": {"metrics": {"accuracy": acc}}}
    meta = {"subsample": subsample} if subsample else {}
    manifest = whole_manifest(subsample=subsample or "all")
    (run_dir / "results.json").write_text(json.dumps({**meta, "evaluations": evaluations, "manifest": manifest}))


def b2n(root, part, dataset, trainer, seed, acc, cfg="cfg"):
    subsample = "base" if part == "train_base" else "new"
    put(root / "base2new" / part / dataset / "shots_16" / trainer / cfg / f"seed{seed}", acc, subsample)


def xd(root, part, dataset, trainer, seed, acc):
    put(root / "cross_dataset" / part / dataset / "shots_16" / trainer / "cfg" / f"seed{seed}", acc)


def fs(root, dataset, shots, trainer, seed, acc):
    put(root / "few_shot" / dataset / f"shots_{shots}" / trainer / "cfg" / f"seed{seed}", acc)


def run(argv, capsys) -> tuple[str, str]:
    main([str(a) for a in argv])
    captured = capsys.readouterr()
    return captured.out, captured.err


@pytest.fixture
def b2n_tree(tmp_path):
    """CoOp on dtd (seeds 1-2, and a seed 3 without its test_new run) and eurosat; ZeroshotCLIP on dtd,
    plus a test_new run on eurosat without its train_base run."""
    for dataset, seed, base, new in (("dtd", 1, 80, 60), ("dtd", 2, 90, 40),
                                     ("eurosat", 1, 70, 70), ("eurosat", 2, 70, 50)):
        b2n(tmp_path, "train_base", dataset, "CoOp", seed, base)
        b2n(tmp_path, "test_new", dataset, "CoOp", seed, new)
    b2n(tmp_path, "train_base", "dtd", "CoOp", 3, 75)
    b2n(tmp_path, "train_base", "dtd", "ZeroshotCLIP", 1, 60)
    b2n(tmp_path, "test_new", "dtd", "ZeroshotCLIP", 1, 70)
    b2n(tmp_path, "test_new", "eurosat", "ZeroshotCLIP", 1, 65)
    return tmp_path


def test_base2new_rows_both_hm_conventions_and_average(b2n_tree):
    result = base2new(b2n_tree, Selection(), [])
    rows = {(r.dataset, r.method): r for r in result.rows}
    assert result.datasets == ["dtd", "eurosat"]
    dtd = rows["dtd", "CoOp"]
    assert dtd.base == (85.0, 5.0, 2) and dtd.new == (50.0, 10.0, 2)  # std over seeds with ddof 0
    assert dtd.hm_of_means == pytest.approx(2 * 85 * 50 / 135)  # 62.96: HM of the means
    assert dtd.hm_per_seed.mean == pytest.approx((9600 / 140 + 7200 / 130) / 2)  # 61.98: mean of HM(80,60), HM(90,40)
    assert dtd.hm_per_seed.std == pytest.approx((9600 / 140 - 7200 / 130) / 2)
    average = rows["average", "CoOp"]
    assert average.covers == (2, 2) and average.base == (77.5, 2.5, 2) and average.new == (55.0, 10.0, 2)
    assert average.hm_of_means == pytest.approx(harmonic_mean(77.5, 55.0))  # HM of the averaged Base and New
    assert average.hm_per_seed.mean == pytest.approx((harmonic_mean(75, 65) + harmonic_mean(80, 45)) / 2)
    zero_shot = rows["average", "ZeroshotCLIP"]
    assert zero_shot.covers == (1, 2) and zero_shot.base.mean == 60.0 and zero_shot.new.mean == 70.0
    assert result.partial == ["ZeroshotCLIP: average over 1 of the 2 datasets (none for eurosat)"]
    assert result.missing == [
        "base2new/test_new/dtd/shots_16/CoOp/cfg/seed3: not run (its train_base run exists)",
        "base2new/train_base/eurosat/shots_16/ZeroshotCLIP/cfg/seed1: not run (its test_new run exists)",
        "CoOp, eurosat: no seed3 run (it has that seed elsewhere in this table)",
    ]


def test_base2new_markdown_table(b2n_tree, capsys):
    out, _ = run([b2n_tree, "--format", "md"], capsys)
    headers = [h.strip() for h in out.splitlines()[0].split("|")[1:-1]]
    assert headers == ["dataset", "method", "shots", "Base", "New", "HM", "seeds"]
    assert "| dtd           | CoOp         | 16      | 85.00 ± 5.00 | 50.00 ± 10.00 | 62.96 | 2       |" in out
    assert "| average (1/2) | ZeroshotCLIP | 16      | 60.00 ± 0.00 | 70.00 ± 0.00  | 64.62 | 1       |" in out
    assert "\n\n- HM = 2·B·N/(B+N) of the mean Base and mean New" in out  # a blank line ends the md table
    assert "  - base2new/test_new/dtd/shots_16/CoOp/cfg/seed3: not run (its train_base run exists)" in out


def test_base2new_csv_columns_and_values(b2n_tree, capsys):
    out, err = run([b2n_tree, "--format", "csv"], capsys)
    assert out.splitlines()[0] == B2N_HEADER
    rows = {(r["dataset"], r["method"]): r for r in csv.DictReader(io.StringIO(out))}
    assert list(rows) == [("dtd", "CoOp"), ("dtd", "ZeroshotCLIP"), ("eurosat", "CoOp"),
                          ("average", "CoOp"), ("average", "ZeroshotCLIP")]
    assert rows["dtd", "CoOp"] == {
        "dataset": "dtd", "method": "CoOp", "config": "cfg", "shots": "16", "seeds": "2", "base_mean": "85.0000",
        "base_std": "5.0000", "new_mean": "50.0000", "new_std": "10.0000", "hm_of_means": "62.9630",
        "hm_per_seed_mean": "61.9780", "hm_per_seed_std": "6.5934"}
    assert rows["average", "CoOp"]["hm_of_means"] == "64.3396" and rows["average", "CoOp"]["seeds"] == "2"
    assert "HM = 2·B·N/(B+N)" in err and "ZeroshotCLIP: average over 1 of the 2 datasets" in err  # notes off stdout


def test_reported_rows_are_added_and_marked(b2n_tree, capsys):
    out, _ = run([b2n_tree, "--format", "md", "--reported", "--methods", "CoOp", "MaPLe"], capsys)
    assert "| average   | MaPLe (reported) |         | 82.28        | 75.14         | 78.55 |         |" in out
    table = out.split("\n\n")[0]
    assert "CoOp (reported)" in table and "ZeroshotCLIP" not in table and "PromptSRC" not in table
    assert "- (reported): published numbers from comparison/reported_results.csv" in out
    out, _ = run([b2n_tree, "--format", "csv", "--reported"], capsys)
    promptsrc = next(r for r in csv.DictReader(io.StringIO(out)) if r["method"] == "PromptSRC (reported)")
    assert promptsrc["dataset"] == "average" and promptsrc["hm_of_means"] == "79.9700" and promptsrc["seeds"] == ""
    dear = next(r for r in csv.DictReader(io.StringIO(out)) if r["method"] == "DeAR (reported)" and r["dataset"] == "average")
    assert (dear["base_mean"], dear["new_mean"], dear["hm_of_means"]) == ("85.9400", "", "")


def test_reported_file_rows_are_consistent_and_sourced():
    rows = load_reported("base2new")
    assert {r.method for r in rows} == {"ZeroshotCLIP", "CoOp", "CoCoOp", "MaPLe", "IVLP", "PromptSRC", "DeAR", "MMRL"}
    for row in rows:
        if row.method == "DeAR":  # Base only, as the DeAR paper's comparison is quoted in the DeAR issue
            assert row.source.startswith("DeAR paper") and row.new is None and row.hm is None, row
            continue
        paper = row.method == "MMRL"  # its README gives no numbers: the paper's table, cited with its arXiv version
        assert row.source.startswith("MMRL paper (Guo & Gu, CVPR 2025, arXiv 2503.08497v2)" if paper
                                     else "https://github.com/"), row
        assert round(harmonic_mean(row.base, row.new), 2) == row.hm, row  # the average is HM of averaged B and N
        assert (REPO / "configs" / "trainers" / row.method).is_dir(), row
        assert not row.config or (REPO / "configs" / "trainers" / row.method / f"{row.config}.yaml").is_file(), row
    assert {(r.dataset, r.base) for r in rows if r.method == "DeAR"} == {("average", 85.94), ("imagenet", 78.12),
                                                                         ("dtd", 83.9)}
    assert [(r.dataset, r.base, r.new, r.hm) for r in rows if r.method == "MMRL"] == [("average", 85.68, 77.16, 81.20)]
    assert load_reported("xd") == [] and load_reported("dg") == []


def test_untested_and_mislaid_runs(tmp_path):
    b2n(tmp_path, "train_base", "dtd", "CoOp", 1, 80)
    b2n(tmp_path, "test_new", "dtd", "CoOp", 1, None)  # no test evaluation yet
    result = base2new(tmp_path, Selection(), [])
    assert result.rows == [] and result.missing[0] == (
        "base2new/test_new/dtd/shots_16/CoOp/cfg/seed1: its results.json has no test accuracy (not finished, or "
        "TEST.NO_TEST)")
    put(tmp_path / "base2new" / "train_base" / "dtd" / "shots_16" / "CoOp" / "cfg" / "seed2", 70, "new")
    with pytest.raises(UserError, match="holds an evaluation on the 'new' classes"):
        base2new(tmp_path, Selection(), [])


def test_a_method_without_a_dataset_others_have_is_listed(tmp_path):
    for trainer, dataset in (("CoOp", "dtd"), ("CoOp", "eurosat"), ("MaPLe", "dtd")):
        b2n(tmp_path, "train_base", dataset, trainer, 1, 80)
        b2n(tmp_path, "test_new", dataset, trainer, 1, 70)
    result = base2new(tmp_path, Selection(), [])
    assert result.missing == ["MaPLe: no eurosat runs (other methods have them)"]
    assert [r.dataset for r in result.rows if r.method == "MaPLe"] == ["dtd", "average"]


def test_method_labels():
    a, b = Method("DeAR", "a", 16), Method("DeAR", "b", 16)
    coop = Method("CoOp", "x", 16)
    assert method_labels([a, b, coop]) == {a: "DeAR (a)", b: "DeAR (b)", coop: "CoOp"}
    four, sixteen = Method("CoOp", "x", 4), Method("CoOp", "x", 16)
    assert method_labels([four, sixteen]) == {four: "CoOp (x, 4 shots)", sixteen: "CoOp (x, 16 shots)"}


@pytest.fixture
def xd_tree(tmp_path):
    for seed, source, caltech, dtd in ((1, 70, 90, 40), (2, 72, 92, 44)):
        xd(tmp_path, "train", "imagenet", "CoOp", seed, source)
        xd(tmp_path, "test", "caltech101", "CoOp", seed, caltech)
        xd(tmp_path, "test", "dtd", "CoOp", seed, dtd)
    xd(tmp_path, "test", "imagenetv2", "CoOp", 1, 60)
    xd(tmp_path, "test", "imagenet", "ZeroshotCLIP", 1, 66)  # zero-shot: its source figure is an eval run
    xd(tmp_path, "test", "caltech101", "ZeroshotCLIP", 1, 93)
    return tmp_path


def test_cross_dataset_table(xd_tree, capsys):
    result = transfer(xd_tree, "xd", Selection(), [])
    coop, zero_shot = result.rows
    assert result.targets == ["caltech101", "dtd"]
    assert coop.cells == {"imagenet": (71.0, 1.0, 2), "caltech101": (91.0, 1.0, 2), "dtd": (42.0, 2.0, 2)}
    assert coop.average == (66.5, 1.5, 2) and coop.covers == (2, 2)  # per-seed averages 65 and 68
    assert zero_shot.cells["imagenet"] == (66.0, 0.0, 1) and zero_shot.average == (93.0, 0.0, 1)
    assert result.missing == ["ZeroshotCLIP: no dtd run (other methods have one)"]
    assert result.partial == ["ZeroshotCLIP: average over 1 of the 2 targets"]
    out, _ = run([xd_tree, "--protocol", "xd", "--format", "md"], capsys)
    assert "| ZeroshotCLIP | 16      | 66.00 ± 0.00        | 93.00 ± 0.00 | -            | 93.00 ± 0.00 (1/2) | 1 " in out
    out, _ = run([xd_tree, "--protocol", "xd", "--format", "csv"], capsys)
    assert out.splitlines()[0] == "dataset,role,method,config,shots,seeds,acc_mean,acc_std"
    assert "imagenet,source,CoOp,cfg,16,2,71.0000,1.0000" in out and "average,average,CoOp,cfg,16,2,66.5000,1.5000" in out


def test_domain_generalisation_table(xd_tree, capsys):
    result = transfer(xd_tree, "dg", Selection(), [])
    assert result.targets == ["imagenetv2"]
    coop, zero_shot = result.rows
    assert coop.cells["imagenetv2"] == (60.0, 0.0, 1) and coop.average == (60.0, 0.0, 1)
    assert zero_shot.average is None
    assert result.missing == ["CoOp, imagenetv2: no seed2 run (it has that seed elsewhere in this table)",
                              "ZeroshotCLIP: no imagenetv2 run (other methods have one)"]


def test_transfer_published_rows(xd_tree):
    published = [Reported("xd", "caltech101", "CoOp", "c", None, None, None, 93.7, "a source"),
                 Reported("xd", "average", "CoOp", "c", None, None, None, 63.9, "a source")]
    row = transfer(xd_tree, "xd", Selection(), published).rows[-1]
    assert row.method == "CoOp (reported)" and row.published
    assert row.cells == {"caltech101": (93.7, None, None)} and row.average == (63.9, None, None)


def test_few_shot_table(tmp_path, capsys):
    for dataset, shots, accs in (("dtd", 1, (40, 50)), ("dtd", 16, (60, 70)), ("eurosat", 1, (70, 80)),
                                 ("eurosat", 16, (80, 90))):
        for seed, acc in enumerate(accs, start=1):
            fs(tmp_path, dataset, shots, "CoOp", seed, acc)
    fs(tmp_path, "dtd", 4, "CoOp", 1, 55)  # 4 shots: dtd only, one seed
    fs(tmp_path, "dtd", 16, "Tip", 1, 50)
    fs(tmp_path, "dtd", 0, "ZeroshotCLIP", 1, 45)  # zero-shot: shots_0, as tools/sweep.py files it
    fs(tmp_path, "eurosat", 0, "ZeroshotCLIP", 1, 65)
    result = few_shot(tmp_path, Selection())
    rows = {(r.dataset, r.method): r for r in result.rows}
    assert result.shots == [0, 1, 4, 16]
    assert rows["dtd", "CoOp"].cells == {1: (45.0, 5.0, 2), 4: (55.0, 0.0, 1), 16: (65.0, 5.0, 2)}
    assert rows["average", "CoOp"].cells == {1: (60.0, 5.0, 2), 4: (55.0, 0.0, 1), 16: (75.0, 5.0, 2)}
    assert rows["average", "CoOp"].covers == {1: (2, 2), 4: (1, 2), 16: (2, 2)}
    assert rows["average", "ZeroshotCLIP"].cells == {0: (55.0, 0.0, 1)}
    assert rows["average", "Tip"].cells == {16: (50.0, 0.0, 1)} and rows["average", "Tip"].covers == {16: (1, 2)}
    assert result.missing == ["CoOp, eurosat: no 4-shot runs (it has them elsewhere)",
                              "CoOp, dtd 4 shots: no seed2 run (it has that seed elsewhere in this table)",
                              "Tip: no eurosat runs (other methods have them)"]
    assert result.partial == ["CoOp: 4-shot average over 1 of the 2 datasets", "Tip: 16-shot average over 1 of the 2 datasets"]
    out, _ = run([tmp_path, "--protocol", "fewshot", "--format", "plain"], capsys)
    assert "average    Tip           -             -             -                   50.00 ± 0.00 (1/2)  1" in out
    out, _ = run([tmp_path, "--protocol", "fewshot", "--format", "csv"], capsys)
    assert out.splitlines()[:2] == ["dataset,method,config,shots,seeds,acc_mean,acc_std",
                                    "dtd,CoOp,cfg,1,2,45.0000,5.0000"]


@pytest.mark.parametrize("protocol, tree", [("base2new", "base2new"), ("xd", "cross_dataset"), ("dg", "cross_dataset"),
                                            ("fewshot", "few_shot")])
def test_no_results_names_the_tree(tmp_path, protocol, tree):
    with pytest.raises(UserError, match=f"No .* results under {tmp_path / tree}"):
        main([str(tmp_path), "--protocol", protocol])


def test_filters_and_their_errors(xd_tree, b2n_tree):
    result = base2new(b2n_tree, Selection(("CoOp/cfg",), ("dtd",)), [])
    assert [(r.dataset, r.method) for r in result.rows] == [("dtd", "CoOp")]  # one dataset: no average row
    (xd_tree / "cross_dataset" / "test" / "imagenetv2").rename(xd_tree / "elsewhere")
    with pytest.raises(UserError, match=r"No domain-generalisation targets \(imagenetv2, imagenet_sketch"):
        main([str(xd_tree), "--protocol", "dg"])
    with pytest.raises(UserError, match=r"Unknown --methods MaPle \(runs under .*\): choose from CoOp, CoOp/cfg, Zero"):
        main([str(b2n_tree), "--methods", "MaPle"])
    with pytest.raises(UserError, match=r"Unknown --datasets caltech \(runs under .*\): choose from dtd, eurosat"):
        main([str(b2n_tree), "--datasets", "caltech"])


def test_plots_are_written_and_reproducible(b2n_tree, xd_tree, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    first, second = tmp_path / "a.png", tmp_path / "b.png"
    run([b2n_tree, "--plot", first, "--reported"], capsys)
    run([b2n_tree, "--plot", second, "--reported"], capsys)
    assert first.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and first.read_bytes() == second.read_bytes()
    run([xd_tree, "--protocol", "xd", "--plot", tmp_path / "xd.png"], capsys)
    fs(tmp_path, "dtd", 16, "CoOp", 1, 60)
    run([tmp_path, "--protocol", "fewshot", "--plot", tmp_path / "fewshot.png"], capsys)
    assert (tmp_path / "xd.png").read_bytes()[:4] == (tmp_path / "fewshot.png").read_bytes()[:4] == b"\x89PNG"


def test_plot_without_matplotlib_says_how_to_install(b2n_tree, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(UserError, match="pip install matplotlib"):
        main([str(b2n_tree), "--plot", str(tmp_path / "x.png")])


def test_report_holds_the_regenerate_command_table_notes_and_plot(b2n_tree, tmp_path, capsys):
    report = tmp_path / "results" / "report.md"
    report.parent.mkdir()
    run([b2n_tree, "--report", str(report), "--title", "Tiny world", "--regenerate", "bash make_it.sh"], capsys)
    text = report.read_text()
    lines = text.splitlines()
    assert lines[0] == "# Tiny world" and lines[2] == "Regenerate with `bash make_it.sh`."
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines if line.startswith("| dtd ")]
    assert ["dtd", "CoOp", "16", "85.00 ± 5.00", "50.00 ± 10.00", "62.96", "2"] in cells
    assert ("- ± is the standard deviation over seeds (ddof 0, as CoOp's parse_test_res.py); seeds: the seeds found "
            "per cell; shots: training shots per class.") in lines
    assert lines[-1] == "![Tiny world](report.png)" and (tmp_path / "results" / "report.png").stat().st_size > 1000


def text_boxes(fig):
    """Window boxes of every visible, non-empty text of a drawn figure (ticks, titles, legend, notes)."""
    from matplotlib.text import Text

    renderer = fig.canvas.get_renderer()
    return [(t.get_text(), t.get_window_extent(renderer)) for t in fig.findobj(Text)
            if t.get_visible() and t.get_text().strip()]


@pytest.mark.parametrize("protocol", ["base2new", "xd", "fewshot"])
def test_plot_labels_never_overlap(tmp_path, protocol):
    """Twelve methods with long names and near-identical results on eleven datasets: no text of the
    figure overlaps another, and the legend covers no axes (labels at the points overlapped)."""
    pytest.importorskip("matplotlib")
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from comparison.plot import plot_base2new, plot_fewshot, plot_transfer
    from comparison.tree import DATASET_ORDER

    methods = [f"Method{i} (vit_b16_c2_ep5_batch4)" for i in range(12)]
    for i, method in enumerate(methods):
        for dataset in DATASET_ORDER[:11]:
            if protocol == "base2new":
                b2n(tmp_path, "train_base", dataset, method, 1, 80 + 0.01 * i)
                b2n(tmp_path, "test_new", dataset, method, 1, 70 + 0.01 * i)
            elif protocol == "xd":
                xd(tmp_path, "train" if dataset == "imagenet" else "test", dataset, method, 1, 60 + 0.01 * i)
            else:
                for shots in (1, 2, 4, 8, 16):
                    fs(tmp_path, dataset, shots, method, 1, 50 + shots + 0.01 * i)
    if protocol == "base2new":
        fig = plot_base2new(base2new(tmp_path, Selection(), []))
    elif protocol == "xd":
        fig = plot_transfer(transfer(tmp_path, "xd", Selection(), []))
    else:
        fig = plot_fewshot(few_shot(tmp_path, Selection()))
    FigureCanvasAgg(fig)
    fig.canvas.draw()
    boxes = text_boxes(fig)
    assert sum(text in methods for text, _ in boxes) == 12  # every method is named once, in the legend
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            overlap = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0), min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            assert min(overlap) <= 0.5, f"{a!r} overlaps {b!r}"
    renderer = fig.canvas.get_renderer()
    for ax in fig.axes:
        legend = ax.get_legend()
        if legend is not None:
            for other in fig.axes:
                inner = other.get_window_extent(renderer)
                lb = legend.get_window_extent(renderer)
                assert min(lb.x1, inner.x1) - max(lb.x0, inner.x0) <= 0 or min(lb.y1, inner.y1) - max(lb.y0, inner.y0) <= 0
