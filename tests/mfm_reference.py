"""Clean-room pure-Python reference of the matching rule, written from the issue's description.

Greedy maximum forward match over code points: at each position take the longest vocabulary entry
that is a prefix of the rest of the text; a character that starts no entry becomes the unknown id and
the scan advances one character. Special entries take part only when ``allow_special`` is true.
Deliberately naive (a set of strings, every length tried), so it shares no structure with the trie.
"""

from __future__ import annotations

import json
from pathlib import Path


class ReferenceMFM:
    def __init__(self, itos: list[str], special: set[str], unknown: str = "<|unknown|>"):
        self.itos = list(itos)
        self.ids = {s: i for i, s in enumerate(self.itos)}
        self.special = set(special)
        self.unknown_id = self.ids[unknown]
        self.longest = max(len(s) for s in self.itos)

    @classmethod
    def from_json_file(cls, path: str | Path) -> ReferenceMFM:
        config = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(config["itos"], set(config["special_tokens"]))

    def encode(self, text: str, allow_special: bool = False) -> list[int]:
        out = []
        i = 0
        while i < len(text):
            for n in range(min(self.longest, len(text) - i), 0, -1):
                piece = text[i : i + n]
                token_id = self.ids.get(piece)
                if token_id is not None and (allow_special or piece not in self.special):
                    out.append(token_id)
                    i += n
                    break
            else:
                out.append(self.unknown_id)
                i += 1
        return out

    def decode(self, ids: list[int]) -> str:
        return "".join(self.itos[i] for i in ids)
