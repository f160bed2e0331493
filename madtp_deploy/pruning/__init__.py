"""MADTP's pruning math as pure tensor functions (no nn.Module, no state)."""

from .dtp import (cls_attention_score, compaction_order, effective_keep, gather_tokens,
                  importance_score, keep_counts, keep_mask, package_token, self_attention_score,
                  threshold, token_attention_score)
from .step import PruneResult, prune_step
from .mag import alignment_loss, pooled_features, token_attention_map

__all__ = [
    "alignment_loss", "cls_attention_score", "compaction_order", "effective_keep", "gather_tokens",
    "importance_score", "PruneResult", "prune_step", "keep_counts", "keep_mask", "package_token", "pooled_features",
    "self_attention_score", "threshold", "token_attention_map", "token_attention_score",
]
