#!/usr/bin/env python3
"""pretok-ref.py - what Hugging Face tokenizers' normalizers and
pre-tokenizers make of tricky texts, for t-tokenizer's pretok_reference.

usage: pretok-ref.py OUT.json

Each case is a normalizer and a pre_tokenizer (tokenizer.json fragments)
and a text; OUT.json holds them with HF's normalized text and pieces
(normalizer.normalize_str, then pre_tokenizer.pre_tokenize_str), from
the `tokenizers` package where it runs (the device machine has it).
"""
import json, sys
import tokenizers
from tokenizers import Tokenizer

TEXTS = [
    "  Hello,  world!! 123abc 4\u00bd \u0663\u0664 x--y  ",
    "aabxbab",
    "\u00a0\u2028\u0085 tab\tend\n\u200b|\u180e|\u3000|\x1c|\u2009",
    "\u4e2d\u6587\uff0c\u6807\u70b9\u3002(paren) [x] {y} \u00bfqu\u00e9? \u2014 \u201cq\u201d \u00a7 $5 ^_^ ~",
    "x",
    "   ",
    "a\u0301e\u0308 \ufb01 \u212b no-break\u00a0space",
    "It's 2026: the SCORES were 10-7, 1,234.5 and \u2167; caf\u00e9 \U0001F600!",
    # Latin-1 and other characters where Oniguruma's classes have differed
    "x\u00b2y\u00b3z\u00b9 \u00bc\u00be \u00aa \u00ba \u00b5 \u00b7 \u2466 \u2167 \u0663 \uff15 a_b \u00df\u00ff\u00d7\u00f7",
]

def split(pattern, behavior, invert=False, literal=False):
    return {"type": "Split", "pattern": {"String" if literal else "Regex": pattern},
            "behavior": behavior, "invert": invert}

BEHAVIORS = ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]
PRE = []
for b in BEHAVIORS:
    for inv in (False, True):
        PRE.append(split(r"\s+", b, inv))
    PRE.append({"type": "Punctuation", "behavior": b})
    PRE.append(split("x*", b))
PRE += [
    split(" ", "MergedWithPrevious", literal=True),
    split("ab", "Removed", literal=True),
    split("a.b", "Isolated", literal=True),
    split(r"(?<=a)b", "Isolated"),
    split(r"\p{N}{1,3}", "Isolated"),
    split(r"[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+", "Isolated"),
    split(r"\b", "Isolated"),
    split(r"\w+", "Isolated"),
    split(r"\W+", "Isolated"),
    split(r"[\w]+", "Isolated"),
    split(r"\d+", "Isolated"),
    split(r"\D", "Removed"),
    split(r"\s", "Removed"),
    split(r"[^\s\w]+", "Isolated"),
    split(r"\\w|[\\w]\w", "Isolated"),
    split(r"[[:alpha:]]+", "Isolated"),
    split(r"(?i)[a-z]+", "Isolated"),
    {"type": "Digits", "individual_digits": True},
    {"type": "Digits", "individual_digits": False},
    {"type": "Whitespace"},
    {"type": "WhitespaceSplit"},
    {"type": "Punctuation"},
    {"type": "CharDelimiterSplit", "delimiter": "-"},
    {"type": "BertPreTokenizer"},
    {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                           split(r"\s+(?!\S)|\s+|\S+", "Isolated")]},
    {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
]
NORM = [
    {"type": "Strip", "strip_left": True, "strip_right": True},
    {"type": "Strip", "strip_left": False, "strip_right": True},
    {"type": "Replace", "pattern": {"Regex": " {2,}"}, "content": " "},
    {"type": "Replace", "pattern": {"Regex": "x*"}, "content": "-"},
    {"type": "Replace", "pattern": {"Regex": r"\p{N}+"}, "content": "<n>"},
    {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True, "strip_right": False},
                                         {"type": "NFC"}]},
]

def run(norm, pre, text):
    js = {"version": "1.0", "normalizer": norm, "pre_tokenizer": pre,
          "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}
    tok = Tokenizer.from_str(json.dumps(js))
    n = tok.normalizer.normalize_str(text) if tok.normalizer else text
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(n)] if tok.pre_tokenizer else ([n] if n else [])
    return {"normalizer": norm, "pre_tokenizer": pre, "text": text, "normalized": n, "pieces": pieces}

def main():
    cases = [run(None, p, t) for p in PRE for t in TEXTS]
    cases += [run(n, None, t) for n in NORM for t in TEXTS]
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        json.dump({"tokenizers": tokenizers.__version__, "cases": cases}, f, ensure_ascii=True, indent=0)
    print("%d cases (tokenizers %s)" % (len(cases), tokenizers.__version__))

if __name__ == "__main__":
    main()
