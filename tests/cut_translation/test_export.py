"""A generator exported to safetensors (fp16, architecture in the metadata) loads and translates
a real photo with the translate command."""

import importlib
import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from core_ssl.checkpoint import export_weights, save_checkpoint
from core_ssl.cli import run_command
from cut_translation import export, translate
from cut_translation.model import CUTSettings
from cut_translation.networks import ResnetGenerator


def tiny_generator():
    torch.manual_seed(0)
    settings = CUTSettings.for_mode("cut", ngf=4, n_blocks=1)
    generator = ResnetGenerator(3, 3, settings.ngf, settings.n_blocks, settings.nce_layers)
    with torch.no_grad():  # weights of ordinary magnitude (the 0.02-gain init is all near 0)
        for parameter in generator.parameters():
            parameter.normal_(0.0, 0.3)
    return generator.eval(), settings


def test_fp16_export_loads_and_translates_a_photo(tmp_path, cat_photo):
    generator, settings = tiny_generator()
    run = {"data": "catdog-128.zip", "size": 64, "holdout": 200, "seed": 0}
    path = export.export_generator(generator, settings, tmp_path / "g16.safetensors", run=run, dtype=torch.float16)
    full = export.export_generator(generator, settings, tmp_path / "g32.safetensors", run=run)
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata()
        assert all(f.get_tensor(name).dtype == torch.float16 for name in f.keys())
    assert metadata["format"] == export.GENERATOR_FORMAT and metadata["dtype"] == "float16"
    assert json.loads(metadata["architecture"]) == {"in_channels": 3, "out_channels": 3, "ngf": 4, "n_blocks": 1,
                                                    "nce_layers": list(settings.nce_layers)}
    assert path.stat().st_size < 0.6 * full.stat().st_size  # half the bytes per weight

    loaded, loaded_run = translate.load_generator(path)
    assert loaded_run == run and loaded.settings == settings
    # the loaded generator is the original with its weights rounded to fp16
    rounded = ResnetGenerator(3, 3, 4, 1, settings.nce_layers).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in generator.state_dict().items()})
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    assert torch.allclose(loaded.translate(x), rounded(x), atol=1e-5)
    assert not torch.allclose(loaded.translate(x), x, atol=0.1)  # it does change the image

    written = translate.main(["--checkpoint", str(path), "--input", str(cat_photo), "--output", str(tmp_path / "out"),
                              "--device", "cpu"])
    assert written == [tmp_path / "out" / "cat.png"]
    with Image.open(written[0]) as image:
        assert image.size == (128, 128) and image.mode == "RGB"
        pixels = torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)
    photo = translate.read_images([cat_photo], channels=3)[0]
    expected = translate.to_uint8(rounded(translate.to_model_range(photo[None])))[0]
    assert (pixels.int() - expected.int()).abs().max() <= 1  # the photo's translation, up to rounding


def test_export_command_from_a_checkpoint_and_architecture_only_metadata(tmp_path):
    generator, settings = tiny_generator()
    checkpoint = tmp_path / "best.pt"
    save_checkpoint({"settings": settings.to_dict(), "generator": generator.state_dict(),
                     "run": {"data": "d.zip", "size": 32}}, checkpoint)
    path = export.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "shipped.safetensors")])
    loaded, run = translate.load_generator(path)
    assert run == {"data": "d.zip", "size": 32}
    for name, value in generator.state_dict().items():
        assert torch.equal(loaded.generator.state_dict()[name], value.half().float()), name

    # a file whose metadata holds only the architecture is enough to rebuild the generator
    architecture = export.generator_metadata(settings)["architecture"]
    bare = export_weights(generator.state_dict(), tmp_path / "bare.safetensors", metadata={"architecture": architecture})
    rebuilt, _ = translate.load_generator(bare)
    assert (rebuilt.settings.ngf, rebuilt.settings.n_blocks) == (4, 1)
    no_metadata = export_weights(generator.state_dict(), tmp_path / "plain.safetensors")
    with pytest.raises(ValueError, match="cannot be rebuilt"):
        translate.load_generator(no_metadata)
    with pytest.raises(ValueError, match="must end in .safetensors"):
        export.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "x.pt")])


@pytest.mark.parametrize("command, argv, says", [
    ("export", ["--checkpoint", "{missing}/best.pt"], "--checkpoint {missing}/best.pt does not exist"),
    ("evaluate", ["--checkpoint", "{missing}/best.pt"], "--checkpoint {missing}/best.pt does not exist"),
    ("report", ["{missing}"], "{missing} does not exist: give the run folders"),
])
def test_commands_report_a_missing_input_in_one_line(command, argv, says, tmp_path, capsys):
    """export, evaluate and report run under core_ssl.cli.run_command: exit 1, one ``error:`` line."""
    main = importlib.import_module(f"cut_translation.{command}").main
    missing = tmp_path / "missing"
    with pytest.raises(SystemExit) as stopped:
        run_command(main, [a.format(missing=missing) for a in argv])
    assert stopped.value.code == 1
    message = capsys.readouterr().err.strip()
    assert message.startswith("error: " + says.format(missing=missing)) and "\n" not in message


def test_held_out_check_is_stored_and_measured_with_the_stored_weights(tmp_path):
    """--check-images N stores content and change of the fp16 weights on the run's first N
    held-out A images, as restated here from their definitions."""
    from cut_translation.content import edge_correlation
    from cut_translation.data import load_unpaired, to_model_range, to_uint8

    generator, settings = tiny_generator()
    checkpoint = tmp_path / "best.pt"
    run = {"data": "catdog-128.zip", "size": 32, "holdout": 20, "seed": 3}
    save_checkpoint({"settings": settings.to_dict(), "generator": generator.state_dict(), "run": run}, checkpoint)
    path = export.main(["--checkpoint", str(checkpoint), "--output", str(tmp_path / "g.safetensors"),
                        "--check-images", "5"])
    with safe_open(str(path), framework="pt") as f:
        check = json.loads(f.metadata()["check"])
        assert all(f.get_tensor(name).dtype == torch.float16 for name in f.keys())

    rounded = ResnetGenerator(3, 3, 4, 1, settings.nce_layers).eval()
    rounded.load_state_dict({k: v.half().float() for k, v in generator.state_dict().items()})
    inputs = load_unpaired("catdog-128.zip", size=32, holdout=20, seed=3).test_a[:5]
    with torch.no_grad():
        outputs = to_uint8(rounded(to_model_range(inputs)))
    assert check["images"] == 5
    assert check["content"] == pytest.approx(float(edge_correlation(inputs, outputs).mean()), abs=1e-3)
    assert check["change"] == pytest.approx((outputs.float() - inputs.float()).abs().mean().item() / 255, abs=1e-3)
    assert translate.load_generator(path)[1] == run  # the rest of the metadata is unchanged

    with pytest.raises(ValueError, match="lacks \\['holdout', 'seed'\\]"):
        export.held_out_check(translate.load_generator(path)[0], {"data": "catdog-128.zip", "size": 32})
