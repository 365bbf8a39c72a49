"""Random diffusers/transformers models built offline and saved like real weights, for tests,
benchmarks, the examples' tiny mode and anyone checking a pipeline without downloading anything.

Every builder saves with ``save_pretrained`` into the layout the hub publishes, so the code under
test loads it with ``from_pretrained(directory)`` — the very path real weights take. Two families:

- **tiny** models (diffusers' and transformers' own fast-test configurations): seconds on a CPU;
  :func:`save_celebahq_shaped_ddpm` is tiny but shaped like ``google/ddpm-celebahq-256`` (256 px
  native size, attention at 16 px), so commands run at the study's sizes cheaply;
- **real-size** models from the published configurations below (``google/ddpm-celebahq-256``,
  SD 1.5 Inpainting, BLIP base) with random weights: the cost and memory of the real thing.

:func:`install_in_hub_cache` lays a saved folder out as a Hugging Face cache entry under a hub id,
so the default hub ids (``inpaint train-ddpm data/`` with no ``--base``) resolve offline exactly
as after a real download. Builders seed torch, so the same call gives the same weights.
Tokenizers are small hand-written vocabularies (token ids only: cost does not depend on them).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

TINY_SIZE = 32

# ---- published configurations ------------------------------------------------------------------

#: google/ddpm-celebahq-256, config.json (UNet2DModel; 113.7 M parameters).
DDPM_CELEBAHQ_256: dict[str, Any] = dict(
    sample_size=256,
    in_channels=3,
    out_channels=3,
    center_input_sample=False,
    time_embedding_type="positional",
    freq_shift=1,
    flip_sin_to_cos=False,
    down_block_types=("DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"),
    block_out_channels=(128, 128, 256, 256, 512, 512),
    layers_per_block=2,
    mid_block_scale_factor=1,
    downsample_padding=0,
    act_fn="silu",
    attention_head_dim=None,
    norm_num_groups=32,
    norm_eps=1e-6,
)
#: google/ddpm-celebahq-256, scheduler_config.json.
DDPM_SCHEDULER: dict[str, Any] = dict(
    num_train_timesteps=1000,
    beta_start=0.0001,
    beta_end=0.02,
    beta_schedule="linear",
    variance_type="fixed_small",
    clip_sample=True,
)
#: stable-diffusion-v1-5/stable-diffusion-inpainting, unet/config.json (859.5 M parameters).
SD15_INPAINT_UNET: dict[str, Any] = dict(
    sample_size=64,
    in_channels=9,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=768,
    attention_head_dim=8,
)
#: vae/config.json (AutoencoderKL; 83.7 M parameters).
SD15_VAE: dict[str, Any] = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=512,
    scaling_factor=0.18215,
)
#: text_encoder/config.json (CLIPTextModel of CLIP ViT-L/14; 123.1 M parameters).
SD15_TEXT: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    projection_dim=768,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    bos_token_id=0,
    eos_token_id=2,
    pad_token_id=1,
)
#: scheduler/scheduler_config.json (PNDM, PLMS form).
SD15_SCHEDULER: dict[str, Any] = dict(
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    num_train_timesteps=1000,
    skip_prk_steps=True,
    set_alpha_to_one=False,
    steps_offset=1,
)
#: Salesforce/blip-image-captioning-base, config.json (BlipForConditionalGeneration; 224 M parameters as
#: built here). The special token ids are filled in from the (small) tokenizer the builder writes.
BLIP_BASE_TEXT: dict[str, Any] = dict(
    vocab_size=30524,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=512,
)
BLIP_BASE_VISION: dict[str, Any] = dict(
    hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12, image_size=384, patch_size=16
)
BLIP_BASE_PROJECTION = 512
#: Parameter counts of the published models, in millions (what the builders above must give).
PUBLISHED_MILLIONS = {"ddpm unet": 113.7, "sd unet": 859.5, "sd vae": 83.7, "sd text encoder": 123.1}


# ---- pixel DDPMs -------------------------------------------------------------------------------


def tiny_unet2d(in_channels: int = 3, sample_size: int = TINY_SIZE, seed: int = 0):
    """A ~16k-parameter pixel-space ``UNet2DModel`` (3 output channels; attention at half size)."""
    import torch
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


def celebahq_shaped_unet2d(in_channels: int = 3, seed: int = 0):
    """A ~0.1 M-parameter ``UNet2DModel`` with ``google/ddpm-celebahq-256``'s shape: native size
    256, six blocks, attention only in the fifth (at 16 px) — so a 256-px run costs seconds."""
    import torch
    from diffusers import UNet2DModel

    torch.manual_seed(seed)
    config = {
        **DDPM_CELEBAHQ_256,
        "block_out_channels": (8, 8, 16, 16, 32, 32),
        "layers_per_block": 1,
        "norm_num_groups": 8,
        "attention_head_dim": 8,
        "in_channels": in_channels,
    }
    return UNet2DModel(**config)


def tiny_ddpm_scheduler():
    """A DDPM scheduler with the defaults of ``google/ddpm-celebahq-256`` (1000 linear betas)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=1000, beta_schedule="linear", clip_sample=True)


def _save_pixel_ddpm(unet, scheduler, directory: Path, layout: str) -> Path:
    directory = Path(directory)
    if layout == "flat":
        unet.save_pretrained(directory)
        scheduler.save_pretrained(directory)
    elif layout == "pipeline":
        from diffusers import DDPMPipeline

        DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(directory)
    else:
        raise ValueError(f"unknown layout {layout!r}")
    return directory


def save_tiny_ddpm(directory: Path, *, layout: str = "flat", in_channels: int = 3, seed: int = 0) -> Path:
    """Save a tiny pixel DDPM the way hub repos are laid out.

    ``layout="flat"``: ``config.json`` + weights + ``scheduler_config.json`` at the root (as
    ``google/ddpm-celebahq-256``). ``layout="pipeline"``: ``model_index.json`` with ``unet/`` and
    ``scheduler/`` subfolders (as ``DDPMPipeline.save_pretrained`` writes).
    """
    return _save_pixel_ddpm(tiny_unet2d(in_channels=in_channels, seed=seed), tiny_ddpm_scheduler(), directory, layout)


def save_celebahq_shaped_ddpm(directory: Path, *, layout: str = "flat", seed: int = 0) -> Path:
    """Save :func:`celebahq_shaped_unet2d` with the published schedule (flat layout by default)."""
    from diffusers import DDPMScheduler

    return _save_pixel_ddpm(celebahq_shaped_unet2d(seed=seed), DDPMScheduler(**DDPM_SCHEDULER), directory, layout)


def save_real_size_ddpm(directory: Path, *, seed: int = 0) -> Path:
    """``google/ddpm-celebahq-256`` as published (flat layout, 113.7 M parameters), random weights."""
    import torch
    from diffusers import DDPMScheduler, UNet2DModel

    torch.manual_seed(seed)
    return _save_pixel_ddpm(UNet2DModel(**DDPM_CELEBAHQ_256), DDPMScheduler(**DDPM_SCHEDULER), directory, "flat")


# ---- Stable Diffusion inpainting --------------------------------------------------------------

_CLIP_VOCAB = [
    "l",
    "o",
    "w",
    "e",
    "r",
    "s",
    "t",
    "i",
    "d",
    "n",
    "lo",
    "l</w>",
    "w</w>",
    "r</w>",
    "t</w>",
    "low</w>",
    "er</w>",
    "lowest</w>",
    "newer</w>",
    "wider",
    "<unk>",
    "<|startoftext|>",
    "<|endoftext|>",
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


def tiny_clip_text_config(**changes):
    """A tiny CLIP text encoder's ``CLIPTextConfig`` (32-dim, 5 layers, 1,000 tokens, as
    transformers' own tests build it), with ``changes`` applied (a projection for SDXL's second
    encoder, fewer layers…)."""
    from transformers import CLIPTextConfig

    settings = {
        "bos_token_id": 0,
        "eos_token_id": 2,
        "hidden_size": 32,
        "intermediate_size": 37,
        "layer_norm_eps": 1e-05,
        "num_attention_heads": 4,
        "num_hidden_layers": 5,
        "pad_token_id": 1,
        "vocab_size": 1000,
    }
    return CLIPTextConfig(**{**settings, **changes})


def _tiny_vae():
    """The tiny SD and SDXL pipelines' VAE: two blocks (it downsamples by 2), 4 latent channels."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        block_out_channels=[32, 64],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"],
        up_block_types=["UpDecoderBlock2D", "UpDecoderBlock2D"],
        latent_channels=4,
    )


def _save_sd_pipeline(directory: Path, unet, vae, text_encoder, scheduler) -> Path:
    from diffusers import StableDiffusionInpaintPipeline

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
    return Path(directory)


def save_tiny_sd_inpaint(directory: Path, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionInpaintPipeline`` (9-channel UNet; a VAE that downsamples by 2)."""
    import torch
    from diffusers import DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

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
    vae = _tiny_vae()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(tiny_clip_text_config())
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    return _save_sd_pipeline(directory, unet, vae, text_encoder, scheduler)


def save_tiny_sdxl_inpaint(directory: Path, seed: int = 0) -> Path:
    """Save a tiny ``StableDiffusionXLInpaintPipeline`` shaped as SDXL Inpainting 0.1 is: a 9-channel
    UNet with SDXL's added "text_time" conditioning (the pooled embedding of the second text
    encoder and six size/crop ids), two CLIP text encoders (the second with a projection) whose
    hidden states are concatenated for cross-attention, an Euler scheduler, no aesthetic score.
    The VAE downsamples by 2, as the tiny SD's does."""
    import torch
    from diffusers import EulerDiscreteScheduler, StableDiffusionXLInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    text_config = tiny_clip_text_config(hidden_act="gelu", projection_dim=32)
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=2,
        sample_size=32,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4),
        use_linear_projection=True,
        addition_embed_type="text_time",
        addition_time_embed_dim=8,
        transformer_layers_per_block=(1, 2),
        # 6 size/crop ids of 8 dims each, plus the 32-dim pooled text embedding.
        projection_class_embeddings_input_dim=6 * 8 + 32,
        cross_attention_dim=64,  # both encoders' 32-dim hidden states, concatenated
    )
    torch.manual_seed(seed)
    vae = _tiny_vae()
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(text_config)
    torch.manual_seed(seed + 1)
    text_encoder_2 = CLIPTextModelWithProjection(text_config)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        steps_offset=1,
        timestep_spacing="leading",
    )
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer = tiny_clip_tokenizer(Path(tokenizer_dir))
    pipeline = StableDiffusionXLInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        text_encoder_2=text_encoder_2,
        tokenizer=tokenizer,
        tokenizer_2=tokenizer,
        unet=unet,
        scheduler=scheduler,
        requires_aesthetics_score=False,
    )
    pipeline.save_pretrained(directory)
    return Path(directory)


def save_tiny_flux_fill(directory: Path, seed: int = 0) -> Path:
    """Save a tiny ``FluxFillPipeline`` shaped as FLUX.1 Fill [dev] is: a ``FluxTransformer2DModel``
    over 2x2-packed latents with guidance embedding (a double-stream and a single-stream block) whose
    input is the packed noisy latent, masked-image latent and per-pixel mask (4·4 + 4·4 + 4·8² =
    288 channels here, 384 for the real one: :func:`~inpaint.models.sd_weights.flux_fill_channels`),
    a VAE that downsamples by 8 with FLUX's shift and scaling factors and no quant convolutions, a
    CLIP text encoder (its pooled output) and a T5 encoder (its hidden states), and FLUX's
    resolution-shifted flow-matching Euler scheduler.

    There is no T5 tokenizer offline: the tiny CLIP tokenizer (:func:`tiny_clip_tokenizer`) serves
    as both ``tokenizer`` and ``tokenizer_2`` (saved as a ``CLIPTokenizer``); the pipeline only
    calls it, padding T5's input to 512 tokens as with the real one."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxFillPipeline, FluxTransformer2DModel
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    latent_channels, blocks = 4, (16, 16, 16, 16)  # 4 blocks: the VAE downsamples by 8
    factor = 2 ** (len(blocks) - 1)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=2 * 4 * latent_channels + 4 * factor * factor,
        out_channels=4 * latent_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=32,
        guidance_embeds=True,
        axes_dims_rope=[4, 4, 8],
    )
    torch.manual_seed(seed)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * len(blocks),
        up_block_types=["UpDecoderBlock2D"] * len(blocks),
        block_out_channels=blocks,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        use_quant_conv=False,
        use_post_quant_conv=False,
        shift_factor=0.1159,
        scaling_factor=0.3611,
    )
    torch.manual_seed(seed)
    text_encoder = CLIPTextModel(tiny_clip_text_config(num_hidden_layers=2, hidden_act="gelu", projection_dim=32))
    torch.manual_seed(seed + 1)
    text_encoder_2 = T5EncoderModel(
        T5Config(
            d_model=32, d_ff=37, d_kv=8, num_heads=4, num_layers=2, vocab_size=1000, relative_attention_num_buckets=8
        )
    )
    scheduler = FlowMatchEulerDiscreteScheduler(
        base_image_seq_len=256,
        base_shift=0.5,
        max_image_seq_len=4096,
        max_shift=1.15,
        num_train_timesteps=1000,
        shift=3.0,
        use_dynamic_shifting=True,
    )
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer = tiny_clip_tokenizer(Path(tokenizer_dir))
    pipeline = FluxFillPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer,
        transformer=transformer,
    )
    pipeline.save_pretrained(directory)
    return Path(directory)


def save_tiny_kandinsky_inpaint(directory: Path, seed: int = 0, *, combined: bool = True) -> Path:
    """Save a tiny ``KandinskyV22InpaintCombinedPipeline`` shaped as Kandinsky 2.2 inpainting is (as
    diffusers' own tests build it): the decoder, a 9-channel UNet (noisy latent, masked-image latent,
    mask) that predicts noise and a learned variance (8 output channels), conditioned on a CLIP image
    embedding alone (``addition_embed_type="image"``, ``encoder_hid_dim_type="image_proj"``), a
    MoVQ ``VQModel`` that downsamples by 8 (so sizes round up to 64, as the real one's) and DDPM;
    the prior, a ``PriorTransformer`` over CLIP embeddings with a CLIP text encoder, a CLIP vision
    encoder (the negative embedding is that of a black image), a ``CLIPImageProcessor`` and UnCLIP's
    scheduler. All embeddings are 32-dimensional.

    ``combined=False`` lays it out as the hub publishes it instead: the decoder alone
    (``KandinskyV22InpaintPipeline``) in ``directory/decoder`` and the prior
    (``KandinskyV22PriorPipeline``) in ``directory/prior``; returns ``directory``."""
    import torch
    from diffusers import (
        DDPMScheduler,
        KandinskyV22InpaintCombinedPipeline,
        KandinskyV22InpaintPipeline,
        KandinskyV22PriorPipeline,
        PriorTransformer,
        UnCLIPScheduler,
        UNet2DConditionModel,
        VQModel,
    )
    from transformers import (
        CLIPImageProcessor,
        CLIPTextModelWithProjection,
        CLIPVisionConfig,
        CLIPVisionModelWithProjection,
    )

    embedding = 32
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        in_channels=9,
        out_channels=8,  # noise and its learned variance
        addition_embed_type="image",
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn",
        block_out_channels=(32, 64),
        layers_per_block=1,
        encoder_hid_dim=embedding,
        encoder_hid_dim_type="image_proj",
        cross_attention_dim=embedding,
        attention_head_dim=4,
        resnet_time_scale_shift="scale_shift",
        class_embed_type=None,
        sample_size=8,
    )
    torch.manual_seed(seed)
    movq = VQModel(
        block_out_channels=[32, 32, 32, 32],  # 4 blocks: downsamples by 8, as the real MoVQ (its norm: 32 groups)
        down_block_types=["DownEncoderBlock2D"] * 3 + ["AttnDownEncoderBlock2D"],
        up_block_types=["AttnUpDecoderBlock2D"] + ["UpDecoderBlock2D"] * 3,
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        layers_per_block=1,
        norm_num_groups=8,
        norm_type="spatial",
        num_vq_embeddings=12,
        vq_embed_dim=4,
    )
    scheduler = DDPMScheduler(
        num_train_timesteps=1000,
        beta_schedule="linear",
        beta_start=0.00085,
        beta_end=0.012,
        clip_sample=False,
        steps_offset=1,
        prediction_type="epsilon",
        thresholding=False,
    )
    torch.manual_seed(seed)
    prior = PriorTransformer(
        num_attention_heads=2,
        attention_head_dim=12,
        embedding_dim=embedding,
        num_layers=1,
    )
    # The real prior's clip_mean and clip_std are trained buffers; ones keep the tiny one's scale.
    prior.clip_std = torch.nn.Parameter(torch.ones(1, embedding))
    torch.manual_seed(seed)
    text_encoder = CLIPTextModelWithProjection(
        tiny_clip_text_config(hidden_size=embedding, projection_dim=embedding, num_hidden_layers=2)
    )
    torch.manual_seed(seed)
    image_encoder = CLIPVisionModelWithProjection(
        CLIPVisionConfig(
            hidden_size=embedding,
            image_size=32,
            projection_dim=embedding,
            intermediate_size=37,
            num_attention_heads=4,
            num_channels=3,
            num_hidden_layers=2,
            patch_size=16,
        )
    )
    image_processor = CLIPImageProcessor(
        crop_size=32,
        do_center_crop=True,
        do_normalize=True,
        do_resize=True,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
        resample=3,
        size=32,
    )
    prior_scheduler = UnCLIPScheduler(
        variance_type="fixed_small_log",
        prediction_type="sample",
        num_train_timesteps=1000,
        clip_sample=True,
        clip_sample_range=10.0,
    )
    with tempfile.TemporaryDirectory() as tokenizer_dir:
        tokenizer = tiny_clip_tokenizer(Path(tokenizer_dir))
    directory = Path(directory)
    if not combined:
        KandinskyV22InpaintPipeline(unet=unet, scheduler=scheduler, movq=movq).save_pretrained(directory / "decoder")
        KandinskyV22PriorPipeline(
            prior=prior,
            image_encoder=image_encoder,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            scheduler=prior_scheduler,
            image_processor=image_processor,
        ).save_pretrained(directory / "prior")
        return directory
    KandinskyV22InpaintCombinedPipeline(
        unet=unet,
        scheduler=scheduler,
        movq=movq,
        prior_prior=prior,
        prior_image_encoder=image_encoder,
        prior_text_encoder=text_encoder,
        prior_tokenizer=tokenizer,
        prior_scheduler=prior_scheduler,
        prior_image_processor=image_processor,
    ).save_pretrained(directory)
    return directory


def save_sd15_shaped_inpaint(directory: Path, seed: int = 0) -> Path:
    """A tiny SD inpainting pipeline whose VAE downsamples by 8, as SD 1.5's does (4 encoder
    blocks), with SD 1.5's PNDM schedule: 512-px images give 64x64 latents at a tiny cost."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64),
        layers_per_block=1,
        sample_size=64,
        in_channels=9,
        out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        block_out_channels=[8, 8, 16, 16],
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
        sample_size=512,
        scaling_factor=0.18215,
    )
    text_encoder = CLIPTextModel(tiny_clip_text_config(num_hidden_layers=2))
    return _save_sd_pipeline(directory, unet, vae, text_encoder, PNDMScheduler(**SD15_SCHEDULER))


def save_real_size_sd_inpaint(directory: Path, *, seed: int = 0, dtype=None) -> Path:
    """SD 1.5 Inpainting as published (pipeline folder; UNet 859.5 M, VAE 83.7 M, CLIP ViT-L text
    encoder 123.1 M parameters, PNDM), random weights; ``dtype`` (e.g. ``torch.float16``) halves the files."""
    import torch
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    parts = [
        UNet2DConditionModel(**SD15_INPAINT_UNET),
        AutoencoderKL(**SD15_VAE),
        CLIPTextModel(CLIPTextConfig(**SD15_TEXT)),
    ]
    if dtype is not None:
        parts = [part.to(dtype) for part in parts]
    return _save_sd_pipeline(directory, *parts, PNDMScheduler(**SD15_SCHEDULER))


# ---- BLIP captioning ----------------------------------------------------------------------------

_BERT_VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "[DEC]",
    "a",
    "photo",
    "of",
    "cat",
    "dog",
    "with",
    "the",
    "face",
    "woman",
    "man",
    "smiling",
    "red",
    "hat",
    "and",
]


def _save_blip(
    directory: Path, text: dict[str, Any], vision: dict[str, Any], projection_dim: int, image_size: int, seed: int
) -> Path:
    import torch
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    vocab_file = directory / "vocab.txt"
    vocab_file.write_text("\n".join(_BERT_VOCAB) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]", model_max_length=32)
    dec, sep, pad = (tokenizer.convert_tokens_to_ids(t) for t in ("[DEC]", "[SEP]", "[PAD]"))
    config = BlipConfig(
        text_config=dict(text, bos_token_id=dec, sep_token_id=sep, eos_token_id=sep, pad_token_id=pad),
        vision_config=vision,
        projection_dim=projection_dim,
    )
    torch.manual_seed(seed)
    model = BlipForConditionalGeneration(config)
    processor = BlipProcessor(
        image_processor=BlipImageProcessor(size={"height": image_size, "width": image_size}), tokenizer=tokenizer
    )
    model.save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory


def save_tiny_blip(directory: Path, seed: int = 0) -> Path:
    """Save a tiny ``BlipForConditionalGeneration`` with its ``BlipProcessor`` (32 px, 20 tokens).

    The text config's ``bos_token_id``/``sep_token_id`` must be the tokenizer's ``[DEC]``/``[SEP]``
    ids: ``generate`` forces them, and the defaults lie outside a tiny vocabulary.
    """
    text = dict(
        vocab_size=len(_BERT_VOCAB),
        hidden_size=32,
        intermediate_size=37,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
    )
    vision = dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8
    )
    return _save_blip(directory, text, vision, projection_dim=32, image_size=32, seed=seed)


def save_real_size_blip(directory: Path, seed: int = 0) -> Path:
    """``Salesforce/blip-image-captioning-base``'s architecture (384 px, ViT-B/16 + BERT-base decoder),
    random weights."""
    return _save_blip(directory, BLIP_BASE_TEXT, BLIP_BASE_VISION, BLIP_BASE_PROJECTION, image_size=384, seed=seed)


# ---- a hand-laid Hugging Face cache ------------------------------------------------------------


def tiny_pipeline_options(weights, **changes):
    """:class:`~inpaint.models.base.MethodOptions` of a latent-diffusion method on a tiny pipeline
    at ``weights``: CPU, fp32, 2 steps; ``changes`` set any other field (``prompt``, ``dtype``…)."""
    from inpaint.models.base import MethodOptions

    return MethodOptions(**{"weights": str(weights), "device": "cpu", "dtype": "fp32", "steps": 2, **changes})


def holed_batch(n: int = 2, height: int = 40, width: int = 56):
    """``n`` random images (N, 3, H, W) in [0, 1] and masks (N, 1, H, W): a box hole in the first
    image, another in the last. The default 40x56 is a multiple of no latent pipeline's size step
    (8, 16, 64), so the work size is rounded up and the result resized back."""
    import torch

    generator = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, height, width, generator=generator)
    masks = torch.zeros(n, 1, height, width)
    masks[0, :, height // 8 : height // 2, width // 9 : width * 7 // 13] = 1
    masks[-1, :, height // 2 : height * 19 // 20, width * 15 // 28 : width * 25 // 28] = 1
    return images, masks


def tiny_train_config(method: str, data, output, base, **overrides):
    """A :class:`~inpaint.config.TrainConfig` for the tiny models: 32 px, batch 2, no validation
    images, on the CPU; ``overrides`` set any other field (``max_steps``,
    ``lr``, ``ema_decay``…). Paths may be :class:`~pathlib.Path` objects."""
    from inpaint.config import TrainConfig

    settings: dict[str, Any] = dict(
        method=method,
        data=str(data),
        output=str(output),
        base=str(base),
        resolution=32,
        batch_size=2,
        val_images=0,
        device="cpu",
    )
    return TrainConfig(**{**settings, **overrides})


def install_in_hub_cache(
    folder: str | os.PathLike[str],
    repo_id: str,
    hub_cache: str | os.PathLike[str] | None = None,
    revision: str = "0" * 40,
    *,
    move: bool = False,
) -> Path:
    """Lay ``folder`` out as the cached snapshot of hub model ``repo_id``; returns the snapshot folder.

    Writes ``<hub_cache>/models--ORG--NAME/refs/main`` (holding ``revision``) and the files under
    ``snapshots/<revision>/`` (plain files: the cache needs no blobs). With ``HF_HUB_OFFLINE=1``,
    ``snapshot_download(repo_id)`` and ``try_to_load_from_cache`` then resolve it as they would a
    real download. ``hub_cache`` defaults to huggingface_hub's (``$HF_HOME/hub``, read when called).
    """
    if hub_cache is None:
        hub_cache = Path(
            os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", "~/.cache/huggingface")) / "hub"
        )
    root = Path(hub_cache).expanduser() / f"models--{repo_id.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    snapshot = root / "snapshots" / revision
    if snapshot.exists():
        shutil.rmtree(snapshot)
    snapshot.parent.mkdir(parents=True, exist_ok=True)
    (shutil.move if move else shutil.copytree)(str(folder), str(snapshot))
    return snapshot


# ---- colour profiles --------------------------------------------------------------------------

#: Display P3's primaries as an ICC matrix/TRC profile stores them: XYZ, adapted to the D50 of
#: the profile connection space (Bradford), as in Apple's published profile.
DISPLAY_P3_COLORANTS = ((0.5151, 0.2412, -0.0011), (0.2920, 0.6922, 0.0419), (0.1571, 0.0666, 0.7841))


def rgb_icc_profile(
    description: str = "Display P3 (test)", colorants=DISPLAY_P3_COLORANTS, gamma: float = 2.2
) -> bytes:
    """A minimal, valid ICC v2 RGB display profile (matrix and gamma curves), built from numbers.

    The default is Display P3 with a plain 2.2 gamma: a wide-gamut profile whose pixels mean
    other colours than the same sRGB values, for testing colour management without shipping or
    downloading a profile. LittleCMS (Pillow's ``ImageCms``) reads and applies it.
    """
    import struct

    def s15(value: float) -> bytes:
        return struct.pack(">i", round(value * 65536))

    def xyz(values) -> bytes:
        return b"XYZ " + bytes(4) + b"".join(s15(v) for v in values)

    ascii_text = description.encode("ascii") + b"\0"
    desc = (
        b"desc"
        + bytes(4)
        + struct.pack(">I", len(ascii_text))
        + ascii_text
        + bytes(4)
        + bytes(4)
        + bytes(2)
        + bytes(1)
        + bytes(67)
    )  # no Unicode, no ScriptCode text
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(gamma * 256))
    tags = [
        (b"desc", desc),
        (b"cprt", b"text" + bytes(4) + b"No copyright, test data\0"),
        (b"wtpt", xyz((0.9642, 1.0, 0.8249))),
        (b"rXYZ", xyz(colorants[0])),
        (b"gXYZ", xyz(colorants[1])),
        (b"bXYZ", xyz(colorants[2])),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for signature, body in tags:
        body += bytes(-len(body) % 4)  # every tag starts on a 4-byte boundary
        table += signature + struct.pack(">II", offset + len(data), len(body))
        data += body
    size = offset + len(data)
    header = (
        struct.pack(">I", size)
        + bytes(4)
        + bytes((2, 0x10, 0, 0))
        + b"mntr"
        + b"RGB "
        + b"XYZ "
        + struct.pack(">6H", 2024, 1, 1, 0, 0, 0)
        + b"acsp"
        + bytes(4)
        + bytes(4)
        + bytes(4)
        + bytes(4)
        + bytes(8)
        + struct.pack(">I", 0)
        + s15(0.9642)
        + s15(1.0)
        + s15(0.8249)
        + bytes(4)
        + bytes(16)
        + bytes(28)
    )
    assert len(header) == 128
    return header + struct.pack(">I", len(tags)) + table + data
