"""train -> export -> predict: a refit model is saved in its zoo's native format, loads in plain
timm / transformers (without autotransfer) with the same probabilities as `autotransfer
predict`, and bad inputs get one-line errors."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import yaml

import autotransfer
from autotransfer.cli import main
from conftest import cli_error

IMAGE_BEST = {
    "backbone": "packaged/mobilenetv2_100",
    "params": {"freeze_fraction": 0.5, "lr": 1.0e-3, "batch_size": 32, "image_size": 64},
    "epochs": 1,
    "metric": "accuracy",
    "val_score": 0.5,
}

# Run with the worktree's packages importable, but the scripts themselves never import them.
TIMM_DIRECT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import timm, torch
    from PIL import Image
    model = timm.create_model(f"local-dir:{sys.argv[1]}", pretrained=True).eval()
    transform = timm.data.create_transform(**timm.data.resolve_data_config({}, model=model))
    files = sorted(Path(sys.argv[2]).rglob("*.png"))
    x = torch.stack([transform(Image.open(f).convert("RGB")) for f in files])
    with torch.inference_mode():
        probs = model(x).softmax(-1)
    print(json.dumps({"imported": sorted(m for m in sys.modules if m.startswith("autotransfer")),
                      "labels": model.pretrained_cfg["label_names"],
                      "files": [str(f) for f in files], "probs": probs.tolist()}))
""")

HF_DIRECT = textwrap.dedent("""
    import json, sys
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoTokenizer
    path, texts = sys.argv[1], sys.argv[2:]
    tokenizer = AutoTokenizer.from_pretrained(path)
    encoder = AutoModel.from_pretrained(path).eval()
    head = load_file(f"{path}/head.safetensors")
    batch = tokenizer(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")
    with torch.inference_mode():
        states = encoder(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (states * mask).sum(1) / mask.sum(1)   # mean pooling, as trained
        probs = (pooled @ head["weight"].T + head["bias"]).softmax(-1)
    labels = [encoder.config.id2label[i] for i in range(probs.shape[1])]
    print(json.dumps({"imported": sorted(m for m in sys.modules if m.startswith("autotransfer")),
                      "labels": labels, "probs": probs.tolist()}))
""")


def _direct(script: str, *args: str) -> dict:
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def _predict_json(capsys, *args: str) -> list[dict]:
    capsys.readouterr()
    main(["predict", *args, "--json"])
    return json.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def image_model(fashion_mnist, tmp_path_factory):
    """A real refit: packaged MobileNetV2 ImageNet weights, 1 epoch on 300 images at 64 px."""
    work = tmp_path_factory.mktemp("refit")
    best = work / "best.yaml"
    best.write_text(yaml.safe_dump({**IMAGE_BEST, "source": {"data": str(fashion_mnist)}}))
    outcome = autotransfer.train(best, out=work / "model")
    return work, outcome


def test_refit_on_train_and_val_is_evaluated_on_the_test_split(image_model):
    _, outcome = image_model
    assert outcome.refit_on == "train+val" and outcome.val is None
    # 10 classes: chance is 0.1; one epoch on pretrained features is well above it
    assert 0.3 < outcome.test["accuracy"] <= 1.0
    meta = json.loads((outcome.model_dir / "autotransfer.json").read_text())
    assert meta["metrics"]["test"] == outcome.test and meta["metrics"]["n_train"] == 300
    assert meta["metrics"]["search_val_score"] == 0.5 and meta["params"]["image_size"] == 64
    config = json.loads((outcome.model_dir / "config.json").read_text())
    assert config["architecture"] == "mobilenetv2_100" and config["num_classes"] == 10
    assert config["label_names"] == meta["classes"]
    assert config["pretrained_cfg"]["input_size"] == [3, 64, 64]
    assert not list(outcome.model_dir.glob("*.bin")) and not list(outcome.model_dir.glob("*.pt"))


def test_timm_alone_loads_the_export_and_predicts_the_same(image_model, fashion_mnist, capsys):
    _, outcome = image_model
    folder = fashion_mnist / "test"
    direct = _direct(TIMM_DIRECT, str(outcome.model_dir), str(folder))
    assert direct["imported"] == []
    ours = _predict_json(capsys, str(outcome.model_dir), str(folder))
    assert [p["input"] for p in ours] == direct["files"] and len(ours) == 100
    mine = np.array([[p["probabilities"][c] for c in direct["labels"]] for p in ours])
    theirs = np.array(direct["probs"])
    assert np.abs(mine - theirs).max() < 1e-4  # timm's own transforms give the same input
    assert (mine.argmax(1) == theirs.argmax(1)).all()


# Runs docs/train-predict.md's "timm alone" block as written, once per image (its model and
# image paths replaced), without autotransfer importable by the block itself.
DOCS_SNIPPET = textwrap.dedent("""
    import json, sys
    block, model, files = open(sys.argv[1]).read(), sys.argv[2], sys.argv[3:]
    found = []
    for f in files:
        scope = {}
        exec(block.replace("docs-model", model)
             .replace("data/fashion-mnist/test/bag/t10k-01566.png", f), scope)
        found.append(scope["probabilities"].tolist())
    print(json.dumps({"imported": sorted(m for m in sys.modules if m.startswith("autotransfer")),
                      "labels": scope["labels"], "probs": found}))
""")


def _timm_alone_block() -> str:
    import re
    from pathlib import Path

    page = (Path(__file__).parents[1] / "docs" / "train-predict.md").read_text()
    section = page.split("### The timm model, with timm alone")[1].split("\n## ")[0]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


def _transparent_pngs(folder, fashion_mnist):
    """A test image as RGBA, LA and palette-with-transparency PNGs whose transparent pixels
    hide black (as icons do): half of each image is fully transparent."""
    from PIL import Image

    folder.mkdir()
    source = Image.open(sorted((fashion_mnist / "test" / "bag").glob("*.png"))[0]).convert("L")
    alpha = Image.new("L", source.size, 255)
    alpha.paste(0, (0, 0, source.width // 2, source.height))
    black = Image.new("L", source.size, 0)
    half = Image.composite(source, black, alpha)  # the transparent half hides black
    rgba = Image.merge("RGBA", (half, half, half, alpha))
    rgba.save(folder / "rgba.png")
    Image.merge("LA", (half, alpha)).save(folder / "la.png")
    palette = half.convert("P")  # grey levels; the black of the hidden half is transparent
    palette.info["transparency"] = palette.getpixel((0, 0))
    palette.save(folder / "p.png", transparency=palette.getpixel((0, 0)))
    return sorted(folder.glob("*.png"))


def test_the_docs_timm_alone_snippet_matches_predict_on_transparent_images(
        image_model, fashion_mnist, capsys, tmp_path):
    """Icons with transparency: autotransfer composites them on white; the docs' snippet must
    do the same, or its probabilities differ from ``autotransfer predict``'s."""
    from PIL import Image

    _, outcome = image_model
    files = _transparent_pngs(tmp_path / "icons", fashion_mnist)
    assert [Image.open(f).mode for f in files] == ["LA", "P", "RGBA"]
    block = tmp_path / "block.py"
    block.write_text(_timm_alone_block())
    direct = _direct(DOCS_SNIPPET, str(block), str(outcome.model_dir), *map(str, files))
    assert direct["imported"] == []
    ours = _predict_json(capsys, str(outcome.model_dir), *map(str, files))
    mine = np.array([[p["probabilities"][c] for c in direct["labels"]] for p in ours])
    theirs = np.array(direct["probs"])
    print(f"largest probability difference: {np.abs(mine - theirs).max():.2e}")
    assert np.abs(mine - theirs).max() < 1e-4


def test_predict_takes_files_folders_and_csv(image_model, fashion_mnist, capsys, tmp_path):
    _, outcome = image_model
    bags = sorted((fashion_mnist / "test" / "bag").glob("*.png"))
    csv = tmp_path / "inputs.csv"
    csv.write_text("path\n" + "\n".join(os.path.relpath(p, tmp_path) for p in bags[:3]) + "\n")
    ours = _predict_json(capsys, str(outcome.model_dir), str(bags[0]),
                         str(fashion_mnist / "test" / "coat"), str(csv))
    assert len(ours) == 1 + 10 + 3
    assert ours[0]["input"] == str(bags[0]) and ours[-1]["input"] == str(bags[2].resolve())
    for p in ours:
        assert abs(sum(p["probabilities"].values()) - 1) < 1e-5
        assert p["label"] == max(p["probabilities"], key=p["probabilities"].get)
    first, again = ours[0]["probabilities"], ours[-3]["probabilities"]  # the same file
    assert max(abs(first[c] - again[c]) for c in first) < 1e-5
    main(["predict", str(outcome.model_dir), str(bags[0])])
    table = capsys.readouterr().out
    assert bags[0].name in table and ours[0]["label"] in table


def test_predict_errors_are_one_line(image_model, tmp_path, capsys):
    _, outcome = image_model
    model = str(outcome.model_dir)
    (tmp_path / "broken.png").write_bytes(b"not a png")
    (tmp_path / "note.txt").write_text("a text")
    (tmp_path / "nopath.csv").write_text("file\nx.png\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "not-a-model").mkdir()
    cases = {
        (str(tmp_path / "nope"), "x.png"): "no such model directory",
        (str(tmp_path / "not-a-model"), "x.png"): "no autotransfer.json",
        (model, str(tmp_path / "missing.png")): "no such file or folder",
        (model, str(tmp_path / "broken.png")): "unreadable image",
        (model, str(tmp_path / "note.txt")): "a text file, but",
        (model, str(tmp_path / "nopath.csv")): "missing column 'path'",
        (model, str(tmp_path / "empty")): "no image files in this folder",
        (model, "--text", "hello"): "--text given, but",
    }
    for args, expected in cases.items():
        assert expected in cli_error(capsys, "predict", *args), args


def test_train_errors_are_one_line(tmp_path, capsys, fashion_mnist):
    (tmp_path / "bad.yaml").write_text("backbone: packaged/mobilenetv2_100\n")
    (tmp_path / "badparam.yaml").write_text(yaml.safe_dump(
        {**IMAGE_BEST, "params": {"lr": -1.0}, "source": {"data": str(fashion_mnist)}}))
    cases = {
        str(tmp_path / "missing.yaml"): "no such file",
        str(tmp_path / "bad.yaml"): "missing key 'params'",
        str(tmp_path / "badparam.yaml"): "params.lr: must be > 0",
    }
    for best, expected in cases.items():
        assert expected in cli_error(capsys, "train", best, "--out", str(tmp_path / "m")), best


@pytest.fixture(scope="module")
def text_model(rotten_tomatoes, tmp_path_factory):
    """A 2-layer BERT (MiniLM's real tokenizer) refit on real review snippets."""
    import transformers

    from autotransfer_packaged import PACKAGED_HF, packaged_files

    work = tmp_path_factory.mktemp("text")
    minilm = packaged_files(PACKAGED_HF["all-MiniLM-L6-v2"])[0].parent
    tokenizer = transformers.AutoTokenizer.from_pretrained(minilm)
    config = transformers.BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32,
                                     num_hidden_layers=2, num_attention_heads=2,
                                     intermediate_size=64)
    transformers.BertModel(config).save_pretrained(work / "tiny-bert")
    tokenizer.save_pretrained(work / "tiny-bert")
    best = {"backbone": f"hf-text/{work / 'tiny-bert'}", "epochs": 1, "metric": "accuracy",
            "params": {"lr": 1e-3, "batch_size": 32, "max_length": 32, "pooling": "mean"},
            "source": {"data": str(rotten_tomatoes)}}
    return autotransfer.train(best, out=work / "model")


def test_transformers_alone_loads_the_text_export_and_predicts_the_same(text_model, capsys):
    texts = ["A wonderful, moving film.", "Dull, and far too long for what it has to say."]
    direct = _direct(HF_DIRECT, str(text_model.model_dir), *texts)
    assert direct["imported"] == []
    ours = autotransfer.predict(text_model.model_dir, texts=texts)
    mine = np.array([[p.probabilities[c] for c in direct["labels"]] for p in ours])
    assert np.abs(mine - np.array(direct["probs"])).max() < 1e-5
    assert (text_model.model_dir / "tokenizer.json").is_file()
    assert not list(text_model.model_dir.glob("*.bin"))


def test_refit_on_train_only_keeps_the_validation_split(text_model, rotten_tomatoes, tmp_path,
                                                       capsys):
    assert text_model.refit_on == "train+val" and text_model.test is None  # no test split
    best = tmp_path / "best.yaml"
    best.write_text(yaml.safe_dump({
        "backbone": f"hf-text/{text_model.model_dir.parent / 'tiny-bert'}", "epochs": 1,
        "params": {"lr": 1e-3, "batch_size": 32, "max_length": 32}, "val_score": 0.61,
    }))
    main(["train", str(best), "--data", str(rotten_tomatoes), "--out", str(tmp_path / "m"),
          "--refit-on", "train"])
    out = capsys.readouterr().out
    meta = json.loads((tmp_path / "m" / "autotransfer.json").read_text())
    assert meta["metrics"]["refit_on"] == "train" and meta["metrics"]["n_train"] == 160
    assert 0.0 <= meta["metrics"]["val"]["accuracy"] <= 1.0
    assert "search val accuracy 0.6100; refit val accuracy" in out and "no test split" in out


def test_predict_reads_text_csv_jsonl_and_txt(text_model, tmp_path, capsys):
    (tmp_path / "reviews.csv").write_text("review,stars\nGreat fun.,5\nA bore.,1\n")
    (tmp_path / "one.txt").write_text("Sharp and funny.\n")
    (tmp_path / "more.jsonl").write_text('{"review": "Tedious."}\n')
    ours = _predict_json(capsys, str(text_model.model_dir), str(tmp_path / "reviews.csv"),
                         str(tmp_path / "one.txt"), str(tmp_path / "more.jsonl"),
                         "--text-column", "review")
    assert [p["input"] for p in ours] == [f"{tmp_path / 'reviews.csv'}:2",
                                          f"{tmp_path / 'reviews.csv'}:3",
                                          str(tmp_path / "one.txt"), f"{tmp_path / 'more.jsonl'}:1"]
    assert {p["label"] for p in ours} <= {"fresh", "rotten"}
    err = cli_error(capsys, "predict", str(text_model.model_dir), str(tmp_path / "reviews.csv"))
    assert "missing column 'text'" in err
    (tmp_path / "x.png").write_bytes(b"")
    err = cli_error(capsys, "predict", str(text_model.model_dir), str(tmp_path / "x.png"))
    assert "an image file, but" in err and "classifies text" in err


def test_import_autotransfer_stays_light_and_exposes_the_api():
    code = ("import sys, autotransfer; heavy = [m for m in ('torch', 'timm', 'transformers', "
            "'optuna') if m in sys.modules]; assert not heavy, heavy; "
            "assert all(callable(getattr(autotransfer, n)) for n in ('search', 'train', "
            "'predict'))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr


def _fake_study(storage: str, name: str, n: int):
    """A study with ``n`` finished trials of two backbones (no training needed)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    rng = np.random.default_rng(0)
    dists = {"backbone": CategoricalDistribution(["a/one", "b/two"]),
             "lr": FloatDistribution(1e-4, 1e-2, log=True),
             "freeze_fraction": FloatDistribution(0.0, 1.0)}
    for i in range(n):
        params = {"backbone": ["a/one", "b/two"][i % 2], "lr": float(10 ** rng.uniform(-4, -2)),
                  "freeze_fraction": float(rng.uniform())}
        value = 0.5 + 0.3 * params["freeze_fraction"] + (0.1 if i % 2 else 0.0)
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=dists, value=value,
            user_attrs={"backbone": params["backbone"], "params": params},
            intermediate_values={1: value}))
    return study


def test_report_writes_plots_and_markdown(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    _fake_study(storage, "twelve", 12)
    main(["report", "--study", "twelve", "--storage", storage, "--out", str(tmp_path / "rep")])
    out = tmp_path / "rep"
    for name in ("optimization_history", "score_per_backbone", "param_importances"):
        assert (out / f"{name}.png").stat().st_size > 5000, name
        assert "plotly" in (out / f"{name}.html").read_text(), name
    report = (out / "report.md").read_text()
    assert "## Best per backbone" in report and "`b/two`" in report
    assert "| `freeze_fraction` |" in report  # the parameter the score depends on
    assert (out / "leaderboard.csv").read_text().count("\n") == 13
    assert "report of study 'twelve'" in capsys.readouterr().out


def test_report_of_a_tiny_study_says_why_importances_are_missing(tmp_path, capsys):
    storage = f"sqlite:///{tmp_path / 'r.db'}"
    _fake_study(storage, "one", 1)
    main(["report", "--study", "one", "--storage", storage, "--out", str(tmp_path / "rep")])
    report = (tmp_path / "rep" / "report.md").read_text()
    assert "Not computed: 1 completed trial(s)" in report
    assert (tmp_path / "rep" / "optimization_history.png").is_file()
    err = cli_error(capsys, "report", "--study", "nope", "--storage", storage,
                    "--out", str(tmp_path / "x"))
    assert "no study 'nope'" in err and "one" in err
