#!/usr/bin/env python3
"""logits-close.py A B TOL - two `llmq verify --logits-out` files hold the
same ids and logits whose largest difference is at most TOL times the
largest |logit| of A, with the same argmax at 95% of the positions or
more.  For products whose float sums run in another order (a kernel of
another ISA, another row layout): with int8 activations a last-bit
difference can move an activation across a rounding boundary, so the
logits differ by more than float rounding; a wrong product differs by far
more.  Exit 0 if close, 1 if not (the numbers on stderr), 2 on bad input."""
import array, json, struct, sys


def load(path):
    with open(path, 'rb') as f:
        b = f.read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    out = {}
    for k in ('input_ids', 'logits'):
        o = h[k]['data_offsets']
        a = array.array('i' if k == 'input_ids' else 'f')
        a.frombytes(b[8 + n + o[0]:8 + n + o[1]])
        out[k] = (a, h[k]['shape'])
    return out


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    try:
        a, b, tol = load(sys.argv[1]), load(sys.argv[2]), float(sys.argv[3])
    except (OSError, ValueError, KeyError, struct.error) as e:
        print(f'logits-close.py: {e}', file=sys.stderr)
        return 2
    if a['input_ids'] != b['input_ids'] or a['logits'][1] != b['logits'][1]:
        print('logits-close.py: different ids or shapes', file=sys.stderr)
        return 1
    la, lb = a['logits'][0], b['logits'][0]
    rows, v = a['logits'][1]
    d = max(abs(x - y) for x, y in zip(la, lb))
    m = max(abs(x) for x in la)
    same = 0
    for r in range(rows):
        ra, rb = la[r * v:(r + 1) * v], lb[r * v:(r + 1) * v]
        same += max(range(v), key=ra.__getitem__) == max(range(v), key=rb.__getitem__)
    ok = d <= tol * m and same >= 0.95 * rows
    print(f'max |diff| {d:.4g} ({d / m if m else 0:.3g} of max |logit| {m:.4g}), same argmax {same}/{rows}',
          file=sys.stderr)
    return 0 if ok else 1


sys.exit(main())
