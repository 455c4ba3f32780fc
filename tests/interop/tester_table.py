#!/usr/bin/env python3
"""Helpers of tester-full.sh for os-ken switch tester logs (see docs/interop.md).

  tester_table.py failed-files OF13_DIR LOG...   relative paths of case files with an ERROR case
  tester_table.py table OF13_DIR DOC --shg LOG... --ovs LOG...
        writes the per-case table (a case passes for a target if any of its logs, first run or
        retry, shows it OK) into DOC between the tester-table markers.
"""
import collections
import datetime
import json
import os
import re
import sys

BEGIN, END = '<!-- tester-table:begin -->', '<!-- tester-table:end -->'


def parse(log_path):
    """{(file_description, case_description): 'OK' | 'ERROR: reason'} from one tester log."""
    out = {}
    cur = None
    lines = open(log_path, errors='replace').read().split('\n')
    for i, line in enumerate(lines):
        if line and not line.startswith(' '):
            kind = line.split(': ', 1)[0]
            if ': ' in line and kind in ('action', 'match', 'group', 'meter'):
                cur = line.strip()
            continue
        m = re.match(r'^    (\S.*?)\s+(OK|ERROR)$', line)
        if m and cur:
            if m.group(2) == 'OK':
                out[(cur, m.group(1))] = 'OK'
            else:
                reason = lines[i + 1].strip() if i + 1 < len(lines) else ''
                out.setdefault((cur, m.group(1)), 'ERROR: ' + reason)
    return out


def file_index(of13):
    """{file_description: relative path} for every case file under of13/."""
    idx = {}
    for root, _, files in os.walk(of13):
        for f in sorted(files):
            if f.endswith('.json'):
                p = os.path.join(root, f)
                try:
                    desc = next(x for x in json.load(open(p)) if isinstance(x, str))
                except (ValueError, StopIteration):
                    continue
                idx[desc] = os.path.relpath(p, of13)
    return idx


def merged(logs):
    res = {}
    for log in logs:
        if not os.path.exists(log):
            continue
        for k, v in parse(log).items():
            if v == 'OK' or k not in res:
                res[k] = v
    return res


def failed_files(of13, logs):
    idx = file_index(of13)
    res = merged(logs)
    files = sorted({idx[f] for (f, _), v in res.items() if v != 'OK' and f in idx})
    print(' '.join(files))


def cell(v):
    if v is None:
        return '—'
    if v == 'OK':
        return 'ok'
    return 'FAIL ' + v[len('ERROR: '):].replace('|', '/')[:70]


def table(of13, doc, shg_logs, ovs_logs):
    shg, ovs = merged(shg_logs), merged(ovs_logs)
    keys = sorted(set(shg) | set(ovs))
    per_file = collections.OrderedDict()
    for f, c in keys:
        s = per_file.setdefault(f, [0, 0, 0, 0, 0])  # cases, shg ok, ovs ok, shg-only, ovs-only
        s[0] += 1
        a, b = shg.get((f, c)) == 'OK', ovs.get((f, c)) == 'OK'
        s[1] += a
        s[2] += b
        s[3] += a and not b
        s[4] += b and not a
    tot = [sum(v[i] for v in per_file.values()) for i in range(5)]
    dirs = sorted({f.split(':', 1)[0] for f, _ in keys})
    lines = [BEGIN, '',
             f'Last run: {datetime.date.today().isoformat()}, case directories: '
             f'{", ".join("`" + d + "`" for d in dirs)} (of13/), '
             'same machine for both targets, every file with a failure retried once.', '',
             f'**Total: {tot[0]} cases; shg passes {tot[1]}, OVS passes {tot[2]}; '
             f'shg only {tot[3]}, OVS only {tot[4]}.**', '',
             '| file | cases | shg ok | OVS ok | shg only | OVS only |', '|---|---|---|---|---|---|']
    for f, s in per_file.items():
        lines.append(f'| {f} | {s[0]} | {s[1]} | {s[2]} | {s[3]} | {s[4]} |')
    lines += ['', '<details><summary>Per case</summary>', '',
              '| file | case | shg | OVS |', '|---|---|---|---|']
    for f, c in keys:
        lines.append(f'| {f} | `{c.replace("|", "/")}` | {cell(shg.get((f, c)))} | '
                     f'{cell(ovs.get((f, c)))} |')
    lines += ['', '</details>', '', END]
    text = open(doc).read() if os.path.exists(doc) else ''
    block = '\n'.join(lines)
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip('\n') + '\n\n' + block + '\n'
    open(doc, 'w').write(text)
    print(f'total {tot[0]}: shg ok {tot[1]}, ovs ok {tot[2]}, shg-only {tot[3]}, ovs-only {tot[4]}')


def main(argv):
    if len(argv) >= 3 and argv[0] == 'failed-files':
        failed_files(argv[1], argv[2:])
    elif len(argv) >= 3 and argv[0] == 'table':
        of13, doc, rest = argv[1], argv[2], argv[3:]
        groups = {'--shg': [], '--ovs': []}
        cur = None
        for a in rest:
            if a in groups:
                cur = groups[a]
            elif cur is not None:
                cur.append(a)
        table(of13, doc, groups['--shg'], groups['--ovs'])
    else:
        sys.exit(__doc__)


if __name__ == '__main__':
    main(sys.argv[1:])
