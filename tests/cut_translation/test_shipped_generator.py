"""The cats -> dogs generator shipped in docs/weights/cut: small, listed, and loading it
reproduces the held-out check stored in it at export (content and change on the run's first 16
held-out cats); the translate command turns a photo into a dog-domain image of the same size."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core_ssl.checkpoint import read_safetensors_metadata
from cut_translation import export, translate

SHIPPED = Path(__file__).resolve().parents[2] / "docs" / "weights" / "cut" / "catdog-64-cut.safetensors"


def test_shipped_generator_is_small_listed_and_reproduces_its_check():
    assert SHIPPED.stat().st_size < 20 * 2**20
    assert f"`{SHIPPED.name}`" in (SHIPPED.parent / "weights.md").read_text()
    metadata = read_safetensors_metadata(SHIPPED)
    stored = json.loads(metadata["check"])
    model, run = translate.load_generator(SHIPPED)
    assert run["data"] == "catdog-128.zip" and run["size"] == 64
    measured = export.held_out_check(model, run, stored["images"])
    assert measured["images"] == stored["images"] == 16
    # bf16 autocast on another CPU may round a few pixels differently
    assert measured["content"] == pytest.approx(stored["content"], abs=5e-3)
    assert measured["change"] == pytest.approx(stored["change"], abs=5e-3)
    # it translates: the output keeps most of the input's edges and still changes the image
    assert 0.5 < measured["content"] < 0.99 and measured["change"] > 0.02


def test_translate_command_turns_a_photo_with_the_shipped_generator(tmp_path, cat_photo):
    written = translate.main(["--checkpoint", str(SHIPPED), "--input", str(cat_photo), "--output", str(tmp_path / "out"),
                              "--device", "cpu"])
    assert written == [tmp_path / "out" / "cat.png"]
    with Image.open(written[0]) as image:
        assert image.size == (128, 128) and image.mode == "RGB"
        out = np.asarray(image).astype(np.float64)
    with Image.open(cat_photo) as original:
        source = np.asarray(original.convert("RGB")).astype(np.float64)
    assert np.abs(out - source).mean() > 2.0  # not the identity
