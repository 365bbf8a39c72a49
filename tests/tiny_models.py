"""Tiny random diffusers models, built offline and saved to disk like real weights.

Tests load these back with ``from_pretrained(directory)``: the very code path real hub weights
take, without the network. The configurations are diffusers' own fast-test components (see
shared/STYLE.md). Every builder seeds torch, so the same call gives the same weights.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch

TINY_SIZE = 32


def tiny_unet2d(in_channels: int = 3, sample_size: int = TINY_SIZE, seed: int = 0):
    """A ~16k-parameter pixel-space ``UNet2DModel`` (3 output channels)."""
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    return UNet2DModel(
        block_out_channels=(4, 8),
        norm_num_groups=2,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=3,
        layers_per_block=2,
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=3,
    )


def tiny_ddpm_scheduler():
    """A DDPM scheduler with the defaults of ``google/ddpm-celebahq-256`` (1000 linear betas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)


def save_tiny_ddpm(directory: Path, *, layout: str = "flat", in_channels: int = 3, seed: int = 0) -> Path:
    """Save a tiny pixel DDPM the way hub repos are laid out.

    ``layout="flat"``: ``config.json`` + weights + ``scheduler_config.json`` at the root (as
    ``google/ddpm-celebahq-256``). ``layout="pipeline"``: ``model_index.json`` with ``unet/`` and
    ``scheduler/`` subfolders (as ``DDPMPipeline.save_pretrained`` writes).
    """
    directory = Path(directory)
    unet = tiny_unet2d(in_channels=in_channels, seed=seed)
    scheduler = tiny_ddpm_scheduler()
    if layout == "flat":
        unet.save_pretrained(directory)
        scheduler.save_pretrained(directory)
    elif layout == "pipeline":
        from diffusers import DDPMPipeline

        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(directory)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return directory


# ---- Stable Diffusion inpainting --------------------------------------------------------------

_CLIP_VOCAB = [
    "l", "o", "w", "e", "r", "s", "t", "i", "d", "n",
    "lo", "l</w>", "w</w>", "r</w>", "t</w>", "low</w>", "er</w>", "lowest</w>", "newer</w>", "wider",
    "<unk>", "<|startoftext|>", "<|endoftext|>",
]
_CLIP_MERGES = ["#version: 0.2", "l o", "lo w</w>", "e r</w>", ""]


def tiny_clip_tokenizer(directory: Path):
    """A 23-token BPE ``CLIPTokenizer`` written to ``directory`` (as transformers' tests do)."""
    from transformers import CLIPTokenizer

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.json"
    merges_file = directory / "merges.txt"
    vocab_file.write_text(json.dumps({token: i for i, token in enumerate(_CLIP_VOCAB)}))
    merges_file.write_text("\n".join(_CLIP_MERGES))
    # Without model_max_length the tokenizer's limit is ~1e30 and the pipeline's padding breaks.
    return CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)


def save_tiny_sd_inpaint(directory: Path, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionInpaintPipeline`` (9-channel UNet) with ``save_pretrained``."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    directory = Path(directory)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=32,
            intermediate_size=37,
            layer_norm_eps=1e-05,
            num_attention_heads=4,
            num_hidden_layers=5,
            pad_token_id=1,
            vocab_size=1000,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer = tiny_clip_tokenizer(Path(tokenizer_dir))
    pipeline = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipeline.save_pretrained(directory)
    return directory


# ---- BLIP captioning ----------------------------------------------------------------------------

_BERT_VOCAB = [
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]",
    "a", "photo", "of", "cat", "dog", "with", "the", "face", "woman", "man", "smiling", "red", "hat", "and",
]


def save_tiny_blip(directory: Path, seed: int = 0) -> Path:
    """Save a tiny ``BlipForConditionalGeneration`` with its ``BlipProcessor`` (32 px, 20 tokens).

    The text config's ``bos_token_id``/``sep_token_id`` must be the tokenizer's ``[DEC]``/``[SEP]``
    ids: ``generate`` forces them, and the defaults lie outside a tiny vocabulary.
    """
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(_BERT_VOCAB) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]", model_max_length=32)
    dec, sep, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("[DEC]", "[SEP]", "[PAD]"))
    config = BlipConfig(
        text_config=dict(vocab_size=len(_BERT_VOCAB), hidden_size=32, intermediate_size=37, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, bos_token_id=dec, sep_token_id=sep,
                         eos_token_id=sep, pad_token_id=pad),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=32,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer)
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
