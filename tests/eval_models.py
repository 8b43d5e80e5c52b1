"""Small random models exported to model files, for the nano.eval tests (no training needed: every
claim tested there is about the arithmetic of scoring, which random weights exercise fully)."""

import torch
from nano.export import export_checkpoint
from nano.model import ModelConfig, Transformer
from nano.tokenizer import DEFAULT_SPECIAL_TOKENS, Tokenizer

# Chinese characters (3 UTF-8 bytes each), ASCII and punctuation: bits per character and per byte differ.
TEXT = ("天地玄黃，宇宙洪荒。日月盈昃，辰宿列張。The quick brown fox jumps over the lazy dog. "
        "寒來暑往，秋收冬藏。閏餘成歲，律呂調陽。Pack my box with five dozen liquor jugs! 雲騰致雨，露結為霜。")


def tokenizer() -> Tokenizer:
    chars = sorted(set(TEXT + "什麼？ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789?:\n"))
    tokens = list(DEFAULT_SPECIAL_TOKENS) + chars + ["天地", "宇宙", "the", "ox"]
    tokens += [f"x{i}" for i in range(-len(tokens) % 32)]  # a multiple of 32 rows, as quantized files like
    return Tokenizer.from_tokens(tokens, [t in DEFAULT_SPECIAL_TOKENS for t in tokens])


def random_model(seed: int, vocab: int, block_size: int = 48, embedding_std: float = 0.5) -> Transformer:
    """A random model whose next-token distributions are neither uniform nor one-hot, so errors in scoring
    show in the figures: matrices of std 1/sqrt(fan-in) let every layer change the residual stream as much
    as the embedding does (the default init leaves it close to the token's own embedding, which the tied head
    then predicts with near certainty), and embeddings of std 0.5 give logits of std about 4."""
    torch.manual_seed(seed)
    cfg = ModelConfig(block_size=block_size, vocab_size=vocab, n_layer=2, n_embd=64, n_head=4, n_kv_head=2,
                      n_hidden=96)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 2:
                p.normal_(0.0, p.shape[1] ** -0.5)
        model.tok_embeddings.weight.normal_(0.0, embedding_std)
    return model


def export(model: Transformer, tok: Tokenizer, path, dtype: str = "f32"):
    ckpt = {"model": model.state_dict(), "model_config": model.config.to_dict(), "tokenizer_json": tok.to_json()}
    return export_checkpoint(ckpt, path, dtype)
