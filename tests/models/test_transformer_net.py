"""The fast-neural-style TransformerNet: the checkpoint layout users' files have, loading and
refusing files, and frames of any size in and out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from models.transformer_net import CheckpointError, TransformerNet

DAVIS = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "davis-dev"


def expected_layout() -> dict[str, tuple[int, ...]]:
    """The parameter names and shapes of pytorch/examples' fast_neural_style checkpoints."""
    layout: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:
        layout[f"{name}.conv2d.weight"] = (cout, cin, k, k)
        layout[f"{name}.conv2d.bias"] = (cout,)

    def norm(name: str, c: int) -> None:
        layout[f"{name}.weight"] = (c,)
        layout[f"{name}.bias"] = (c,)

    conv("conv1", 3, 32, 9)
    norm("in1", 32)
    conv("conv2", 32, 64, 3)
    norm("in2", 64)
    conv("conv3", 64, 128, 3)
    norm("in3", 128)
    for i in range(1, 6):
        conv(f"res{i}.conv1", 128, 128, 3)
        norm(f"res{i}.in1", 128)
        conv(f"res{i}.conv2", 128, 128, 3)
        norm(f"res{i}.in2", 128)
    conv("deconv1", 128, 64, 3)
    norm("in4", 64)
    conv("deconv2", 64, 32, 3)
    norm("in5", 32)
    conv("deconv3", 32, 3, 9)
    return layout


def frame(size: tuple[int, int] | None = None) -> torch.Tensor:
    image = Image.open(DAVIS / "images" / "hockey" / "00040.jpg").convert("RGB")
    if size is not None:
        image = image.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)[None].float() / 255


def last_bias(model: TransformerNet) -> torch.Tensor:
    bias = model.deconv3.conv2d.bias
    assert bias is not None
    return bias


@pytest.fixture(scope="module")
def net() -> TransformerNet:
    torch.manual_seed(0)
    model = TransformerNet().eval()
    with torch.no_grad():  # affine norms away from identity, so a mix-up of them shows
        for name, p in model.named_parameters():
            if name.split(".")[-2].startswith("in"):
                p.add_(0.1 * torch.randn_like(p))
        # a freshly initialised last layer outputs about 0 +- 1 in 0..255 units: scaled up and
        # centred, the output spans the range as a trained net's does
        model.deconv3.conv2d.weight.mul_(60.0)
        last_bias(model).fill_(127.5)
    return model


def legacy_state(model: TransformerNet) -> dict[str, torch.Tensor]:
    """The state dict as old torch versions saved it: every instance norm with running stats."""
    state = dict(model.state_dict())
    for key in list(state):
        if key.endswith(".weight") and key.split(".")[-2].startswith("in"):
            stem = key[: -len("weight")]
            state[stem + "running_mean"] = torch.zeros_like(state[key])
            state[stem + "running_var"] = torch.ones_like(state[key])
    return state


def test_parameter_names_and_shapes_are_the_checkpoints() -> None:
    state = TransformerNet().state_dict()
    assert {k: tuple(v.shape) for k, v in state.items()} == expected_layout()


@pytest.mark.parametrize("zipped", [True, False])
def test_a_legacy_checkpoint_loads_and_runs_as_the_saved_net(
    net: TransformerNet, tmp_path: Path, zipped: bool
) -> None:
    path = tmp_path / "style.pth"
    state = legacy_state(net)
    assert sum(k.endswith("running_mean") for k in state) == 15  # in1..in5 and 2 per block
    torch.save(state, path, _use_new_zipfile_serialization=zipped)
    loaded = TransformerNet.load(path)
    x = frame((120, 212))
    with torch.no_grad():
        out = loaded(x)
        assert torch.equal(out, net(x))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert out.std() > 0.01  # a picture, not a constant


@pytest.mark.parametrize("size", [(101, 127), (97, 130), (120, 212), (9, 7), (3, 2), (1, 1)])
def test_output_size_equals_input_size(net: TransformerNet, size: tuple[int, int]) -> None:
    x = frame(size).repeat(2, 1, 1, 1)
    with torch.no_grad():
        out = net(x)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()


def test_pixel_values_go_in_and_out_as_0_to_255() -> None:
    # The last layer's bias is in 0..255 units: a net that outputs only its bias 127.5 gives
    # 0.5, one with bias 400 is clamped to 1.
    model = TransformerNet().eval()
    x = frame((64, 96))
    with torch.no_grad():
        model.deconv3.conv2d.weight.zero_()
        last_bias(model).fill_(127.5)
        assert torch.allclose(model(x), torch.full_like(x, 0.5))
        last_bias(model).copy_(torch.tensor([400.0, -50.0, 51.0]))
        out = model(x)
    assert torch.equal(out[:, 0], torch.ones_like(out[:, 0]))
    assert torch.equal(out[:, 1], torch.zeros_like(out[:, 1]))
    assert torch.allclose(out[:, 2], torch.full_like(out[:, 2], 0.2))


def test_the_first_layer_sees_0_to_255() -> None:
    # An input in 0..1 times 255: with the first layer linear in its input, feeding x or
    # x * 255 must differ, and the net itself must match feeding x * 255 to the layers.
    model = TransformerNet().eval()
    x = frame((32, 48))
    with torch.no_grad():
        inner = model.conv1(x * 255.0)
        captured: list[torch.Tensor] = []
        handle = model.conv1.register_forward_hook(lambda _m, _i, out: captured.append(out))
        model(x)
        handle.remove()
    assert torch.allclose(captured[0], inner, rtol=1e-5, atol=1e-3)


def refused(path: Path, *words: str) -> None:
    with pytest.raises(ValueError) as caught:
        TransformerNet.load(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message, message


def test_truncated_and_garbage_files_are_refused(net: TransformerNet, tmp_path: Path) -> None:
    good = tmp_path / "good.pth"
    torch.save(net.state_dict(), good)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    refused(truncated, "not a readable torch checkpoint")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(np.random.default_rng(3).bytes(4096))
    refused(garbage, "not a readable torch checkpoint")
    jpeg = DAVIS / "images" / "hockey" / "00040.jpg"
    refused(jpeg, "not a readable torch checkpoint")
    refused(tmp_path / "absent.pth", "not a readable torch checkpoint", "no such file")


def test_a_pickled_module_is_refused(net: TransformerNet, tmp_path: Path) -> None:
    # a whole pickled model runs code on load: weights_only refuses it
    path = tmp_path / "module.pth"
    torch.save(net, path)
    refused(path, "not a readable torch checkpoint", "weights_only refused it")


def test_files_that_are_not_state_dicts_are_refused(net: TransformerNet, tmp_path: Path) -> None:
    tensor = tmp_path / "tensor.pth"
    torch.save(torch.zeros(3), tensor)
    refused(tensor, "not a state dict", "Tensor")
    listed = tmp_path / "list.pth"
    torch.save([net.state_dict()], listed)
    refused(listed, "not a state dict", "list")
    wrapped = tmp_path / "wrapped.pth"  # a training checkpoint with the weights one level down
    torch.save({"epoch": 3, "state_dict": net.state_dict()}, wrapped)
    refused(wrapped, "not a state dict", "'epoch' is a int")


def test_missing_unexpected_and_misshapen_keys_are_refused(net: TransformerNet, tmp_path: Path) -> None:
    state = legacy_state(net)
    missing = {k: v for k, v in state.items() if not k.startswith("res5.")}
    torch.save(missing, tmp_path / "missing.pth")
    refused(tmp_path / "missing.pth", "missing keys", "res5.conv1.conv2d.bias", "more")

    extra = dict(state, **{"fc.weight": torch.zeros(3)})
    torch.save(extra, tmp_path / "extra.pth")
    refused(tmp_path / "extra.pth", "unexpected keys fc.weight")

    # running stats of anything but an instance norm are not the legacy keys: refused
    stats = dict(state, **{"conv1.running_mean": torch.zeros(32)})
    torch.save(stats, tmp_path / "stats.pth")
    refused(tmp_path / "stats.pth", "unexpected keys conv1.running_mean")

    narrow = dict(state, **{"conv1.conv2d.weight": torch.zeros(16, 3, 9, 9)})
    torch.save(narrow, tmp_path / "narrow.pth")
    refused(
        tmp_path / "narrow.pth", "wrong shapes", "conv1.conv2d.weight (16, 3, 9, 9) (expected (32, 3, 9, 9))"
    )


def test_a_display_name_stands_for_the_path_in_refusals(tmp_path: Path) -> None:
    path = tmp_path / "3f2a9c.pth"  # as a store hands a job's file over: a name of its own
    torch.save(torch.zeros(3), path)
    with pytest.raises(CheckpointError) as caught:
        TransformerNet.load(path, name="mosaic.pth")
    assert str(caught.value) == "mosaic.pth: not a state dict of tensors (it holds a Tensor)"
    assert (caught.value.name, caught.value.problem) == (
        "mosaic.pth",
        "not a state dict of tensors (it holds a Tensor)",
    )
    assert str(path) not in str(caught.value)


def test_a_checkpoint_in_half_precision_loads_in_float32(net: TransformerNet, tmp_path: Path) -> None:
    path = tmp_path / "half.pth"
    torch.save({k: v.half() for k, v in net.state_dict().items()}, path)
    loaded = TransformerNet.load(path)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x = frame((60, 80))
    with torch.no_grad():
        assert (loaded(x) - net(x)).abs().max() < 0.05


DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]


@pytest.mark.parametrize("device", DEVICES)
def test_float16(net: TransformerNet, device: str) -> None:
    x = frame((61, 83))
    model = TransformerNet()
    model.load_state_dict(net.state_dict())
    model = model.to(device).half().eval()
    with torch.no_grad():
        out = model(x.to(device).half())
        reference = net(x)
    assert out.shape == x.shape and out.dtype == torch.float16
    assert torch.isfinite(out).all()
    assert (out.float().cpu() - reference).abs().mean() < 0.01
