"""``cut_translation.translate``: the inputs are never replaced, every input gets its own output,
16-bit and unreadable images, and files that are not CUT generators."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core_ssl.checkpoint import CheckpointError, export_weights
from core_ssl.cli import UsageError, run_command
from core_ssl.data import scale_16bit
from cut_translation import translate
from cut_translation.model import CUTSettings
from cut_translation.networks import ResnetGenerator

ROOT = Path(__file__).resolve().parents[2]


def tiny_model(channels: int = 3) -> translate.LoadedGenerator:
    settings = CUTSettings.for_mode("cut", in_channels=channels, ngf=4, n_blocks=1)
    return translate.LoadedGenerator(ResnetGenerator(channels, channels, ngf=4, n_blocks=1).eval(), settings)


def test_an_output_folder_that_is_the_input_folder_is_refused_and_the_photos_kept(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.new("RGB", (8, 8), (10, 200, 30)).save(photos / "cat.png")
    before = (photos / "cat.png").read_bytes()
    with pytest.raises(SystemExit) as stopped:
        run_command(translate.main, ["--checkpoint", str(tmp_path / "missing.safetensors"), "--input", str(photos),
                                     "--output", str(photos)])
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip() == (f"error: --output {photos} is the folder of the input images: the "
                                               "translations would replace or mix with them — give another --output folder")
    assert (photos / "cat.png").read_bytes() == before and sorted(p.name for p in photos.iterdir()) == ["cat.png"]
    inputs = [photos / "a" / "x.png", photos / "a" / "a" / "x.png"]  # --output photos/a puts a/x.png on a/a/x.png
    with pytest.raises(UsageError, match=f"--output {photos / 'a'} would replace the input image {inputs[1]}"):
        translate.output_paths(inputs, photos, photos / "a")


def test_inputs_sharing_a_name_get_one_output_each(tmp_path):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8), (250, 0, 0)).save(tmp_path / "in" / "x.jpg")
    Image.new("RGB", (8, 8), (0, 0, 250)).save(tmp_path / "in" / "x.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "y.png")
    files, root = translate.list_inputs(tmp_path / "in")
    written = translate.translate_files(tiny_model(), files, root, tmp_path / "out")
    assert written == [tmp_path / "out" / name for name in ("x.jpg.png", "x.png.png", "y.png")]
    assert all(path.is_file() for path in written)


def test_a_16_bit_grey_png_is_scaled_not_read_as_white(tmp_path):
    values = np.linspace(0, 65535, 16 * 16).round().astype(np.uint16).reshape(16, 16)
    Image.fromarray(values).save(tmp_path / "depth.png")
    with Image.open(tmp_path / "depth.png") as image:
        assert image.mode.startswith("I;16") or image.mode == "I"
    grey, colour = translate.read_images([tmp_path / "depth.png"], 1)[0], translate.read_images([tmp_path / "depth.png"], 3)[0]
    assert torch.equal(grey[0], scale_16bit(values.astype(np.int64)))
    assert torch.equal(colour, grey.expand(3, -1, -1))


def test_an_unreadable_image_is_skipped_and_named_and_the_rest_translated(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "in" / "good.png")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files, root = translate.list_inputs(tmp_path / "in")
    written = translate.translate_files(tiny_model(), files, root, tmp_path / "out")
    assert written == [tmp_path / "out" / "good.png"]
    err = capsys.readouterr().err
    assert "skipped 1 of 2 image(s) that cannot be read: cannot read image" in err and "broken.png" in err
    with pytest.raises(ValueError, match="no image could be translated: cannot read image .*broken.png"):
        translate.translate_files(tiny_model(), [tmp_path / "in" / "broken.png"], root, tmp_path / "out2")


def test_an_image_too_large_to_decode_safely_is_refused_by_name(tmp_path, monkeypatch):
    Image.new("L", (32, 32)).save(tmp_path / "huge.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 32 x 32 is then a "decompression bomb", as 13500 x 13500 is
    with pytest.raises(ValueError, match=r"cannot read image .*huge.png: Image size \(1024 pixels\) exceeds limit .* "
                                         r"Downscale it first"):
        translate.read_images([tmp_path / "huge.png"], 1)


def test_a_vision_encoder_or_mismatched_weights_are_refused_in_one_line(tmp_path):
    with pytest.raises(CheckpointError, match="simclr.safetensors is not a CUT generator: its architecture metadata "
                                              "has no in_channels, ngf, n_blocks, nce_layers"):
        translate.load_generator(ROOT / "docs" / "weights" / "vision" / "simclr.safetensors")
    wider = ResnetGenerator(3, 3, ngf=8, n_blocks=1)
    settings = CUTSettings.for_mode("cut", ngf=4, n_blocks=1)
    export_weights(wider.state_dict(), tmp_path / "g.safetensors", metadata={"settings": json.dumps(settings.to_dict())})
    with pytest.raises(CheckpointError) as info:
        translate.load_generator(tmp_path / "g.safetensors")
    message = str(info.value)
    assert message.startswith(f"the weights in {tmp_path / 'g.safetensors'} do not fit the network its settings "
                              "describe (size mismatch for ")
    assert "\n" not in message and message.endswith("export it again from its run")
