"""Loading H2OVL checkpoints (tiny, random, published layout) into transformers' InternVL classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import InternVLForConditionalGeneration, LlamaForCausalLM, MistralForCausalLM

from extractor.errors import CheckpointError
from extractor.model import load_model
from extractor.model.config import to_internvl_config
from extractor.model.published import published_config
from extractor.model.tiny import write_tiny_checkpoint
from extractor.model.weights import to_hf_state_dict, to_original_state_dict


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_tiny_checkpoint_has_the_published_layout(tiny_checkpoint: Path) -> None:
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    for key in (
        "vision_config",
        "llm_config",
        "select_layer",
        "downsample_ratio",
        "ps_version",
        "template",
        "use_thumbnail",
        "max_dynamic_patch",
        "use_msac",
    ):
        assert key in config
    assert config["model_type"] == "h2ovl_chat"
    assert config["template"] == "h2ogpt2"
    names = set(load_file(str(tiny_checkpoint / "model.safetensors")))
    assert {n.split(".")[0] for n in names} == {"vision_model", "mlp1", "language_model"}
    assert "vision_model.encoder.layers.0.attn.qkv.weight" in names
    assert "vision_model.encoder.layers.0.ls1" in names
    assert "language_model.lm_head.weight" in names
    size = sum(p.stat().st_size for p in tiny_checkpoint.iterdir())
    assert size < 5_000_000
    assert "noise" in (tiny_checkpoint / "README.md").read_text()


def test_load_builds_transformers_internvl_in_eval_mode(tiny_model) -> None:
    assert isinstance(tiny_model.model, InternVLForConditionalGeneration)
    assert not tiny_model.model.training
    assert tiny_model.tokenizer.convert_ids_to_tokens(tiny_model.image_token_id) == "<IMG_CONTEXT>"
    assert tiny_model.settings.template == "h2ogpt2"
    assert tiny_model.settings.num_image_token == 256
    assert tiny_model.settings.use_msac is False


def test_msac_flavour_uses_mistral_and_msac(tiny_checkpoint_msac: Path) -> None:
    loaded = load_model(tiny_checkpoint_msac)
    assert loaded.settings.use_msac is True
    assert loaded.model.config.text_config.model_type == "mistral"


def test_loaded_tensors_equal_the_checkpoint(tiny_checkpoint: Path) -> None:
    # in the checkpoint's own dtype, so equality is exact (the `auto` dtype is bfloat16 on a CPU with native
    # bf16, which would round every weight)
    original = load_file(str(tiny_checkpoint / "model.safetensors"))
    (dtype,) = {tensor.dtype for tensor in original.values()}
    back = to_original_state_dict(load_model(tiny_checkpoint, dtype=dtype).model.state_dict())
    assert set(back) == set(original)
    for name, tensor in original.items():
        assert torch.equal(back[name], tensor), name


def test_name_mapping_round_trips() -> None:
    raw = published_config("h2ovl-800m")
    raw["vision_config"].update(
        hidden_size=16, intermediate_size=32, num_attention_heads=2, num_hidden_layers=2
    )
    raw["llm_config"].update(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=100,
    )
    torch.manual_seed(3)
    model = InternVLForConditionalGeneration(to_internvl_config(raw, image_token_id=99))
    hf = model.state_dict()
    original = to_original_state_dict(hf)
    assert len(original) == len(hf) - 2 * raw["vision_config"]["num_hidden_layers"] * 2  # q,k,v → qkv
    again = to_hf_state_dict(original)
    assert set(again) == set(hf)
    for name in hf:
        assert torch.equal(again[name], hf[name]), name


def test_qkv_split_is_in_q_k_v_order() -> None:
    fused = torch.arange(12.0).reshape(6, 2)
    hf = to_hf_state_dict({"vision_model.encoder.layers.0.attn.qkv.weight": fused})
    prefix = "model.vision_tower.encoder.layer.0.attention."
    assert torch.equal(hf[prefix + "q_proj.weight"], fused[0:2])
    assert torch.equal(hf[prefix + "k_proj.weight"], fused[2:4])
    assert torch.equal(hf[prefix + "v_proj.weight"], fused[4:6])


def test_missing_tensor_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_checkpoint, tmp_path / "missing")
    tensors = load_file(str(broken / "model.safetensors"))
    del tensors["vision_model.encoder.layers.1.mlp.fc2.bias"]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(
        CheckpointError, match=r"lacks tensor.*model\.vision_tower\.encoder\.layer\.1\.mlp\.fc2\.bias"
    ):
        load_model(broken)


def test_extra_tensor_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_checkpoint, tmp_path / "extra")
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["vision_model.encoder.layers.7.ls1"] = torch.zeros(32)
    tensors["surprise.weight"] = torch.zeros(1)
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected tensor.*surprise\.weight"):
        load_model(broken)
    del tensors["surprise.weight"]
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"unexpected tensor.*layer\.7\.lambda_1"):
        load_model(broken)


def test_misshaped_tensor_is_named(tiny_checkpoint: Path, tmp_path: Path) -> None:
    broken = _copy(tiny_checkpoint, tmp_path / "shape")
    tensors = load_file(str(broken / "model.safetensors"))
    tensors["mlp1.1.weight"] = torch.zeros(3, 3)
    save_file(tensors, str(broken / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"multi_modal_projector\.linear_1\.weight has shape \(3, 3\)"):
        load_model(broken)


def test_sharded_checkpoint_loads_the_same(tmp_path: Path, tiny_model) -> None:
    sharded = write_tiny_checkpoint(tmp_path / "sharded", seed=0, shards=3)
    assert (sharded / "model.safetensors.index.json").exists()
    loaded = load_model(sharded)
    for name, tensor in tiny_model.model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor), name


def test_wrong_model_type_and_missing_dir_are_typed_errors(tiny_checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "nowhere")
    broken = _copy(tiny_checkpoint, tmp_path / "type")
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "llava"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="h2ovl_chat"):
        load_model(broken)


def test_hub_id_not_cached_offline_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    with pytest.raises(CheckpointError, match="huggingface_hub cache"):
        load_model("h2oai/h2ovl-mississippi-800m")


def test_hub_id_resolves_through_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_checkpoint: Path
) -> None:
    # lay the tiny checkpoint out as huggingface_hub's cache holds a downloaded repo, then load it offline
    cache = tmp_path / "cache"
    snapshot = cache / "models--h2oai--h2ovl-mississippi-800m" / "snapshots" / ("a" * 40)
    shutil.copytree(tiny_checkpoint, snapshot)
    refs = cache / "models--h2oai--h2ovl-mississippi-800m" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("a" * 40)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hub_constants

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    loaded = load_model("h2oai/h2ovl-mississippi-800m")
    assert loaded.revision == "a" * 40


def test_real_architectures_match_the_published_sizes() -> None:
    # parameter counts of the language models built from the published configs (meta device: no memory)
    for name, cls, expected in (
        ("h2ovl-800m", LlamaForCausalLM, 0.5e9),
        ("h2ovl-2b", MistralForCausalLM, 1.8e9),
    ):
        config = to_internvl_config(published_config(name), image_token_id=1)
        with torch.device("meta"):
            text = cls(config.text_config)
        count = sum(p.numel() for p in text.parameters())
        assert abs(count - expected) / expected < 0.15, (name, count)
