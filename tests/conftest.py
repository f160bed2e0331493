
import pytest
import torch

import madtp_deploy

TINY = "clip-tiny-test"


def tiny_inputs(batch: int, seed: int = 0):
    """Images with varied content and captions of varied length (EOT at different places)."""
    g = torch.Generator().manual_seed(seed)
    px = torch.randn(batch, 3, 32, 32, generator=g) * torch.linspace(0.2, 3.0, batch)[:, None, None, None]
    ids = torch.randint(1, 60, (batch, 16), generator=g)
    ids[:, 0] = 62
    eot = torch.randint(3, 16, (batch,), generator=g)
    ids[torch.arange(batch), eot] = 63
    ids[torch.arange(16)[None, :] > eot[:, None]] = 0
    return px, ids


@pytest.fixture(scope="session")
def tiny_model():
    return madtp_deploy.load(TINY, temperature=3.0)


@pytest.fixture(scope="session")
def hf_dir(tmp_path_factory):
    """A tiny random Hugging Face CLIPModel saved with save_pretrained."""
    from transformers import CLIPConfig, CLIPModel

    torch.manual_seed(0)
    cfg = CLIPConfig(
        text_config=dict(vocab_size=64, hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=16, eos_token_id=63,
                         bos_token_id=62, pad_token_id=0),
        vision_config=dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2,
                           num_attention_heads=2, image_size=32, patch_size=8),
        projection_dim=64)
    model = CLIPModel(cfg).eval()
    d = tmp_path_factory.mktemp("hf_clip")
    model.save_pretrained(d)
    return d, model


@pytest.fixture(scope="session")
def scenes_dir(tmp_path_factory):
    from madtp_deploy.data import scenes

    return scenes.generate(tmp_path_factory.mktemp("scenes"), n_train=64, n_val=16, n_test=24, seed=1)
