"""In-place activations: swapped at the vision MLP, the projector and the language model's MLP, and the
network's outputs bit for bit those of transformers' own activations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers.activations import GELUActivation

from extractor.model import load_model
from extractor.model.in_place import InPlaceActivation, activations_in_place


def _swapped(model: torch.nn.Module) -> list[InPlaceActivation]:
    return [m for m in model.modules() if isinstance(m, InPlaceActivation)]


def _restore(model: torch.nn.Module) -> None:
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, InPlaceActivation):
                setattr(module, name, child.original)


def _outputs(model, pixels: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode():
        features = model.model.get_image_features(pixel_values=pixels)
        features = getattr(features, "pooler_output", features)
        logits = model(input_ids=ids).logits
    return features, logits


@pytest.mark.parametrize("flavour", ["tiny_checkpoint", "tiny_checkpoint_msac"])  # llama, mistral
def test_every_site_is_swapped_and_outputs_are_bit_for_bit(flavour: str, request) -> None:
    checkpoint: Path = request.getfixturevalue(flavour)
    loaded = load_model(checkpoint)
    model, config = loaded.model, loaded.model.config
    sites = config.vision_config.num_hidden_layers + 1 + config.text_config.num_hidden_layers
    assert len(_swapped(model)) == sites
    generator = torch.Generator().manual_seed(0)
    size = config.vision_config.image_size
    pixels = torch.randn(
        2, 3, *(size if isinstance(size, (list, tuple)) else (size, size)), generator=generator
    )
    ids = torch.randint(3, 200, (1, 24), generator=generator)
    in_place = _outputs(model, pixels, ids)
    _restore(model)
    assert not _swapped(model)
    original = _outputs(model, pixels, ids)
    for ours, theirs in zip(in_place, original, strict=True):
        assert torch.equal(ours, theirs)


def test_autograd_keeps_the_original_function() -> None:
    linear = torch.nn.Linear(4, 8)
    activation = InPlaceActivation(torch.ops.aten.gelu_, GELUActivation())
    inputs = torch.randn(3, 8, requires_grad=True)
    kept = inputs.detach().clone()
    activation(inputs).sum().backward()  # in place on a leaf that needs grad would raise
    assert torch.equal(inputs.detach(), kept) and inputs.grad is not None
    with torch.inference_mode():
        temporary = linear(torch.randn(3, 4))
        out = activation(temporary)
    assert out.data_ptr() == temporary.data_ptr()  # in place where nothing records gradients


def test_other_modules_and_approximations_are_left_alone() -> None:
    class LlamaMLP(torch.nn.Module):  # a swapped site's name, holding a Python-formula GELU
        def __init__(self) -> None:
            super().__init__()
            self.act_fn = GELUActivation(use_gelu_python=True)

    holder = torch.nn.Module()
    holder.mlp = LlamaMLP()
    holder.other = torch.nn.Sequential(GELUActivation())
    assert activations_in_place(holder) == 0
