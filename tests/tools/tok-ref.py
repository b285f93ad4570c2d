#!/usr/bin/env python3
"""tok-ref.py - reference token ids from Hugging Face `tokenizers` itself.

usage: tok-ref.py OUTDIR NAME=TOKENIZER.json... -- TEXT...

For every tokenizer and text writes OUTDIR/NAME.TEXTSTEM.ids.gz: the ids of
Tokenizer.encode(text, add_special_tokens=False) as int32 little-endian,
gzip-compressed.  Texts are read as Python's text mode reads them (CRLF and
lone CR become LF), as `llmq tokenize` does by default.  Prints one line per
file with the id count and the tokenizers version.  Run where `tokenizers`
is installed (the device machine has it); the outputs live in
testdata/tok/ref/ and tests/unit/t-tokenizer-real.c compares against them.
"""
import gzip, os, struct, sys
import tokenizers
from tokenizers import Tokenizer

def main():
    args = sys.argv[1:]
    if len(args) < 3 or '--' not in args:
        sys.exit(__doc__)
    out = args[0]
    k = args.index('--')
    toks = [a.split('=', 1) for a in args[1:k]]
    texts = args[k + 1:]
    os.makedirs(out, exist_ok=True)
    for name, path in toks:
        tok = Tokenizer.from_file(path)
        for tp in texts:
            with open(tp, encoding='utf-8') as f:
                text = f.read()
            ids = tok.encode(text, add_special_tokens=False).ids
            stem = os.path.splitext(os.path.basename(tp))[0]
            dst = os.path.join(out, '%s.%s.ids.gz' % (name, stem))
            with gzip.GzipFile(dst, 'wb', mtime=0) as g:
                g.write(struct.pack('<%di' % len(ids), *ids))
            print('%s %s: %d ids (tokenizers %s)' % (name, stem, len(ids), tokenizers.__version__))

if __name__ == '__main__':
    main()
