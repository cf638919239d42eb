"""Write the byte-level tokenizer shipped with the model configs in lorabench/models/configs.

Three specials (``<unk>`` 0, ``<s>`` 1, ``</s>`` 2, the Llama ids) and the 256 byte tokens,
no merges: any text tokenises, offline, with no file from a model hub.
    python scripts/make_byte_tokenizer.py lorabench/models/configs/llama-1b
"""

from __future__ import annotations

import sys

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIALS = ["<unk>", "<s>", "</s>"]


def build() -> PreTrainedTokenizerFast:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {tok: i for i, tok in enumerate(SPECIALS + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="</s>"
    )


if __name__ == "__main__":
    for out in sys.argv[1:]:
        build().save_pretrained(out)
