"""The MiniLM fake-news network: a Hugging Face encoder, mean pooling over real tokens, a small head.

Imported only inside the MiniLM spec's functions (it imports torch and transformers at the top).
The attention mask is computed *inside* the network from the token ids (`ids != pad_id`): the ONNX
graph then has the pipeline's one input (token ids) and still masks padding exactly as the encoder
was trained, since the tokenizer pads with [PAD] and never emits it for text.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# How token states become one vector; part of the embedding cache's encoder version (`embedding_cache`).
POOLING = "mean over non-padding tokens"


def load_encoder_model(source: str) -> nn.Module:
    """The pretrained encoder (hub id or folder), with eager attention: the implementation the legacy ONNX
    exporter traces into plain MatMul/Softmax ops that `quantize_dynamic` takes."""
    from transformers import AutoModel

    # nosec B615: the default is the lock-pinned package's folder (no hub); a hub id is the operator's choice
    return AutoModel.from_pretrained(source, attn_implementation="eager")  # nosec B615


class MeanPooledClassifier(nn.Module):
    """Token ids [batch, sequence] (int64) -> probability that the article is fake [batch, 1]."""

    def __init__(self, encoder: nn.Module, head_hidden: int, dropout: float, pad_id: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.pad_id = pad_id
        width = encoder.config.hidden_size
        self.head = nn.Sequential(
            nn.Linear(width, head_hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(head_hidden, 1)
        )

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The mean of the encoder's last hidden states over the non-padding tokens [batch, width]."""
        mask = input_ids != self.pad_id
        # Explicit token types (all segment 0): left to the encoder, they come from a buffer through
        # `torch.gather`, a GatherElements node that onnx's ReferenceEvaluator cannot run at 128 tokens.
        types = torch.zeros_like(input_ids)
        hidden = self.encoder(input_ids=input_ids, attention_mask=mask.long(), token_type_ids=types).last_hidden_state
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.embed(input_ids)))


def save_checkpoint(model: MeanPooledClassifier, path: Path, head_hidden: int, dropout: float) -> Path:
    """One self-contained file: the encoder's config and every weight (export and benchmarks need no hub)."""
    torch.save(
        {
            "encoder_config": model.encoder.config.to_dict(),
            "head_hidden": head_hidden,
            "dropout": dropout,
            "pad_id": model.pad_id,
            "state_dict": model.state_dict(),
        },
        path,
    )
    return path


def load_checkpoint(path: Path) -> MeanPooledClassifier:
    """The network of `save_checkpoint`, in eval mode."""
    from transformers import AutoConfig, AutoModel

    saved = torch.load(path, map_location="cpu", weights_only=True)
    config = AutoConfig.for_model(**saved["encoder_config"])
    encoder = AutoModel.from_config(config, attn_implementation="eager")
    model = MeanPooledClassifier(encoder, saved["head_hidden"], saved["dropout"], saved["pad_id"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()
