"""Training: the shared loop (:mod:`.loop`), checkpoints (:mod:`.checkpoint`), and one task per
method (:mod:`.ddpm_task`; the LoRA task joins with ``train-lora``)."""
