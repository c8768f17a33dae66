"""Per-kernel summary of the last decode steps in a ktrace.c timeline: how many times a step runs each
(kernel, grid), and its marginal time, the time by which its end moves the step's latest end so far (under
dependent launch a kernel starts before its predecessor ends, so durations overlap and do not add up; the
marginal times do, to the step's time). Steps end at the token choice (argmax_rows_kernel, or the head's
gemv_dp4a_pick_kernel). The fused output projections (o_proj, then down, in each layer) share a kernel and a
grid: they are told apart by their order.
Usage: ktrace_sum.py TRACE.csv [STEPS]"""
import collections
import re
import sys


def short_name(mangled):
    m = re.match(r'_Z(\d+)', mangled)
    if not m:
        return mangled[:60]
    n = int(m.group(1))
    name = mangled[len(m.group(0)):len(m.group(0)) + n]
    ints = re.findall(r'Li(\d+)E', mangled)
    return name + ('<' + ','.join(ints) + '>' if ints else '')


def main():
    rows = []
    for line in open(sys.argv[1]):
        f = line.rstrip('\n').split(',', 6)
        if len(f) == 7:
            rows.append((int(f[0]), int(f[1]), 'x'.join(f[2:5]), short_name(f[6])))
    rows.sort()
    names = [r[3] for r in rows]
    chooses = lambda n: 'argmax' in n or 'pick' in n  # the argmax launch, or the head that picks the token itself
    ends = [i for i, n in enumerate(names) if chooses(n) and (i + 1 == len(names) or not chooses(names[i + 1]))]
    steps = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    steps = min(steps, len(ends) - 1)
    if steps < 1:
        sys.exit('fewer than two steps ending in a token choice in the trace')
    first, last = ends[-steps - 1] + 1, ends[-1] + 1
    latest = rows[first - 1][1]
    step_ns = (rows[last - 1][1] - latest) / steps
    per = collections.OrderedDict()
    occ = collections.Counter()
    for start, end, grid, name in rows[first:last]:
        if 'argmax' in name:
            occ.clear()
        if 'residual_norm' in name:  # the fused output projections: o_proj and down alternate in a step
            occ[name, grid] += 1
            name += '[o]' if occ[name, grid] % 2 else '[down]'
        a = per.setdefault((name, grid), [0, 0, 0, 0])
        a[0] += 1
        a[1] += max(0, end - latest)
        a[2] += end - start
        a[3] += start - latest
        latest = max(latest, end)
    print('%d steps, %.1f kernels and %.1f us a step' % (steps, (last - first) / steps, step_ns / 1000))
    print('%-48s %12s %7s %10s %10s %12s' % ('kernel', 'grid', 'a step', 'marginal', 'duration', 'start-prev'))
    for (name, grid), a in sorted(per.items(), key=lambda kv: -kv[1][1]):
        print('%-48s %12s %7.1f %8.2fus %8.2fus %10.2fus' % (name[:48], grid, a[0] / steps, a[1] / a[0] / 1000,
                                                           a[2] / a[0] / 1000, a[3] / a[0] / 1000))


main()
