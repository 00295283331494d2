"""Token counts with a real BPE tokenizer that never touches the network.

tiktoken fetches its encoding files on first use, which fails offline (CI here, an air-gapped
laptop). The cl100k_base encoding file ships in `pylon/repomap/data/` instead (tiktoken and its
encodings are MIT-licensed; see data/NOTICE) and is loaded with tiktoken's own loader, hash
checked, so the counts are exactly tiktoken's.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tiktoken

ENCODING_NAME = "cl100k_base"
_DATA = Path(__file__).parent / "data" / f"{ENCODING_NAME}.tiktoken"
# The hash tiktoken itself pins for this file (tiktoken_ext/openai_public.py).
_SHA256 = "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7"
# Same split pattern and special tokens as tiktoken_ext/openai_public.py:cl100k_base.
_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|"""
    r"""\s*[\r\n]|\s+(?!\S)|\s"""
)
_SPECIAL = {
    "<|endoftext|>": 100257,
    "<|fim_prefix|>": 100258,
    "<|fim_middle|>": 100259,
    "<|fim_suffix|>": 100260,
    "<|endofprompt|>": 100276,
}


@functools.cache
def encoding() -> tiktoken.Encoding:
    # Imported here: every `pylon` command imports this module's constants, few count tokens.
    import tiktoken
    from tiktoken.load import load_tiktoken_bpe

    ranks = load_tiktoken_bpe(str(_DATA), expected_hash=_SHA256)
    return tiktoken.Encoding(name=ENCODING_NAME, pat_str=_PAT, mergeable_ranks=ranks, special_tokens=_SPECIAL)


def count_tokens(text: str) -> int:
    # disallowed_special=(): a repo's text may contain "<|endoftext|>"; count it as plain text.
    return len(encoding().encode(text, disallowed_special=()))
